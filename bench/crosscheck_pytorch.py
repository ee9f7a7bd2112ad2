# Trains, in PyTorch, the run that bench/export_run wrote: the same scaled rows, the same initial parameters,
# the same batches in the same order, Adam in Keras' form. It then reports how far PyTorch's final parameters
# are from trainrr's, and both test accuracies.
#
# With --others N it also trains N more times on the same split, each time with another glorot_uniform
# initialization and other shuffles drawn by PyTorch. That shows how much test accuracy on this one split
# depends on the initialization and the batch order alone.
#
#   build/bench/export_run examples/breast_cancer.toml run.txt
#   /usr/bin/python3 bench/crosscheck_pytorch.py run.txt --others 100
#
# Needs Debian's python3-torch. Only Dense models can be cross-checked, with Adam (in Keras' form, written
# here) or SGD with or without (Nesterov) momentum (PyTorch's own torch.optim.SGD, which for a constant
# learning rate is Keras' SGD). The losses supported are binary_crossentropy, sparse_categorical_crossentropy
# and mse.
import argparse
import math
import sys

import numpy as np
import torch


def read_export(path):
    run = {"init": [], "final": [], "batches": []}
    with open(path) as f:
        for number, line in enumerate(f, 1):
            tag, *fields = line.split()
            if tag == "model":
                run["layers"] = [(a, b == "1") for a, b in (x.split(":") for x in fields)]
            elif tag == "optimizer":
                run["optimizer"] = (fields[0], *map(float, fields[1:]))
            elif tag == "loss":
                run["loss"] = fields[0]
            elif tag in ("x_train", "x_test"):
                rows, cols = int(fields[0]), int(fields[1])
                run[tag] = torch.tensor(np.array(fields[2:], dtype=np.float32).reshape(rows, cols))
            elif tag in ("y_train", "y_test"):
                run[tag] = torch.tensor(np.array(fields[1:], dtype=np.float32))
            elif tag in ("init", "final"):
                d0, d1 = int(fields[1]), int(fields[2])
                run[tag].append((fields[0], np.array(fields[3:], dtype=np.float32).reshape(d0, d1)))
            elif tag == "batch":
                run["batches"].append(np.array(fields[2:], dtype=np.int64))
            elif tag == "test":
                run["test_loss"], run["test_accuracy"] = float(fields[0]), float(fields[1])
            else:
                sys.exit(f"{path}:{number}: unknown record '{tag}'")
    return run


ACTIVATIONS = {"linear": lambda z: z, "relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh,
               "softmax": lambda z: torch.softmax(z, dim=1)}


class Model:
    def __init__(self, layers, arrays):
        self.layers = []
        it = iter(arrays)
        for activation, has_bias in layers:
            if activation not in ACTIVATIONS:
                sys.exit(f"activation '{activation}' is not supported here")
            kernel = torch.tensor(next(it)).requires_grad_()
            bias = torch.tensor(next(it)).reshape(-1).requires_grad_() if has_bias else None
            self.layers.append((kernel, bias, ACTIVATIONS[activation]))
        self.params = [p for k, b, _ in self.layers for p in (k, b) if p is not None]

    def __call__(self, x):
        for kernel, bias, activation in self.layers:
            x = x @ kernel
            if bias is not None:
                x = x + bias
            x = activation(x)
        return x


def loss_of(name, out, y):
    if name == "binary_crossentropy":
        return torch.nn.functional.binary_cross_entropy(out.squeeze(1), y)
    if name == "sparse_categorical_crossentropy":
        return torch.nn.functional.nll_loss(torch.log(out.clamp_min(1e-7)), y.long())
    if name == "mse":
        return ((out.squeeze(1) - y) ** 2).mean()
    sys.exit(f"loss '{name}' is not supported here")


def accuracy(name, out, y):
    predicted = (out.squeeze(1) > 0.5).float() if name == "binary_crossentropy" else out.argmax(1).float()
    return (predicted == y).float().mean().item()


def train(run, arrays, batches):
    kind, lr, beta_1, beta_2, epsilon, momentum, nesterov = run["optimizer"]
    model = Model(run["layers"], arrays)
    x, y = run["x_train"], run["y_train"]
    if kind == "sgd":
        sgd = torch.optim.SGD(model.params, lr=lr, momentum=momentum, nesterov=bool(nesterov))
        for rows in batches:
            idx = torch.from_numpy(rows)
            sgd.zero_grad()
            loss_of(run["loss"], model(x[idx]), y[idx]).backward()
            sgd.step()
        return model
    if kind != "adam":
        sys.exit(f"optimizer '{kind}' is not supported here")
    m = [torch.zeros_like(p) for p in model.params]
    v = [torch.zeros_like(p) for p in model.params]
    for t, rows in enumerate(batches, 1):
        idx = torch.from_numpy(rows)
        grads = torch.autograd.grad(loss_of(run["loss"], model(x[idx]), y[idx]), model.params)
        # Keras' Adam: the bias corrections go into the step size, epsilon is added to the root of v.
        lr_t = lr * math.sqrt(1 - beta_2 ** t) / (1 - beta_1 ** t)
        with torch.no_grad():
            for p, g, m_i, v_i in zip(model.params, grads, m, v):
                m_i += (g - m_i) * (1 - beta_1)
                v_i += (g * g - v_i) * (1 - beta_2)
                p -= lr_t * m_i / (torch.sqrt(v_i) + epsilon)
    return model


def test_accuracy(run, model):
    with torch.no_grad():
        return accuracy(run["loss"], model(run["x_test"]), run["y_test"])


def glorot_uniform(shape, generator):
    limit = math.sqrt(6 / (shape[0] + shape[1]))
    return ((torch.rand(shape, generator=generator) * 2 - 1) * limit).numpy()


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("export", help="file written by build/bench/export_run")
    parser.add_argument("--others", type=int, default=0, help="also train N other initializations and shuffles")
    args = parser.parse_args()
    torch.set_num_threads(1)
    run = read_export(args.export)

    model = train(run, [a for _, a in run["init"]], run["batches"])
    worst, largest = 0.0, 0.0
    for p, (name, final) in zip(model.params, run["final"]):
        worst = max(worst, float((p.detach().reshape(-1) - torch.from_numpy(final.reshape(-1))).abs().max()))
        largest = max(largest, float(np.abs(final).max()))
    print(f"same data, initial parameters and batches ({len(run['batches'])} steps):")
    print(f"  test accuracy: trainrr {run['test_accuracy']:.4f}, PyTorch {test_accuracy(run, model):.4f}")
    print(f"  final parameters: largest |trainrr - PyTorch| {worst:.3g} (largest |parameter| {largest:.3g})")

    if args.others:
        rows = len(run["y_train"])
        batch_size = max(len(b) for b in run["batches"])
        epochs = len(run["batches"]) // math.ceil(rows / batch_size)
        accuracies = []
        for seed in range(args.others):
            generator = torch.Generator().manual_seed(seed)
            arrays = [glorot_uniform(a.shape, generator) if name.endswith(".kernel") else np.zeros_like(a)
                      for name, a in run["init"]]
            batches = []
            for _ in range(epochs):
                order = torch.randperm(rows, generator=generator).numpy()
                batches += [order[i:i + batch_size] for i in range(0, rows, batch_size)]
            accuracies.append(test_accuracy(run, train(run, arrays, batches)))
        a = np.array(accuracies)
        values, counts = np.unique(np.round(a, 4), return_counts=True)
        print(f"same split, {len(a)} other initializations and shuffles ({epochs} epochs of batch {batch_size}):")
        print(f"  test accuracy: mean {a.mean():.4f}, min {a.min():.4f}, max {a.max():.4f}; "
              f"at or below trainrr's {run['test_accuracy']:.4f}: "
              f"{(np.round(a, 4) <= round(run['test_accuracy'], 4)).sum()}")
        print("  distribution: " + ", ".join(f"{v:.4f} x{c}" for v, c in zip(values, counts)))


if __name__ == "__main__":
    main()
