-- The implicit solver with a full reward matrix U = L L^T (METHOD.md,
-- experiment 3 with a full U): a 2-D target with correlated noise of
-- covariance Sigma, for which the outer optimum is U* = (lambda / 2)
-- Sigma^-1.  The protocol is experiment 3's (lambda = 1, 100 outer steps
-- of 50 inner steps, lr 1e-2 for both, G = 5, the "paper" preset); the
-- policy is a full-covariance Gaussian.
--
--   d2r scripts/implicit_full.lua [--seeds 3] [--quick]
--       [--out results/implicit_full]
--
-- Data: by default one constant input and targets y = mu + L eps with
-- L L^T = Sigma (std1, std2, correlation rho); --input uniform uses
-- x ~ U[-5, 5]^2 and y = x + L eps instead.  Compared: the learned U
-- against U* (relative Frobenius error ||U - U*|| / ||U*|| at every
-- outer step) and against the plug-in closed form (lambda / 2) S^-1 of
-- the training targets' covariance S.
--
-- Writes <out>/runs.csv (one row per outer step), <out>/inner.csv,
-- <out>/summary.csv and PNG plots (frobenius, U_entries_U11, _U12,
-- _U22, outer_loss).
-- Finished runs are not redone.
package.path = ((arg and arg[0] or ""):match("^(.*)/[^/]*$") or ".")
               .. "/?.lua;" .. package.path
local d2r = require "d2r"
local C = require "implicit_common"

local opts = d2r.script_options("implicit_full", {
  seeds = 3, seed = 0, estimators = {"dice"}, inits = {"reinit", "warm"},
  outer_steps = 100, inner_steps = 50, inner_lr = 1e-2, outer_lr = 1e-2,
  G = 5, lambda = 1.0, std1 = 1.25, std2 = 0.8, rho = 0.6, mu1 = 0.0,
  mu2 = 0.0, u0 = 1.0, input = "constant", hidden = {"none"},
  inputs = 100, val_inputs = 100, targets = 10, preset = "paper",
  quiet = false,
}, [[
usage: d2r scripts/implicit_full.lua [options]
  --seeds N          runs per method (3)      --seed S  first seed (0)
  --estimators LIST  dice, score, pathwise (dice)
  --inits LIST       inner starts: reinit, warm, fresh (reinit,warm)
  --outer_steps N (100)  --inner_steps K (50)  --inner_lr, --outer_lr
  --G (5)  --lambda (1)
  --std1, --std2, --rho   the noise: stds and correlation (1.25, 0.8, 0.6)
  --mu1, --mu2       the target's mean (constant input; 0, 0)
  --u0 U             initial U = u0 I (1)
  --input KIND       constant (default) or uniform
  --hidden LIST      policy hidden sizes (none: linear)
  --preset NAME      paper (default) or accurate
  --quick            1 seed, 20 outer steps
  --out DIR          output folder (results/implicit_full)
  --quiet            no per-step lines]], {seeds = 1, outer_steps = 20})
if not opts then return end

local hidden = C.numbers(opts.hidden)
local s1, s2, rho = opts.std1, opts.std2, opts.rho
local Sigma = {{s1 * s1, rho * s1 * s2}, {rho * s1 * s2, s2 * s2}}
local chol = {{s1, 0}, {rho * s2, s2 * math.sqrt(1 - rho * rho)}}
local det = Sigma[1][1] * Sigma[2][2] - Sigma[1][2] ^ 2
local half = opts.lambda / 2
local U_star = {{half * Sigma[2][2] / det, -half * Sigma[1][2] / det},
                {-half * Sigma[2][1] / det, half * Sigma[1][1] / det}}
local star_norm = 0
for i = 1, 2 do
  for j = 1, 2 do star_norm = star_norm + U_star[i][j] ^ 2 end
end
star_norm = math.sqrt(star_norm)

-- ||U - U*||_F / ||U*||_F for the entries U11, U12, U21, U22 of a row.
local function frobenius(U11, U12, U21, U22)
  local e = (U11 - U_star[1][1]) ^ 2 + (U12 - U_star[1][2]) ^ 2
            + (U21 - U_star[2][1]) ^ 2 + (U22 - U_star[2][2]) ^ 2
  return math.sqrt(e) / star_norm
end

local function log(...)
  if not opts.quiet then print(string.format(...)) end
end

local function data_of(seed)
  if opts.input == "uniform" then
    return C.synthetic(seed, {chol = chol, inputs = opts.inputs,
                              val_inputs = opts.val_inputs,
                              targets = opts.targets}), 2
  elseif opts.input ~= "constant" then
    error("--input must be constant or uniform", 0)
  end
  local rng = d2r.rng(seed)
  local L = d2r.tensor(chol)
  local function split(n)
    local Y = rng:randn({n, 2}):matmul(L:t()) + d2r.tensor{opts.mu1,
                                                           opts.mu2}
    return {X = d2r.ones(n, 1), Y = Y}
  end
  local rows = opts.inputs * opts.targets
  return {train = split(rows), val = split(opts.val_inputs * opts.targets)},
         1
end

local CONFIG = {"seed", "estimator", "inner_init", "input", "policy",
                "outer_steps", "inner_steps", "inner_lr", "outer_lr", "G",
                "lambda", "std1", "std2", "rho", "mu1", "mu2", "u0",
                "preset"}
local policy_name = #hidden == 0 and "linear"
                    or "mlp" .. table.concat(hidden, "x")

local runs_path, inner_path = opts.out .. "/runs.csv",
                              opts.out .. "/inner.csv"
local done = d2r.solvers.completed(runs_path, CONFIG, inner_path)
local planned, plugin = {}, {}
for s = opts.seed, opts.seed + opts.seeds - 1 do
  local data, nin = data_of(s)
  local Up = d2r.reward_full(data.train.Y, opts.lambda):tolist()
  plugin[s] = {error = frobenius(Up[1][1], Up[1][2], Up[2][1], Up[2][2]),
               U11 = Up[1][1], U12 = Up[1][2], U22 = Up[2][2]}
  for _, est in ipairs(opts.estimators) do
    for _, init in ipairs(opts.inits) do
      local cfg = {seed = s, estimator = est, inner_init = init,
                   input = opts.input, policy = policy_name,
                   outer_steps = opts.outer_steps,
                   inner_steps = opts.inner_steps, inner_lr = opts.inner_lr,
                   outer_lr = opts.outer_lr, G = opts.G,
                   lambda = opts.lambda, std1 = s1, std2 = s2, rho = rho,
                   mu1 = opts.mu1, mu2 = opts.mu2, u0 = opts.u0,
                   preset = opts.preset}
      local key = C.key(cfg, CONFIG)
      planned[key] = true
      if done[key] then
        log("seed %d %s/%s already in %s", s, est, init, runs_path)
      else
        local reward = d2r.reward_param{kind = "full", n = 2,
                                        init = opts.u0}
        local P = d2r.solvers.pg_problem{
          policy = C.policy("full", hidden, nin, 2), reward = reward,
          train = data.train, val = data.val, lambda = opts.lambda,
          G = opts.G, estimator = est, seed = 7919 * s + 1}
        d2r.solvers.implicit{
          problem = P, preset = opts.preset, inner_init = init,
          outer_steps = opts.outer_steps, inner_steps = opts.inner_steps,
          inner_lr = opts.inner_lr, outer_lr = opts.outer_lr,
          noise_seed = 104729 * s + 3,
          csv = {outer = runs_path, inner = inner_path, fields = cfg},
          on_step = function(r)
            if r.step % 10 == 0 or r.final then
              local U = r.U_next
              log("seed %d %s/%s step %3d  U [%.3f %.3f; %.3f]  error %.3f"
                  .. "  val %.4f", s, est, init, r.step, U[1], U[2], U[4],
                  frobenius(U[1], U[2], U[3], U[4]), r.val_nll)
            end
          end}:run()
      end
    end
  end
end

-- ---- summary ------------------------------------------------------------

local S = d2r.stats
local runs = {}
for _, r in ipairs((d2r.read_results(runs_path))) do
  if planned[C.key(r, CONFIG)] then
    r.method = r.estimator .. "/" .. r.inner_init
    r.error = frobenius(r.U11_next, r.U12_next, r.U21_next, r.U22_next)
    runs[#runs + 1] = r
  end
end

local lines, summary = {}, {}
for _, g in ipairs(S.group(runs, "method")) do
  local last = {}
  for _, r in ipairs(g.rows) do
    if r.final == 1 then last[#last + 1] = r end
  end
  local err, u11, u12, u22 = {}, {}, {}, {}
  for _, r in ipairs(last) do
    err[#err + 1] = r.error
    u11[#u11 + 1], u12[#u12 + 1] = r.U11_next, r.U12_next
    u22[#u22 + 1] = r.U22_next
  end
  local row = {method = g.keys.method, n = #last, error = S.mean(err),
               error_std = S.std(err), U11 = S.mean(u11),
               U12 = S.mean(u12), U22 = S.mean(u22)}
  summary[#summary + 1] = row
  lines[#lines + 1] = {row.method, tostring(row.n),
    ("[%.3f %.3f; %.3f]"):format(row.U11, row.U12, row.U22),
    ("%.3f +- %.3f"):format(row.error, row.error_std)}
end
local pl = {error = {}, U11 = {}, U12 = {}, U22 = {}}
for s = opts.seed, opts.seed + opts.seeds - 1 do
  for k, list in pairs(pl) do list[#list + 1] = plugin[s][k] end
end
local prow = {method = "plugin", n = #pl.error, error = S.mean(pl.error),
              error_std = S.std(pl.error), U11 = S.mean(pl.U11),
              U12 = S.mean(pl.U12), U22 = S.mean(pl.U22)}
summary[#summary + 1] = prow
lines[#lines + 1] = {"plug-in (lambda/2) S^-1", tostring(prow.n),
  ("[%.3f %.3f; %.3f]"):format(prow.U11, prow.U12, prow.U22),
  ("%.3f +- %.3f"):format(prow.error, prow.error_std)}
d2r.write_csv(opts.out .. "/summary.csv", {"method", "n", "U11", "U12",
              "U22", "error", "error_std"}, summary)
print(("U* = (lambda/2) Sigma^-1 = [%.3f %.3f; %.3f]"):format(
  U_star[1][1], U_star[1][2], U_star[2][2]))
print(d2r.format_table({"method", "seeds", "final U [11 12; 22]",
                        "||U - U*|| / ||U*||"}, lines))

-- ---- plots --------------------------------------------------------------

local P = d2r.plot
if #runs > 0 then
  local out = opts.out .. "/"
  local err_rows, u_rows, loss_rows = {}, {}, {}
  for _, r in ipairs(runs) do
    err_rows[#err_rows + 1] = {step = r.step, error = r.error,
                               curve = r.method}
    for _, e in ipairs{"U11", "U12", "U22"} do
      u_rows[#u_rows + 1] = {step = r.step, value = r[e .. "_next"],
                             curve = r.method .. " " .. e}
    end
    loss_rows[#loss_rows + 1] = {step = r.step, nll = r.train_nll,
                                 curve = r.method .. " train"}
    loss_rows[#loss_rows + 1] = {step = r.step, nll = r.val_nll,
                                 curve = r.method .. " val"}
  end
  for step = 1, opts.outer_steps do
    for _, e in ipairs{{"U11", 1, 1}, {"U12", 1, 2}, {"U22", 2, 2}} do
      u_rows[#u_rows + 1] = {step = step, value = U_star[e[2]][e[3]],
                             curve = "U* " .. e[1]}
    end
  end
  C.plotted(P.curves(err_rows, {out = out .. "frobenius", x = "step",
    y = "error", by = "curve", band = "std", formats = {"png"},
    title = "Relative Frobenius error of the learned U against U*",
    xlabel = "outer step", ylabel = "||U - U*|| / ||U*||"}))
  for _, e in ipairs{"U11", "U12", "U22"} do
    local rows = {}
    for _, r in ipairs(u_rows) do
      if r.curve:sub(-3) == e then rows[#rows + 1] = r end
    end
    C.plotted(P.curves(rows, {out = out .. "U_entries_" .. e, x = "step",
      y = "value", by = "curve", band = "std", formats = {"png"},
      title = ("Learned %s (mean +- std over seeds) against U*"):format(e),
      xlabel = "outer step", ylabel = e}))
  end
  C.plotted(P.curves(loss_rows, {out = out .. "outer_loss", x = "step",
    y = "nll", by = "curve", band = "std", formats = {"png"},
    title = "Outer loss (per-dimension NLL)", xlabel = "outer step",
    ylabel = "NLL"}))
end
for _, f in ipairs(C.drawn) do print("plot: " .. f) end
print(("results: %s/runs.csv, inner.csv, summary.csv"):format(opts.out))
