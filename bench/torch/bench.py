"""The PyTorch equivalents of d2r's benchmark workloads (bench/workloads.c).

Each workload is written the way a PyTorch research script would write
it (nn.Linear / nn.Sequential, torch.distributions, torch.optim.Adam),
with the same shapes, group sizes, sample counts, rewards and optimiser
settings as the d2r side.  Run by d2r_bench, one process per
measurement; prints one line

    result w=N name=... dtype=... threads=T median=S min=S max=S ...

(the median, min and max of the time per step in seconds over --runs
timed runs of `inner` steps each, after --warmup seconds of warm-up, and
for workloads 5 to 7 a note=... on the state after the last step), or
"error w=N msg=..." for a workload that has no code or failed.
"""

import argparse
import ctypes
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
from torch import nn


def openblas():
    """OpenBLAS as loaded by torch (the same library object), or None."""
    try:
        lib = ctypes.CDLL("libopenblas.so.0")
        lib.openblas_get_corename.restype = ctypes.c_char_p
        return lib
    except OSError:
        return None


def mlp(sizes):
    """Linear layers with ReLU between them (nn.Linear's own init)."""
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i + 2 < len(sizes):
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def mlp_flops(sizes, batch):
    """Matrix-product flops of one update (as bench_mlp_flops)."""
    f = 0.0
    for i in range(len(sizes) - 1):
        mkn = 2.0 * batch * sizes[i] * sizes[i + 1]
        f += 2 * mkn if i == 0 else 3 * mkn
    return f


# ---- workload 1: one epoch of the tabular protocol --------------------------

def stratified_split(y, frac, gen):
    """Splits the positions of y class by class: round(frac * c) of each
    class's c members (kept within 1..c-1) go to part (as d2r's split)."""
    rest, part = [], []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        idx = idx[gen.permutation(len(idx))]
        k = int(np.floor(frac * len(idx) + 0.5))
        k = min(max(k, 1), len(idx) - 1) if len(idx) > 1 else 0
        part.extend(idx[:k])
        rest.extend(idx[k:])
    return np.array(rest), np.array(part)


class Tabular:
    name, unit = "tabular", "epoch"
    batch, groups, lam, lr = 128, 50, 0.1, 1e-2

    def __init__(self, dtype, data):
        raw = np.loadtxt(data + "/uci/breast_cancer.csv", delimiter=",",
                         skiprows=1)
        x, y = raw[:, :-1], raw[:, -1].astype(np.int64)
        gen = np.random.default_rng(42)
        rest, _test = stratified_split(y, 0.2, gen)
        tr, _val = stratified_split(y[rest], 0.2, gen)
        tr = rest[tr]
        xt = x[tr]
        sd = xt.std(axis=0)
        sd[sd == 0] = 1.0
        self.x = torch.tensor((xt - xt.mean(axis=0)) / sd, dtype=dtype)
        self.y = torch.tensor(y[tr])
        self.classes = int(y.max()) + 1
        onehot = nn.functional.one_hot(self.y, self.classes).to(dtype)
        trace = torch.cov(onehot.T).trace()
        self.beta = self.lam * self.classes / (2 * trace)
        self.model = nn.Linear(x.shape[1], self.classes).to(dtype)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=self.lr)
        self.rows, self.flops = len(tr), 0.0

    def batch_update(self, xb, yb):
        logits = self.model(xb)
        dist = torch.distributions.Categorical(logits=logits)
        samples = dist.sample((self.groups,))                 # [G, B]
        diff = (nn.functional.one_hot(samples, self.classes)
                - nn.functional.one_hot(yb, self.classes)).to(logits.dtype)
        reward = -self.beta * (diff * diff).sum(-1)           # U = beta I
        rt = reward - reward.min(dim=0, keepdim=True).values  # min-shift
        logp = dist.log_prob(samples)
        loss = (-logp * rt).mean() - self.lam * dist.entropy().mean()
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()

    def step(self):
        order = torch.randperm(len(self.y))
        for b in range(0, len(order), self.batch):
            idx = order[b:b + self.batch]
            self.batch_update(self.x[idx], self.y[idx])


# ---- workloads 2-4: PG updates of Gaussian policies -------------------------

class Policy:
    """An MLP to 2n outputs read as a mean and a log standard deviation;
    one update draws G samples per input, scores them with a Mahalanobis
    reward and minimises the REINFORCE surrogate with an entropy bonus,
    log-densities and entropies averaged over the n dimensions."""
    unit = "update"

    def __init__(self, dtype, name, inp, n, batch, groups, hidden, toy):
        self.name, self.n, self.groups, self.lam = name, n, groups, 1.0
        if toy:
            x = torch.rand(batch, inp, dtype=dtype) * 10 - 5
            y = x + 2.0 + 1.25 * torch.randn(batch, n, dtype=dtype)
            self.u = self.lam / (2 * y.var(dim=0))            # diagonal U*
        else:
            x = torch.randn(batch, inp, dtype=dtype)
            y = 0.5 * x[:, :n] + 0.1 * torch.randn(batch, n, dtype=dtype)
            self.u = self.lam * n / (2 * y.var(dim=0).sum())  # u* I
        self.x, self.y = x, y
        sizes = [inp] + hidden + [2 * n]
        self.model = mlp(sizes).to(dtype)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-2)
        self.rows, self.flops = batch, mlp_flops(sizes, batch)

    def step(self):
        out = self.model(self.x)
        mean, log_std = out[:, :self.n], out[:, self.n:]
        dist = torch.distributions.Normal(mean, log_std.exp())
        yhat = dist.sample((self.groups,))                    # [G, B, n]
        d = yhat - self.y
        reward = -(d * d * self.u).sum(-1)                    # [G, B]
        logp = dist.log_prob(yhat).mean(-1)
        entropy = dist.entropy().mean(-1)
        loss = (-logp * reward).mean() - self.lam * entropy.mean()
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()


# ---- workload 5: an implicit-differentiation outer step --------------------

def conjugate_gradient(apply, b, iters):
    """CG on apply(x) = b from x = 0: `iters` iterations unless the
    residual or the curvature along a direction becomes exactly zero (as
    d2r_linsolve's CG with tolerance 0).  Returns x, the iterations made
    and the relative residual |A x - b| / |b|, measured with one more
    product, as d2r_linsolve reports it."""
    x = torch.zeros_like(b)
    r = b.clone()
    d = r.clone()
    rs = torch.dot(r, r)
    it = 0
    while it < iters and rs > 0:
        ad = apply(d)
        it += 1
        curv = torch.dot(d, ad)
        if curv == 0 or not torch.isfinite(curv):
            break
        alpha = rs / curv
        x += alpha * d
        r -= alpha * ad
        rs_new = torch.dot(r, r)
        d = r + (rs_new / rs) * d
        rs = rs_new
    res = torch.linalg.norm(apply(x) - b) / torch.linalg.norm(b)
    return x, it, res.item()


class Implicit:
    """The toy problem of workload 2 with a learned reward U = u I (u a
    0-d leaf, starting at 1).  One outer step: 50 PG updates of the policy
    as in workload 2 (Adam, lr 1e-2) with the reward u I, u held constant,
    warm-started (the policy and its Adam state carry over); the implicit
    hypergradient dF/du, F the NLL (per dimension) of 10 held-out toy
    points, L the inner objective in bilevel.lua's "dice" form on one
    draw of G samples per input, H w = d_theta F solved by 10 CG
    iterations from 0 over Hessian-vector products (double backward), and
    its residual measured with one more; then one Adam step on u (lr
    1e-2), u kept >= 1e-3 (as workloads.c)."""
    name, unit = "implicit", "outer_step"
    inner_steps, cg_iters, batch, n, groups, lam = 50, 10, 10, 2, 5, 1.0
    lr, u_min = 1e-2, 1e-3

    def __init__(self, dtype):
        def toy():
            x = torch.rand(self.batch, self.n, dtype=dtype) * 10 - 5
            return x, x + 2.0 + 1.25 * torch.randn(self.batch, self.n,
                                                   dtype=dtype)
        self.x, self.y = toy()
        self.xv, self.yv = toy()
        self.model = mlp([self.n, 64, 64, 2 * self.n]).to(dtype)
        self.params = list(self.model.parameters())
        self.u = torch.tensor(1.0, dtype=dtype, requires_grad=True)
        self.inner = torch.optim.Adam(self.params, lr=self.lr)
        self.outer = torch.optim.Adam([self.u], lr=self.lr)
        self.rows, self.flops = self.batch, 0.0
        self.last = (float("nan"), 0, float("nan"), float("nan"))

    def dist(self, x):
        out = self.model(x)
        return torch.distributions.Normal(out[:, :self.n],
                                          out[:, self.n:].exp())

    def inner_update(self):
        d = self.dist(self.x)
        yhat = d.sample((self.groups,))                       # [G, B, n]
        diff = yhat - self.y
        reward = -(diff * diff).sum(-1) * self.u.detach()     # [G, B]
        logp = d.log_prob(yhat).mean(-1)
        loss = (-logp * reward).mean() - self.lam * d.entropy().mean()
        self.inner.zero_grad()
        loss.backward()
        self.inner.step()

    def inner_loss(self, yhat=None):
        """-mean(r exp(lp - stop(lp))) / n - lambda mean(H): the score
        surrogate's gradient, a Hessian that estimates the expected
        objective's; the reward keeps its graph to u."""
        d = self.dist(self.x)
        if yhat is None:
            yhat = d.sample((self.groups,))
        diff = yhat - self.y
        reward = -(diff * diff).sum(-1) * self.u
        lp = d.log_prob(yhat).sum(-1)
        return (-(reward * torch.exp(lp - lp.detach())).mean() / self.n
                - self.lam * d.entropy().mean())

    def hypergradient(self, yhat=None):
        """dF/du at the current policy; also the CG iterations and
        residual and F.  yhat: the draw for L ([G, B, n]; None: fresh)."""
        F = -self.dist(self.xv).log_prob(self.yv).mean()
        gF = torch.cat([g.reshape(-1)
                        for g in torch.autograd.grad(F, self.params)])
        g = torch.autograd.grad(self.inner_loss(yhat), self.params,
                                create_graph=True)

        def parts(v):
            out, at = [], 0
            for p in self.params:
                out.append(v[at:at + p.numel()].view_as(p))
                at += p.numel()
            return out

        def hvp(v):
            hv = torch.autograd.grad(g, self.params, grad_outputs=parts(v),
                                     retain_graph=True)
            return torch.cat([h.reshape(-1) for h in hv])

        w, iters, res = conjugate_gradient(hvp, gF, self.cg_iters)
        mixed = torch.autograd.grad(g, [self.u], grad_outputs=parts(w))[0]
        return -mixed, iters, res, F.item()

    def step(self):
        for _ in range(self.inner_steps):
            self.inner_update()
        hg, iters, res, F = self.hypergradient()
        if not torch.isfinite(hg):
            raise RuntimeError("implicit: the hypergradient is not finite")
        self.outer.zero_grad()
        self.u.grad = hg.detach().reshape(self.u.shape)
        self.outer.step()
        with torch.no_grad():
            self.u.clamp_(min=self.u_min)
        self.last = (hg.item(), iters, res, F)

    def note(self):
        hg, iters, res, F = self.last
        return ("u:%.6g,hypergrad:%.6g,cg_iterations:%d,cg_residual:%.4g,"
                "val_nll:%.6g" % (self.u.item(), hg, iters, res, F))


# ---- workload 6: a sweep of toy runs, end to end ----------------------------

class Sweep:
    """One step runs bench/torch/toy_sweep.py as a fresh python3 process
    (this interpreter): 100 toy runs of 100 updates, one after another,
    each appending its validation NLL to a CSV file in a fresh temporary
    directory, removed after the step (as workloads.c does for d2r)."""
    name, unit = "sweep", "sweep"
    runs, updates = 100, 100

    def __init__(self, dtype_name, threads):
        here = os.path.dirname(os.path.abspath(__file__))
        self.script = os.path.join(here, "toy_sweep.py")
        if not os.path.exists(self.script):
            raise RuntimeError("sweep: no script %s" % self.script)
        self.dtype_name, self.threads = dtype_name, threads
        self.rows, self.flops = 0, 0.0
        self.nll_mean = float("nan")

    def step(self):
        out = tempfile.mkdtemp(prefix="d2r_bench_sweep.")
        try:
            log = os.path.join(out, "log.txt")
            with open(log, "w") as f:
                rc = subprocess.call(
                    [sys.executable, self.script, "--out", out, "--runs",
                     str(self.runs), "--updates", str(self.updates),
                     "--dtype", self.dtype_name, "--threads",
                     str(self.threads)], stdout=f, stderr=subprocess.STDOUT)
            with open(log) as f:
                lines = [ln.strip() for ln in f if ln.strip()]
            key = "validation NLL mean "
            for ln in lines:
                if key in ln:
                    self.nll_mean = float(ln.split(key)[1])
            if rc != 0:
                raise RuntimeError("sweep: toy_sweep.py exited with status "
                                   "%d: %s" % (rc, lines[-1] if lines
                                               else "(no output)"))
        finally:
            shutil.rmtree(out)

    def note(self):
        return "workers:1,runs:%d,updates:%d,val_nll_mean:%.6g" % (
            self.runs, self.updates, self.nll_mean)


def make(w, dtype, data, threads=1):
    if w == 0:
        return None
    if w in (1, 8):
        # 8 differs from 1 only in how d2r draws (G samples a row, not
        # class counts); PyTorch draws G samples a row in both.
        return Tabular(dtype, data)
    if w == 2:
        return Policy(dtype, "gaussian", 2, 2, 10, 5, [64, 64], True)
    if w == 3:
        return Policy(dtype, "dynamics", 23, 17, 10000, 5, [64, 64], False)
    if w == 4:
        return Policy(dtype, "large", 23, 17, 4096, 5, [200] * 4, False)
    if w == 5:
        return Implicit(dtype)
    if w in (6, 7):
        # 7 differs from 6 only in d2r's runs per worker process (one); the
        # PyTorch script runs all its runs in one process either way.
        return Sweep(str(dtype).replace("torch.", ""), threads)
    raise NotImplementedError("unknown workload %d" % w)


def timed(work, a):
    """Warm-up (a.warmup seconds or a.warmup_steps steps), then a.runs runs
    of a.inner steps (or of about a.run_time seconds, within a.max_steps
    steps in all), as d2r_bench's child does."""
    k, t0 = 0, time.perf_counter()
    t1 = t0
    while (k < a.warmup_steps if a.warmup_steps >= 0 else
           k < 3 or (time.perf_counter() - t0 < a.warmup
                     and k < a.max_steps // 4)):
        work.step()
        k += 1
        if k == 1:
            t1 = time.perf_counter()
    per = (time.perf_counter() - t1) / (k - 1) if k > 1 else 1e-3
    inner = a.inner
    if inner < 1:
        cap = (a.max_steps - k) // a.runs
        inner = max(1, min(cap, int(a.run_time / max(per, 1e-9) + 0.5)))
    times = []
    for _ in range(a.runs):
        t = time.perf_counter()
        for _ in range(inner):
            work.step()
        times.append((time.perf_counter() - t) / inner)
    return k, inner, times


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workload", type=int, required=True)
    p.add_argument("--dtype", choices=["float64", "float32"],
                   default="float64")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--runs", type=int, default=11)
    p.add_argument("--run-time", type=float, default=0.2)
    p.add_argument("--warmup", type=float, default=0.5)
    p.add_argument("--max-steps", type=int, default=5000)
    p.add_argument("--warmup-steps", type=int, default=-1)
    p.add_argument("--inner", type=int, default=-1)
    p.add_argument("--data", default="data")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(42)
    # Argument checks of torch.distributions are left off: the fastest
    # PyTorch, so that ratios are not flattered by them.
    torch.distributions.Distribution.set_default_validate_args(False)
    dtype = getattr(torch, a.dtype)
    blas = openblas()
    core = blas.openblas_get_corename().decode() if blas else "?"
    bthreads = blas.openblas_get_num_threads() if blas else -1
    try:
        work = make(a.workload, dtype, a.data, a.threads)
    except (NotImplementedError, RuntimeError, OSError) as e:
        print("error w=%d msg=%s" % (a.workload, e))
        return 0
    if work is None:
        print("result w=0 name=baseline dtype=%s threads=%d median=0 min=0 "
              "max=0 flops=0 rows=0 core=%s torch=%s"
              % (a.dtype, torch.get_num_threads(), core, torch.__version__))
        return 0
    try:
        warm, inner, times = timed(work, a)
    except (RuntimeError, OSError) as e:
        print("error w=%d msg=%s" % (a.workload, e))
        return 1
    note = " note=" + work.note() if hasattr(work, "note") else ""
    print("result w=%d name=%s unit=%s dtype=%s threads=%d blas_threads=%d "
          "core=%s torch=%s warmup_steps=%d inner=%d runs=%d median=%.9g "
          "min=%.9g max=%.9g flops=%.17g rows=%d%s"
          % (a.workload, work.name, work.unit, a.dtype,
             torch.get_num_threads(), bthreads, core, torch.__version__,
             warm, inner, a.runs, statistics.median(times), min(times),
             max(times), work.flops, work.rows, note))
    return 0


if __name__ == "__main__":
    sys.exit(main())
