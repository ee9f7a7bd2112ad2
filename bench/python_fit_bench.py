#!/usr/bin/python3
"""Per-step time of `fit` from Python against `trainrr train` from the command line, side by side in one run.

    PYTHONPATH=build/python /usr/bin/python3 bench/python_fit_bench.py [--bin build/trainrr] [--rounds 5]
                                                                        [--workloads breast_cancer,mlp] [--json FILE]

Both sides run the same configuration of bench/configs/ (the seed MLP, breast_cancer.toml, and the bench MLP,
mlp.toml) with the same --set overrides: the command as `trainrr train CONFIG --set train.epochs=N` in a
process of its own, Python as `Sequential.from_config(CONFIG).fit(epochs=N, verbose=0)` in this one. Each is
timed by the wall clock at two epoch counts; the difference over the difference in steps is the time per step,
free of what does not grow with the steps (starting a process, importing, loading the data, building the
model). Rounds alternate which side goes first, so that a change in the machine's load hits both alike; the
figures are medians over rounds. With PyTorch installed (Debian's python3-torch), bench/pytorch_step.py's
step of the same workload is timed in the same rounds.
"""

import argparse
import json
import os
import statistics
import subprocess
import time

import trainrr

HERE = os.path.dirname(os.path.abspath(__file__))
# workload: (configuration, fewer epochs, more epochs)
WORKLOADS = {
    "breast_cancer": (os.path.join(HERE, "configs", "breast_cancer.toml"), 20, 220),
    "mlp": (os.path.join(HERE, "configs", "mlp.toml"), 1, 5),
}


def time_cli(binary, config, epochs):
    start = time.perf_counter()
    subprocess.run([binary, "train", config, "--set", f"train.epochs={epochs}"], check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def time_python(config, epochs):
    start = time.perf_counter()
    model = trainrr.Sequential.from_config(config)
    model.fit(epochs=epochs, verbose=0)
    return time.perf_counter() - start, model._run.steps_per_epoch


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.path.join(HERE, "..", "build", "trainrr"))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--workloads", default="breast_cancer,mlp")
    ap.add_argument("--json")
    args = ap.parse_args()
    results = {}
    for name in args.workloads.split(","):
        config, few, many = WORKLOADS[name]
        python_ms, cli_ms, ratios = [], [], []
        for r in range(args.rounds):
            measured = {}
            order = ("python", "cli") if r % 2 == 0 else ("cli", "python")
            for side in order:
                if side == "python":
                    (t_few, steps_per_epoch), (t_many, _) = time_python(config, few), time_python(config, many)
                else:
                    t_few, t_many = time_cli(args.bin, config, few), time_cli(args.bin, config, many)
                measured[side] = t_many - t_few
            steps = steps_per_epoch * (many - few)
            python_ms.append(1e3 * measured["python"] / steps)
            cli_ms.append(1e3 * measured["cli"] / steps)
            ratios.append(measured["python"] / measured["cli"])
        row = {"steps_timed": steps, "python_ms_per_step": statistics.median(python_ms),
               "cli_ms_per_step": statistics.median(cli_ms), "python_over_cli": statistics.median(ratios),
               "rounds": args.rounds}
        results[name] = row
        line = (f"{name}: python {row['python_ms_per_step']:.4f} ms/step, cli {row['cli_ms_per_step']:.4f} ms/step, "
                f"python/cli {row['python_over_cli']:.3f} (median of {args.rounds} rounds, {steps} steps timed)")
        print(line, flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
