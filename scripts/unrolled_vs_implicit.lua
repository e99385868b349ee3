-- Unrolled against implicit differentiation on the synthetic problem of
-- METHOD.md's experiment 3 (scripts/implicit_synthetic.lua): for K inner
-- steps from the same initialisation and the same samples, the
-- hypergradient back-propagated through the K steps (exact for the
-- truncated problem) against the implicit-function-theorem one at the
-- K-th iterate, with one CG iteration (the paper's) and with a dense
-- solve; and the CPU time and memory of one outer step of each as K
-- grows.
--
--   d2r scripts/unrolled_vs_implicit.lua [--K 5,10,25,50,100]
--       [--seeds 5] [--quick] [--out results/unrolled_vs_implicit]
--
-- Agreement: cosine similarity and relative error |g_imp - g_unr| /
-- |g_unr|, for a scalar u (where the cosine is the sign agreement) and a
-- diagonal U (two entries).  Time: os.clock() seconds of K inner steps
-- plus the hypergradient (the collection made to measure memory left
-- out).  Memory: engine tensor bytes alive with the
-- largest graph of the step (d2r.live_bytes after a collection: the
-- whole unrolled graph; for implicit, one inner loss with its
-- create_graph gradient, what each Hessian-vector product
-- differentiates), and the growth of the process's peak RSS during the
-- step (the peak is reset before each step where Linux allows).
--
-- Writes <out>/runs.csv (one row per seed, kind and K), <out>/summary.csv
-- and PNG plots (agreement_cosine, agreement_relerr, time, memory).
package.path = ((arg and arg[0] or ""):match("^(.*)/[^/]*$") or ".")
               .. "/?.lua;" .. package.path
local d2r = require "d2r"
local C = require "implicit_common"

local opts = d2r.script_options("unrolled_vs_implicit", {
  K = {5, 10, 25, 50, 100}, seeds = 5, seed = 0,
  kinds = {"scalar", "diagonal"}, estimator = "dice", u = 0.5,
  inner_lr = 1e-2, inner_clip = 1.0, G = 5, lambda = 1.0, sigma = 1.25,
  hidden = {"none"}, inputs = 100, val_inputs = 100, targets = 10,
  quiet = false,
}, [[
usage: d2r scripts/unrolled_vs_implicit.lua [options]
  --K LIST          inner step counts (5,10,25,50,100)
  --seeds N (5)     --seed S (0)
  --kinds LIST      scalar,diagonal
  --estimator E     dice (default), score or pathwise
  --u U             the reward at which hypergradients are taken (0.5)
  --inner_lr (1e-2) --inner_clip (1)  --G (5)  --lambda (1)  --sigma (1.25)
  --hidden LIST     policy hidden sizes (none: linear)
  --quick           K 5,25, 1 seed
  --out DIR         output folder (results/unrolled_vs_implicit)
  --quiet           no per-run lines]], {K = {5, 25}, seeds = 1})
if not opts then return end

local hidden = C.numbers(opts.hidden)
local policy_name = #hidden == 0 and "linear"
                    or "mlp" .. table.concat(hidden, "x")
local S = d2r.solvers

local function log(...)
  if not opts.quiet then print(string.format(...)) end
end

local function problem(seed, kind)
  local data = C.synthetic(seed, {sigma = opts.sigma, inputs = opts.inputs,
                                  val_inputs = opts.val_inputs,
                                  targets = opts.targets})
  local reward = d2r.reward_param{kind = kind, n = 2, init = opts.u,
                                  softplus = false}
  return S.pg_problem{policy = C.policy("diag", hidden, 2, 2),
                      reward = reward, train = data.train, val = data.val,
                      lambda = opts.lambda, G = opts.G,
                      estimator = opts.estimator, seed = 7919 * seed + 1}
end

local function dot(a, b)
  local s = 0
  for i = 1, #a do s = s + a[i] * b[i] end
  return s
end

local function agreement(g, ref)
  local na, nb = math.sqrt(dot(g, g)), math.sqrt(dot(ref, ref))
  local diff = {}
  for i = 1, #g do diff[i] = g[i] - ref[i] end
  return dot(g, ref) / (na * nb), math.sqrt(dot(diff, diff)) / nb
end

-- Engine bytes alive now, after a full collection.
local function live()
  collectgarbage()
  collectgarbage()
  return d2r.live_bytes()
end

-- The implicit hypergradient at theta with the given linear solve and a
-- generator seeded by seed (the same samples for every solve).
local function implicit_at(P, theta, lin, seed)
  local o = {rng = d2r.rng(seed)}
  for k, v in pairs(lin) do o[k] = v end
  local hg, _, info = S.implicit_step(P, theta, o)
  return hg:tolist(), info
end

local COLS = {"seed", "kind", "K", "estimator", "policy", "u", "inner_lr",
              "inner_clip", "G", "lambda", "sigma", "unrolled_norm",
              "paper_cosine", "paper_relerr", "paper_converged",
              "dense_cosine", "dense_relerr", "unrolled_seconds",
              "implicit_seconds", "unrolled_bytes", "implicit_bytes",
              "unrolled_peak_kb", "implicit_peak_kb", "final_train_nll"}
local KEY = {"seed", "kind", "K", "estimator", "policy", "u", "inner_lr",
             "inner_clip", "G", "lambda", "sigma"}
local results = d2r.results_file(opts.out .. "/runs.csv", COLS)
local have, planned = {}, {}
for _, r in ipairs(results.rows) do have[C.key(r, KEY)] = true end
local PAPER = {solver = "cg", max_iter = 1, tol = 1e-10}
local DENSE = {solver = "dense", ridge = 0}

for _, kind in ipairs(opts.kinds) do
  for _, K in ipairs(opts.K) do
    for s = opts.seed, opts.seed + opts.seeds - 1 do
      local row = {seed = s, kind = kind, K = K, estimator = opts.estimator,
                   policy = policy_name, u = opts.u,
                   inner_lr = opts.inner_lr, inner_clip = opts.inner_clip,
                   G = opts.G, lambda = opts.lambda, sigma = opts.sigma}
      local key = C.key(row, KEY)
      planned[key] = true
      if not have[key] then
        local noise = 104729 * s + 3
        -- Unrolled: K functional steps with their graph, then backward.
        local P = problem(s, kind)
        local theta = P:init("reinit")
        local base = live()
        C.reset_peak()
        local rss0 = C.peak_rss_kb()
        local hg, final, _, info = S.unroll(P, theta, {
          steps = K, lr = opts.inner_lr, clip = opts.inner_clip,
          rng = d2r.rng(noise), measure = true})
        row.unrolled_seconds = info.seconds
        row.unrolled_peak_kb = (C.peak_rss_kb() or 0) - (rss0 or 0)
        row.unrolled_bytes = info.live_bytes - base
        local gu = hg:tolist()
        hg = nil
        -- Implicit at the same K-th iterate, same samples for both solves.
        for i = 1, #theta do theta[i]:copy_(final[i]) end
        final = nil
        local gp, info = implicit_at(P, theta, PAPER, noise + 1)
        local gd = implicit_at(P, theta, DENSE, noise + 1)
        row.unrolled_norm = math.sqrt(dot(gu, gu))
        row.paper_cosine, row.paper_relerr = agreement(gp, gu)
        row.paper_converged = info.converged and 1 or 0
        row.dense_cosine, row.dense_relerr = agreement(gd, gu)
        row.final_train_nll = S.value_of(P, theta, "train")
        -- Implicit's own outer step: K optimiser steps, then the solve.
        local Q = problem(s, kind)
        local th = Q:init("reinit")
        base = live()
        C.reset_peak()
        rss0 = C.peak_rss_kb()
        local t0 = os.clock()
        S.inner_fit(Q, th, {steps = K, lr = opts.inner_lr,
                            clip = opts.inner_clip, rng = d2r.rng(noise)})
        implicit_at(Q, th, PAPER, noise + 1)
        row.implicit_seconds = os.clock() - t0
        row.implicit_peak_kb = (C.peak_rss_kb() or 0) - (rss0 or 0)
        local loss = Q:inner_loss(th, d2r.rng(noise))
        local g = d2r.grad(loss, th, {create_graph = true})
        row.implicit_bytes = live() - base
        loss, g = nil, nil
        results:append({row})
        log("%-8s K %3d seed %d  cos paper %+.3f dense %+.3f  relerr paper "
            .. "%.3f dense %.3f  time %.3fs / %.3fs  bytes %d / %d", kind,
            K, s, row.paper_cosine, row.dense_cosine, row.paper_relerr,
            row.dense_relerr, row.unrolled_seconds, row.implicit_seconds,
            row.unrolled_bytes, row.implicit_bytes)
      end
    end
  end
end
results:close()

-- ---- summary ------------------------------------------------------------

local St = d2r.stats
local rows = {}
for _, r in ipairs(results.rows) do
  if planned[C.key(r, KEY)] then rows[#rows + 1] = r end
end
local METRICS = {"paper_cosine", "paper_relerr", "dense_cosine",
                 "dense_relerr", "unrolled_seconds", "implicit_seconds",
                 "unrolled_bytes", "implicit_bytes", "unrolled_peak_kb",
                 "implicit_peak_kb"}
local summary, lines = {}, {}
for _, g in ipairs(St.group(rows, {"kind", "K"})) do
  local m = {}
  for _, metric in ipairs(METRICS) do
    local xs = {}
    for _, r in ipairs(g.rows) do xs[#xs + 1] = r[metric] end
    m[metric] = St.mean(xs)
    summary[#summary + 1] = {kind = g.keys.kind, K = g.keys.K,
                             metric = metric, mean = St.mean(xs),
                             std = St.std(xs), n = #xs}
  end
  lines[#lines + 1] = {g.keys.kind, tostring(g.keys.K),
    ("%+.3f"):format(m.paper_cosine), ("%.3f"):format(m.paper_relerr),
    ("%+.3f"):format(m.dense_cosine), ("%.3f"):format(m.dense_relerr),
    ("%.3f"):format(m.unrolled_seconds), ("%.3f"):format(m.implicit_seconds),
    ("%.0f"):format(m.unrolled_bytes / 1024),
    ("%.0f"):format(m.implicit_bytes / 1024),
    ("%.0f"):format(m.unrolled_peak_kb), ("%.0f"):format(m.implicit_peak_kb),
    tostring(#g.rows)}
end
d2r.write_csv(opts.out .. "/summary.csv", {"kind", "K", "metric", "mean",
              "std", "n"}, summary)
print(d2r.format_table({"kind", "K", "cos 1-CG", "relerr 1-CG", "cos dense",
                        "relerr dense", "unrolled s", "implicit s",
                        "unrolled KiB", "implicit KiB", "unr. peak kB",
                        "imp. peak kB", "n"}, lines))

-- ---- plots --------------------------------------------------------------

local P = d2r.plot
if #rows > 0 then
  local cos, rel, time, mem = {}, {}, {}, {}
  for _, r in ipairs(rows) do
    for _, m in ipairs{{"paper", "1 CG iteration"}, {"dense", "dense"}} do
      local c = r.kind .. ", " .. m[2]
      cos[#cos + 1] = {K = r.K, v = r[m[1] .. "_cosine"], curve = c}
      rel[#rel + 1] = {K = r.K, v = math.log(r[m[1] .. "_relerr"], 10),
                       curve = c}
    end
    time[#time + 1] = {K = r.K, v = r.unrolled_seconds,
                       curve = r.kind .. ", unrolled"}
    time[#time + 1] = {K = r.K, v = r.implicit_seconds,
                       curve = r.kind .. ", implicit (1 CG)"}
    mem[#mem + 1] = {K = r.K, v = r.unrolled_bytes / 1024,
                     curve = r.kind .. ", unrolled"}
    mem[#mem + 1] = {K = r.K, v = r.implicit_bytes / 1024,
                     curve = r.kind .. ", implicit"}
  end
  local out = opts.out .. "/"
  C.plotted(P.curves(cos, {out = out .. "agreement_cosine", x = "K",
    y = "v", by = "curve", band = "std", formats = {"png"},
    title = "Cosine of implicit and unrolled hypergradients",
    xlabel = "inner steps K", ylabel = "cosine"}))
  C.plotted(P.curves(rel, {out = out .. "agreement_relerr", x = "K",
    y = "v", by = "curve", band = "std", formats = {"png"},
    title = "Relative error of the implicit hypergradient (unrolled as "
            .. "reference), log10", xlabel = "inner steps K",
    ylabel = "log10 |g_imp - g_unr| / |g_unr|"}))
  C.plotted(P.curves(time, {out = out .. "time", x = "K", y = "v",
    by = "curve", band = "std", formats = {"png"},
    title = "CPU time of one outer step", xlabel = "inner steps K",
    ylabel = "seconds"}))
  C.plotted(P.curves(mem, {out = out .. "memory", x = "K", y = "v",
    by = "curve", band = "std", formats = {"png"},
    title = "Engine memory held by the largest graph of an outer step",
    xlabel = "inner steps K", ylabel = "KiB"}))
end
for _, f in ipairs(C.drawn) do print("plot: " .. f) end
print(("results: %s/runs.csv, summary.csv"):format(opts.out))
