"""Workload 6 of bench/d2r_bench, the PyTorch side: a sweep of toy runs.

The twin of bench/toy_sweep.lua, written as a PyTorch research script
would be: a loop over runs r = 1..runs (r seeds torch), each drawing the
toy problem of workload 2 (10 training and 10 validation inputs
x ~ U[-5, 5]^2 with y = x + 2 + 1.25 eps), building the Gaussian policy
(MLP 2-[64,64]-4, mean and log-std), taking `updates` PG updates (Adam,
lr 1e-2; G = 5; the diagonal U* of the training targets; lambda = 1;
entropy bonus; per-dimension log-densities and entropies) and appending
its validation NLL (per dimension) to <out>/results.csv as it ends.  At
the end it reads the file back and fails unless every run is there with
a finite NLL.

    python3 bench/torch/toy_sweep.py --out DIR [--runs 100]
        [--updates 100] [--dtype float64] [--threads 1]
"""

import argparse
import csv
import math
import os
import sys
import time

import torch
from torch import nn

N, BATCH, HIDDEN, GROUPS, LAM, LR = 2, 10, [64, 64], 5, 1.0, 1e-2


def toy_split(dtype):
    """BATCH toy inputs and their targets."""
    x = torch.rand(BATCH, N, dtype=dtype) * 10 - 5
    y = x + 2.0 + 1.25 * torch.randn(BATCH, N, dtype=dtype)
    return x, y


def policy_net(dtype):
    """MLP 2-[64,64]-4 with ReLU: mean and log-std heads."""
    sizes = [N] + HIDDEN + [2 * N]
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i + 2 < len(sizes):
            layers.append(nn.ReLU())
    return nn.Sequential(*layers).to(dtype)


def dist(model, x):
    out = model(x)
    return torch.distributions.Normal(out[:, :N], out[:, N:].exp())


def run(seed, updates, dtype):
    """One run: its validation NLL after `updates` PG updates."""
    torch.manual_seed(seed)
    x, y = toy_split(dtype)
    xv, yv = toy_split(dtype)
    u = LAM / (2 * y.var(dim=0))                # diagonal U*
    model = policy_net(dtype)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    for _ in range(updates):
        d = dist(model, x)
        yhat = d.sample((GROUPS,))              # [G, B, n]
        diff = yhat - y
        reward = -(diff * diff * u).sum(-1)
        loss = ((-d.log_prob(yhat).mean(-1) * reward).mean()
                - LAM * d.entropy().mean(-1).mean())
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return -dist(model, xv).log_prob(yv).mean().item()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--runs", type=int, default=100)
    p.add_argument("--updates", type=int, default=100)
    p.add_argument("--dtype", choices=["float64", "float32"],
                   default="float64")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.distributions.Distribution.set_default_validate_args(False)
    dtype = getattr(torch, a.dtype)
    os.makedirs(a.out, exist_ok=True)
    path = os.path.join(a.out, "results.csv")
    with open(path, "a", newline="") as f:
        w = csv.writer(f)
        if f.tell() == 0:
            w.writerow(["run_seed", "updates", "split", "nll", "seconds"])
            f.flush()
        for seed in range(1, a.runs + 1):
            t = time.perf_counter()
            nll = run(seed, a.updates, dtype)
            w.writerow([seed, a.updates, "val", repr(nll),
                        "%.6f" % (time.perf_counter() - t)])
            f.flush()
    with open(path, newline="") as f:
        vals = [float(r["nll"]) for r in csv.DictReader(f)]
    finite = [v for v in vals if math.isfinite(v)]
    if len(vals) != a.runs or len(finite) != a.runs:
        print("toy_sweep: %d rows, %d finite NLLs, for %d runs"
              % (len(vals), len(finite), a.runs), file=sys.stderr)
        return 1
    print("toy_sweep: %d runs of %d updates stored in %s; validation NLL "
          "mean %.4f" % (a.runs, a.updates, path, sum(vals) / a.runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
