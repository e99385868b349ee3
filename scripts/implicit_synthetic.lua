-- The implicit solver on synthetic data (METHOD.md, experiment 3): the
-- reward U = u I is learned by implicit differentiation so that the
-- policy PG trains with it explains the data.  lambda = 1 and noise
-- sigma = 1.25, so u* = lambda / (2 sigma^2) = 0.32; 100 outer steps of
-- 50 inner steps, lr 1e-2 for both, G = 5; the "paper" preset (inner
-- gradients clamped to [-1, 1], outer ones to [-10, 10], one CG
-- iteration, the policy re-initialised every outer step).
--
--   d2r scripts/implicit_synthetic.lua [--seeds 3] [--estimators ...]
--       [--quick] [--out results/implicit_synthetic]
--
-- Data: x ~ U[-5, 5]^2, 10 targets per input y = x + loc + sigma eps
-- (100 training and 100 validation inputs); policy: a linear Gaussian
-- with one global log-std by default (--hidden 64,64 for an MLP).  The
-- estimators of the inner gradient: "score" (L_PG as written, the
-- paper's), "dice" (the same gradient with a Hessian usable by the
-- implicit function theorem) and "pathwise".  The landscape: the outer
-- loss at fixed u on a grid, after the solver's K inner steps from the
-- same initialisation, and after --long_steps (near the inner optimum).
--
-- Writes <out>/runs.csv (one row per outer step), <out>/inner.csv (one
-- row per inner step), <out>/landscape.csv, <out>/summary.csv and PNG
-- plots (outer_loss_train, outer_loss_val, inner_reward, u_trajectory,
-- hypergradient, landscape).  Finished runs and grid points are not redone.
package.path = ((arg and arg[0] or ""):match("^(.*)/[^/]*$") or ".")
               .. "/?.lua;" .. package.path
local d2r = require "d2r"
local C = require "implicit_common"

local opts = d2r.script_options("implicit_synthetic", {
  seeds = 3, seed = 0, estimators = {"dice", "score", "pathwise"},
  outer_steps = 100, inner_steps = 50, inner_lr = 1e-2, outer_lr = 1e-2,
  G = 5, lambda = 1.0, sigma = 1.25, u0 = 1.0, softplus = false,
  hidden = {"none"}, inputs = 100, val_inputs = 100, targets = 10,
  loc = 0.0, loc_range = 0.0, preset = "paper",
  inits = {"reinit", "warm"}, early_stop = 0,
  grid = {"0.05", "0.1", "0.15", "0.2", "0.25", "0.3", "0.35", "0.4",
          "0.5", "0.6", "0.7", "0.8", "1.0", "1.2"},
  long_steps = 1000, quiet = false,
}, [[
usage: d2r scripts/implicit_synthetic.lua [options]
  --seeds N          runs per estimator, seeds seed .. seed + N - 1 (3)
  --seed S           first seed (0)
  --estimators LIST  dice,score,pathwise (all three)
  --outer_steps N    outer steps (100)       --inner_steps K (50)
  --inner_lr, --outer_lr (1e-2)              --G (5)  --lambda (1)
  --sigma S          noise std (1.25: u* = 0.32)
  --u0 U             initial u (1)  --softplus  u = softplus(phi)
  --hidden LIST      policy hidden sizes (none: linear)
  --loc X, --loc_range R   offset of y, plus U(-R, R) per seed (0, 0)
  --preset NAME      paper (default) or accurate
  --inits LIST       inner starts: reinit (the paper's), warm, fresh
                     (reinit,warm)
  --early_stop P     early stopping patience on validation NLL (0: off)
  --grid LIST        the fixed u of the landscape
  --long_steps N     inner steps of the near-converged landscape (1000)
  --quick            1 seed, 20 outer steps, a coarse grid
  --out DIR          output folder (results/implicit_synthetic)
  --quiet            no per-step lines]], {
  seeds = 1, outer_steps = 20, grid = {"0.1", "0.2", "0.32", "0.5", "1.0"},
  long_steps = 200})
if not opts then return end

local hidden = C.numbers(opts.hidden)
local grid = C.numbers(opts.grid)
local u_star = opts.lambda / (2 * opts.sigma ^ 2)
local policy_name = #hidden == 0 and "linear"
                    or "mlp" .. table.concat(hidden, "x")

local function log(...)
  if not opts.quiet then print(string.format(...)) end
end

-- The configuration of a run: the CSV's leading columns.
local CONFIG = {"seed", "estimator", "policy", "outer_steps", "inner_steps",
                "inner_lr", "outer_lr", "G", "lambda", "sigma", "u0",
                "softplus", "loc", "loc_range", "preset", "inner_init",
                "early_stop"}

local function data_of(seed)
  return C.synthetic(seed, {sigma = opts.sigma, loc = opts.loc,
                            loc_range = opts.loc_range, inputs = opts.inputs,
                            val_inputs = opts.val_inputs,
                            targets = opts.targets})
end

local function problem(seed, estimator, u)
  local data = data_of(seed)
  local reward = d2r.reward_param{kind = "scalar", init = u,
                                  softplus = opts.softplus}
  return d2r.solvers.pg_problem{
    policy = C.policy("diag", hidden, 2, 2), reward = reward,
    train = data.train, val = data.val, lambda = opts.lambda, G = opts.G,
    estimator = estimator, seed = 7919 * seed + 1}
end

-- ---- the solver runs ----------------------------------------------------

-- Every (estimator, inner start) pair, as a generic for: nil, est, init.
local function each_method()
  local list = {}
  for _, est in ipairs(opts.estimators) do
    for _, init in ipairs(opts.inits) do list[#list + 1] = {est, init} end
  end
  local i = 0
  return function()
    i = i + 1
    if list[i] then return i, list[i][1], list[i][2] end
  end
end

local runs_path, inner_path = opts.out .. "/runs.csv",
                              opts.out .. "/inner.csv"
local done = d2r.solvers.completed(runs_path, CONFIG, inner_path)
local planned = {}
for s = opts.seed, opts.seed + opts.seeds - 1 do
  for _, est, init in each_method() do
    local cfg = {seed = s, estimator = est, policy = policy_name,
                 outer_steps = opts.outer_steps,
                 inner_steps = opts.inner_steps, inner_lr = opts.inner_lr,
                 outer_lr = opts.outer_lr, G = opts.G, lambda = opts.lambda,
                 sigma = opts.sigma, u0 = opts.u0,
                 softplus = tostring(opts.softplus), loc = opts.loc,
                 loc_range = opts.loc_range, preset = opts.preset,
                 inner_init = init, early_stop = opts.early_stop}
    planned[C.key(cfg, CONFIG)] = true
    if done[C.key(cfg, CONFIG)] then
      log("seed %d %s/%s already in %s", s, est, init, runs_path)
    else
      local solver = d2r.solvers.implicit{
        problem = problem(s, est, opts.u0), preset = opts.preset,
        inner_init = init,
        outer_steps = opts.outer_steps, inner_steps = opts.inner_steps,
        inner_lr = opts.inner_lr, outer_lr = opts.outer_lr,
        noise_seed = 104729 * s + 3,
        early_stop = opts.early_stop > 0 and {patience = opts.early_stop}
                     or false,
        csv = {outer = runs_path, inner = inner_path, fields = cfg},
        on_step = function(r)
          if r.step % 10 == 0 or r.final then
            log("seed %d %s/%s step %3d  u %.4f  dF/du %+.4f  train %.4f"
                .. "  val %.4f  solve %s (res %.3g, %d it)", s, est, init,
                r.step, r.U[1], r.hypergrad_u[1], r.train_nll, r.val_nll,
                r.solve.converged and "ok" or "not converged",
                r.solve.residual, r.solve.iterations)
          end
        end}
      solver:run()
    end
  end
end

-- ---- the landscape ------------------------------------------------------

local LCOLS = {"seed", "policy", "inner_steps", "inner_lr", "G", "lambda",
               "sigma", "loc", "loc_range", "u", "K", "train_nll",
               "val_nll", "log_std"}
local land = d2r.results_file(opts.out .. "/landscape.csv", LCOLS)
local have = {}
local LKEY = {"seed", "policy", "inner_lr", "G", "lambda", "sigma", "loc",
              "loc_range", "u", "K"}
for _, r in ipairs(land.rows) do have[C.key(r, LKEY)] = true end
for s = opts.seed, opts.seed + opts.seeds - 1 do
  for _, u in ipairs(grid) do
    for _, K in ipairs{opts.inner_steps, opts.long_steps} do
      local row = {seed = s, policy = policy_name,
                   inner_steps = opts.inner_steps, inner_lr = opts.inner_lr,
                   G = opts.G, lambda = opts.lambda, sigma = opts.sigma,
                   loc = opts.loc, loc_range = opts.loc_range, u = u, K = K}
      if not have[C.key(row, LKEY)] then
        -- The solver's inner problem at a fixed u: same initialisation,
        -- same optimiser and clamping, "score" samples (the "dice"
        -- gradient is the same).
        local P = problem(s, "score", u)
        local theta = P:init("reinit")
        d2r.solvers.inner_fit(P, theta, {steps = K, lr = opts.inner_lr,
                                         clip = 1,
                                         rng = d2r.rng(104729 * s + 3)})
        row.train_nll = d2r.solvers.value_of(P, theta, "train")
        row.val_nll = d2r.solvers.value_of(P, theta, "val")
        row.log_std = theta[#theta]:mean():item()
        land:append({row})
        have[C.key(row, LKEY)] = true
      end
    end
  end
  log("seed %d: landscape done", s)
end
land:close()

-- ---- summary ------------------------------------------------------------

local S = d2r.stats
local function mine(r) return planned[C.key(r, CONFIG)] end
local runs = {}
for _, r in ipairs((d2r.read_results(runs_path))) do
  if mine(r) then runs[#runs + 1] = r end
end

local summary, lines = {}, {}
for _, est, init in each_method() do
  local u_end, u_tail, val, conv, steps, hg_tail = {}, {}, {}, {}, {}, {}
  local by_seed = {}
  for _, r in ipairs(runs) do
    if r.estimator == est and r.inner_init == init then
      by_seed[r.seed] = by_seed[r.seed] or {}
      table.insert(by_seed[r.seed], r)
      conv[#conv + 1] = r.converged
    end
  end
  for _, rs in pairs(by_seed) do
    table.sort(rs, function(a, b) return a.step < b.step end)
    local last = rs[#rs]
    u_end[#u_end + 1] = last.u_next
    local tail, gtail = {}, {}
    for i = math.max(1, #rs - 9), #rs do
      tail[#tail + 1] = rs[i].u
      gtail[#gtail + 1] = rs[i].hg_u
    end
    u_tail[#u_tail + 1] = S.mean(tail)
    hg_tail[#hg_tail + 1] = S.mean(gtail)
    val[#val + 1] = last.val_nll
    steps[#steps + 1] = #rs
  end
  if #u_end > 0 then
    local item = {estimator = est .. "/" .. init, n = #u_end,
                  u_star = u_star,
                  u_last = S.mean(u_end), u_last_std = S.std(u_end),
                  u_last10 = S.mean(u_tail),
                  error_last10 = S.mean(u_tail) - u_star,
                  hypergrad_last10 = S.mean(hg_tail),
                  val_nll_last = S.mean(val),
                  converged_fraction = S.mean(conv)}
    summary[#summary + 1] = item
    lines[#lines + 1] = {item.estimator, tostring(item.n),
      ("%.4f +- %.4f"):format(item.u_last, item.u_last_std),
      ("%.4f"):format(item.u_last10), ("%+.4f"):format(item.error_last10),
      ("%+.4f"):format(item.hypergrad_last10),
      ("%.4f"):format(item.val_nll_last),
      ("%.2f"):format(item.converged_fraction)}
  end
end

-- The landscape's minimum per K and split (mean over seeds).
local lrows = {}
for _, r in ipairs(land.rows) do
  if r.policy == policy_name and r.lambda == opts.lambda
     and r.sigma == opts.sigma and r.seed >= opts.seed
     and r.seed < opts.seed + opts.seeds and r.inner_lr == opts.inner_lr
     and r.G == opts.G and r.loc == opts.loc
     and r.loc_range == opts.loc_range then
    local inside = false
    for _, u in ipairs(grid) do inside = inside or u == r.u end
    if inside and (r.K == opts.inner_steps or r.K == opts.long_steps) then
      lrows[#lrows + 1] = r
    end
  end
end
local minima = {}
for _, K in ipairs{opts.inner_steps, opts.long_steps} do
  for _, split in ipairs{"train", "val"} do
    local xs, ys = {}, {}
    for _, g in ipairs(S.group(lrows, "u")) do
      local vals = {}
      for _, r in ipairs(g.rows) do
        if r.K == K then vals[#vals + 1] = r[split .. "_nll"] end
      end
      if #vals > 0 then
        xs[#xs + 1] = g.keys.u
        ys[#ys + 1] = S.mean(vals)
      end
    end
    if #xs > 0 then
      local ux, fy = C.argmin(xs, ys)
      minima[#minima + 1] = {K = K, split = split, u_min = ux, nll_min = fy}
    end
  end
end

local sum_rows = {}
for _, item in ipairs(summary) do
  for k, v in pairs(item) do
    if k ~= "estimator" then
      sum_rows[#sum_rows + 1] = {what = "solver", name = item.estimator,
                                 metric = k, value = v}
    end
  end
end
for _, m in ipairs(minima) do
  sum_rows[#sum_rows + 1] = {what = "landscape",
                             name = ("K=%d %s"):format(m.K, m.split),
                             metric = "u_min", value = m.u_min}
  sum_rows[#sum_rows + 1] = {what = "landscape",
                             name = ("K=%d %s"):format(m.K, m.split),
                             metric = "nll_min", value = m.nll_min}
end
d2r.write_csv(opts.out .. "/summary.csv", {"what", "name", "metric",
                                           "value"}, sum_rows)
print(("u* = lambda / (2 sigma^2) = %.4f; policy %s"):format(u_star,
                                                            policy_name))
print(d2r.format_table({"estimator/start", "seeds", "last u",
                        "mean u (last 10)", "minus u*", "dF/du (last 10)",
                        "val NLL", "solves converged"}, lines))
local mlines = {}
for _, m in ipairs(minima) do
  mlines[#mlines + 1] = {tostring(m.K), m.split, ("%.4f"):format(m.u_min),
                         ("%.4f"):format(m.nll_min)}
end
print(d2r.format_table({"landscape K", "split", "argmin u (parabola)",
                        "NLL there"}, mlines))

-- ---- plots --------------------------------------------------------------

local P = d2r.plot
local loss_rows, u_rows, hg_rows = {}, {}, {}
for _, r in ipairs(runs) do
  local m = r.estimator .. "/" .. r.inner_init
  loss_rows[#loss_rows + 1] = {step = r.step, nll = r.train_nll,
                               curve = m .. " train"}
  loss_rows[#loss_rows + 1] = {step = r.step, nll = r.val_nll,
                               curve = m .. " val"}
  u_rows[#u_rows + 1] = {step = r.step, u = r.u, curve = m}
  hg_rows[#hg_rows + 1] = {step = r.step, g = r.hg_u, curve = m}
end
for step = 1, opts.outer_steps do
  u_rows[#u_rows + 1] = {step = step, u = u_star,
                         curve = ("u* = %.2f"):format(u_star)}
end
if #runs > 0 then
  local out = opts.out .. "/"
  for _, split in ipairs{"train", "val"} do
    local rows = {}
    for _, r in ipairs(loss_rows) do
      if r.curve:sub(-#split) == split then rows[#rows + 1] = r end
    end
    C.plotted(P.curves(rows, {out = out .. "outer_loss_" .. split,
      x = "step", y = "nll", by = "curve", band = "std", formats = {"png"},
      title = ("Outer loss: %s NLL per dimension, mean +- std over seeds")
              :format(split), xlabel = "outer step", ylabel = "NLL"}))
  end
  C.plotted(P.curves(u_rows, {out = out .. "u_trajectory", x = "step",
    y = "u", by = "curve", band = "std", formats = {"png"},
    title = "Learned u against u*", xlabel = "outer step"}))
  C.plotted(P.curves(hg_rows, {out = out .. "hypergradient", x = "step",
    y = "g", by = "curve", band = "std", formats = {"png"},
    title = "Implicit hypergradient dF/du", xlabel = "outer step",
    ylabel = "dF/du"}))
  local inner_rows = {}
  for _, r in ipairs((d2r.read_results(inner_path))) do
    if mine(r) and r.seed == opts.seed then
      inner_rows[#inner_rows + 1] = {
        t = (r.step - 1) * opts.inner_steps + r.inner_step,
        reward = r.reward, curve = r.estimator .. "/" .. r.inner_init}
    end
  end
  C.plotted(P.curves(inner_rows, {out = out .. "inner_reward", x = "t",
    y = "reward", by = "curve", band = "none", formats = {"png"},
    title = "Mean inner reward over all inner steps (seed " .. opts.seed
            .. ")", xlabel = "inner step (all outer steps)",
    ylabel = "mean reward"}))
end
if #lrows > 0 then
  local rows = {}
  for _, r in ipairs(lrows) do
    rows[#rows + 1] = {u = r.u, nll = r.train_nll,
                       curve = ("train, K = %d"):format(r.K)}
    rows[#rows + 1] = {u = r.u, nll = r.val_nll,
                       curve = ("val, K = %d"):format(r.K)}
  end
  C.plotted(P.curves(rows, {out = opts.out .. "/landscape", x = "u",
    y = "nll", by = "curve", band = "std", formats = {"png"},
    title = ("Outer loss at fixed u (u* = %.2f)"):format(u_star),
    ylabel = "NLL"}))
end
for _, f in ipairs(C.drawn) do print("plot: " .. f) end
print(("results: %s/runs.csv, inner.csv, landscape.csv, summary.csv")
      :format(opts.out))
