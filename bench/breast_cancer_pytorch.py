# The breast-cancer example (Dense 16 relu, Dense 1 sigmoid, Adam lr 1e-3 eps 1e-7, batch 32, 10 epochs,
# standardized on the training rows, 114 test rows) in PyTorch over ten random splits: how much this model's
# test accuracy varies with the split alone. Run: /usr/bin/python3 bench/breast_cancer_pytorch.py
import os

import numpy as np
import torch

path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples", "data", "breast_cancer.csv")
d = np.loadtxt(path, delimiter=",", skiprows=1)
X, y = d[:, :-1].astype(np.float32), d[:, -1].astype(np.float32)
accs, losses = [], []
for seed in range(10):
    rng = np.random.default_rng(seed)
    p = rng.permutation(len(y))
    te, tr = p[:114], p[114:]
    mu, sd = X[tr].mean(0), X[tr].std(0)
    Xtr, Xte = (X[tr] - mu) / sd, (X[te] - mu) / sd
    torch.manual_seed(seed)
    m = torch.nn.Sequential(torch.nn.Linear(30, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1), torch.nn.Sigmoid())
    for layer in m:
        if isinstance(layer, torch.nn.Linear):
            torch.nn.init.xavier_uniform_(layer.weight)
            torch.nn.init.zeros_(layer.bias)
    opt = torch.optim.Adam(m.parameters(), lr=1e-3, eps=1e-7)
    Xt, yt = torch.tensor(Xtr), torch.tensor(y[tr])
    for epoch in range(10):
        perm = torch.randperm(len(yt))
        total = 0.0
        for i in range(0, len(yt), 32):
            idx = perm[i:i + 32]
            opt.zero_grad()
            loss = torch.nn.functional.binary_cross_entropy(m(Xt[idx]).squeeze(1), yt[idx])
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
    with torch.no_grad():
        pred = (m(torch.tensor(Xte)).squeeze(1) > 0.5).float()
        accs.append((pred == torch.tensor(y[te])).float().mean().item())
    losses.append(total / len(yt))
print("final epoch loss per split:", np.round(losses, 3))
print("test accuracy per split:", np.round(accs, 3), "mean", round(float(np.mean(accs)), 4))
