#!/usr/bin/python3
"""Training step time of the three benchmark workloads of bench/configs/ in PyTorch, on the CPU or a GPU.

Same shapes, batch sizes, thread counts and optimizer (Adam, Keras' epsilon 1e-7) as trainrr's step_bench;
random data of the same shapes. A step is what trainrr's step does: take the next batch of a shuffled
epoch, zero_grad, forward, loss, backward, Adam update.

    /usr/bin/python3 bench/pytorch_step.py [--threads 1,2] [--workloads breast_cancer,mlp,convnet]
                                           [--steps N] [--reps R] [--warmup W] [--min-ms T] [--json FILE]
                                           [--device cpu|cuda]

On a GPU (--device cuda) the model and the data live there, TF32 is off for matmuls and convolutions (float32,
as trainrr's runtime.tf32 = false), and each repetition ends with torch.cuda.synchronize().

Prints one JSON object (also written to --json): milliseconds per step, median of R repetitions, by the wall
clock (ms_per_step) and in CPU time of the whole process (cpu_ms_per_step).
"""

import argparse
import ctypes
import ctypes.util
import json
import statistics
import sys
import time

import torch
from torch import nn

# Rows of the breast_cancer training split: 569 rows, test_fraction 0.2.
BREAST_CANCER_ROWS = 455


def workload(name):
    """(model, loss, features [rows, ...], labels, batch size) for a workload of bench/configs/."""
    g = torch.Generator().manual_seed(1)
    if name == "breast_cancer":
        model = nn.Sequential(nn.Linear(30, 16), nn.ReLU(), nn.Linear(16, 1), nn.Sigmoid())
        x = torch.randn(BREAST_CANCER_ROWS, 30, generator=g)
        y = torch.randint(0, 2, (BREAST_CANCER_ROWS, 1), generator=g).float()
        return model, nn.BCELoss(), x, y, 32
    if name == "mlp":
        model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))
        x = torch.randn(8192, 784, generator=g)
        y = torch.randint(0, 10, (8192,), generator=g)
        # Softmax and cross-entropy fused, as PyTorch users write it.
        return model, nn.CrossEntropyLoss(), x, y, 128
    if name == "convnet":
        # PyTorch's native NCHW layout; valid padding as in the trainrr config: 28 -> 26 -> 13 -> 11 -> 5.
        model = nn.Sequential(
            nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * 5 * 5, 10))
        x = torch.randn(4096, 1, 28, 28, generator=g)
        y = torch.randint(0, 10, (4096,), generator=g)
        return model, nn.CrossEntropyLoss(), x, y, 64
    sys.exit(f"pytorch_step.py: unknown workload {name!r} (breast_cancer, mlp, convnet)")


class Stepper:
    """A training loop that runs steps on demand, reshuffling at each epoch end like trainrr's loader."""

    def __init__(self, name, device="cpu"):
        torch.manual_seed(0)
        self.model, self.loss_fn, self.x, self.y, self.batch = workload(name)
        self.device = torch.device(device)
        self.model.to(self.device)
        self.x, self.y = self.x.to(self.device), self.y.to(self.device)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-7)
        self.order = torch.randperm(self.x.shape[0])
        self.pos = 0

    def run(self, steps):
        for _ in range(steps):
            if self.pos >= self.x.shape[0]:
                self.order = torch.randperm(self.x.shape[0])
                self.pos = 0
            idx = self.order[self.pos:self.pos + self.batch].to(self.device)
            self.pos += self.batch
            xb, yb = self.x.index_select(0, idx), self.y.index_select(0, idx)
            self.opt.zero_grad()
            loss = self.loss_fn(self.model(xb), yb)
            loss.backward()
            self.opt.step()


def blas_threads_setter():
    """Debian's torch does its matrix products in OpenBLAS, whose thread count torch.set_num_threads does not
    change: set it too, so that "1 thread" means one thread. None when the BLAS is not OpenBLAS."""
    for name in ("libopenblas.so.0", ctypes.util.find_library("openblas")):
        if not name:
            continue
        try:
            lib = ctypes.CDLL(name)
            return lib.openblas_set_num_threads
        except (OSError, AttributeError):
            continue
    return None


def time_steps(stepper, steps):
    start = time.perf_counter()
    stepper.run(steps)
    if stepper.device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) * 1e3


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", default="1,2")
    p.add_argument("--workloads", default="breast_cancer,mlp,convnet")
    p.add_argument("--steps", type=int, default=0, help="steps per repetition (0: as many as fill --min-ms)")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--min-ms", type=float, default=300)
    p.add_argument("--json")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    args = p.parse_args()
    if args.device != "cpu":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False

    set_blas_threads = blas_threads_setter()
    results = []
    for name in args.workloads.split(","):
        for threads in (int(t) for t in args.threads.split(",")):
            torch.set_num_threads(threads)
            if set_blas_threads:
                set_blas_threads(threads)
            stepper = Stepper(name, args.device)
            stepper.run(args.warmup)
            steps = args.steps
            if steps <= 0:
                probe = time_steps(stepper, 3) / 3
                steps = min(100000, max(3, int(args.min_ms / max(probe, 1e-4))))
            per_step, cpu_per_step = [], []
            for _ in range(max(1, args.reps)):
                cpu_start = time.process_time()
                per_step.append(time_steps(stepper, steps) / steps)
                cpu_per_step.append((time.process_time() - cpu_start) * 1e3 / steps)
            ms = statistics.median(per_step)
            results.append({"workload": name, "threads": threads, "steps": steps, "ms_per_step": ms,
                            "cpu_ms_per_step": statistics.median(cpu_per_step)})
            print(f"# {name:14s} threads={threads} {ms:10.4f} ms/step", file=sys.stderr, flush=True)

    out = {"engine": "pytorch", "device": args.device, "torch": torch.__version__, "openblas_threads_set": set_blas_threads is not None, "reps": args.reps, "results": results}
    text = json.dumps(out, indent=2)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
