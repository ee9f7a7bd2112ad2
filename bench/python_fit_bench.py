#!/usr/bin/python3
"""Per-step time of `fit` from Python against `trainrr train` from the command line, side by side in one run.

    PYTHONPATH=build/python /usr/bin/python3 bench/python_fit_bench.py [--bin build/trainrr] [--rounds 5]
                                                                        [--workloads breast_cancer,mlp] [--json FILE]

Both sides run the same configuration of bench/configs/ (the seed MLP, breast_cancer.toml, and the bench MLP,
mlp.toml) with the same --set overrides: the command as `trainrr train CONFIG --set train.epochs=N` in a
process of its own, Python as `Sequential.from_config(CONFIG).fit(epochs=N, verbose=0)` in this one. Each is
timed at two epoch counts, by the wall clock and in CPU time (all threads of its process); the difference over
the difference in steps is the time per step, free of what does not grow with the steps (starting a process,
importing, loading the data, building the model). Rounds alternate which side goes first, so that a change in
the machine's load hits both alike; the figures are medians over rounds. (PyTorch's step time on the same
workloads: bench/compare_pytorch.sh.)
"""

import argparse
import json
import os
import resource
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


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def time_cli(binary, config, epochs):
    """(wall seconds, CPU seconds of all its threads) of one `trainrr train`."""
    cpu, start = children_cpu(), time.perf_counter()
    subprocess.run([binary, "train", config, "--set", f"train.epochs={epochs}"], check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - start, children_cpu() - cpu


def time_python(config, epochs):
    """(wall seconds, CPU seconds of this process's threads) of one fit, and the steps per epoch."""
    cpu, start = time.process_time(), time.perf_counter()
    model = trainrr.Sequential.from_config(config)
    model.fit(epochs=epochs, verbose=0)
    return (time.perf_counter() - start, time.process_time() - cpu), model._run.steps_per_epoch


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
        per_step = {(side, clock): [] for side in ("python", "cli") for clock in ("wall", "cpu")}
        ratios = {"wall": [], "cpu": []}
        for r in range(args.rounds):
            measured = {}
            order = ("python", "cli") if r % 2 == 0 else ("cli", "python")
            for side in order:
                if side == "python":
                    (few_t, steps_per_epoch), (many_t, _) = time_python(config, few), time_python(config, many)
                else:
                    few_t, many_t = time_cli(args.bin, config, few), time_cli(args.bin, config, many)
                measured[side] = {"wall": many_t[0] - few_t[0], "cpu": many_t[1] - few_t[1]}
            steps = steps_per_epoch * (many - few)
            for clock in ("wall", "cpu"):
                for side in ("python", "cli"):
                    per_step[(side, clock)].append(1e3 * measured[side][clock] / steps)
                ratios[clock].append(measured["python"][clock] / measured["cli"][clock])
        row = {"steps_timed": steps, "rounds": args.rounds}
        for clock in ("wall", "cpu"):
            for side in ("python", "cli"):
                row[f"{side}_{clock}_ms_per_step"] = statistics.median(per_step[(side, clock)])
            row[f"python_over_cli_{clock}"] = statistics.median(ratios[clock])
        results[name] = row
        for clock in ("wall", "cpu"):
            print(f"{name} ({clock}): python {row[f'python_{clock}_ms_per_step']:.4f} ms/step, "
                  f"cli {row[f'cli_{clock}_ms_per_step']:.4f} ms/step, python/cli "
                  f"{row[f'python_over_cli_{clock}']:.3f} (medians of {args.rounds} rounds, {steps} steps timed)",
                  flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
