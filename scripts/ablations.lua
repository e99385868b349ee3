-- Ablations on the tractable toy of the Gaussian-policy issue: one input,
-- 10 targets from N(5, 0.75^2 I_2); a Gaussian policy (MLP [64, 64],
-- input-dependent log-std head) trained with Adam lr 1e-3 for 100
-- full-batch updates, G = 5, lambda = 0.1, U* = (lambda/2) Sigma_hat^-1
-- from the targets (d2r.reward_full; --reward diagonal takes
-- lambda / (2 Sigma_hat_ii) instead).  Every setting is also run on a
-- long horizon (3000 updates, lr divided by 10 for the last 30%), where
-- the policy has settled and the estimators' fixed points show: PG with
-- an unbiased estimator ends at s_i^2 = lambda / (2 U_ii) (var ratio 1;
-- with the full U* and this diagonal policy that is the conditional
-- variance 1 / (Sigma_hat^-1)_ii, below Sigma_hat_ii whenever the 10
-- targets happen to correlate); a group-mean baseline (it includes the
-- sample's own reward) acts as lambda G / (G - 1) (ratio G / (G - 1));
-- min-shift and mean_std move it too.
--   headline    nll, PG(U*) and PG(U = I), each with no transform and with
--               min-shift; the published implementation ends the toy at a
--               per-dimension NLL of about 2.2 for PG(U*), 2.7 for NLL and
--               7.5 for PG(U = I): the script prints d2r's and whether the
--               ordering matches
--   group       G in {1, 2, 5, 10, 25, 50, 100}, for no baseline, the
--               group mean and leave-one-out (the last two need G >= 2)
--   estimator   none, min_shift, rbf (gamma in {0.1, 0.3, 1, 3, 10}),
--               mean, mean_std, loo, and pathwise (rsample; the reward
--               is divided by n to match the per-dimension entropy, so
--               the objective is the PG one)
-- Metrics at the end: nll (per dimension, on the 10 targets), nll_true
-- (the expected per-dimension NLL under N(5, 0.75^2 I), exact), mean_err
-- |m - 5| and cov_err |s^2 - 0.5625| averaged over dimensions, var_ratio
-- (s_i^2 over the theory's fixed point: lambda / (2 U_ii) for PG, the
-- biased sample variance for NLL), var_ratio_sample (s_i^2 /
-- Sigma_hat_ii), each averaged over dimensions, diverged (1 when the
-- loss or a metric stopped being finite, at update diverged_at; such a
-- run has no other final metrics); NLL curves per update.
--
--   d2r scripts/ablations.lua [--seeds 10] [--out DIR] [--quick]
--       [--groups 1,2,5,10,25,50,100] [--gammas 0.1,0.3,1,3,10]
--       [--long_steps 3000]
--
-- Writes <out>/runs.sqlite (the sweep store, each run stored as it ends;
-- running again resumes), its export <out>/runs.csv and <out>/metrics.csv,
-- <out>/summary.csv (horizon, variant, method, estimator, gamma, group,
-- metric, n, mean, std, lo, hi, median), the figures
-- <out>/headline_nll.png (curves), <out>/group_nll_<horizon>.png,
-- <out>/group_var_ratio_long.png, <out>/estimator_nll.png and
-- <out>/estimator_var_ratio.png (.svg beside each), and prints tables.
local d2r = require "d2r"
local S = require "synthetic"

local opts = S.options("ablations", {
  steps = 100,
  long_steps = 3000,
  lr = 1e-3,
  lambda = 0.1,
  group = 5,
  groups = {1, 2, 5, 10, 25, 50, 100},
  gammas = {0.1, 0.3, 1, 3, 10},
  targets = 10,
  reward = "full",
}, [[
usage: d2r scripts/ablations.lua [options]
  --steps N        updates of the toy (100)
  --long_steps N   updates of the long horizon (3000; 0: none)
  --lr X           Adam learning rate (0.001)
  --lambda X       entropy weight (0.1)
  --group G        samples per target outside the G ablation (5)
  --groups LIST    the G ablation (1,2,5,10,25,50,100)
  --gammas LIST    rbf scales (0.1,0.3,1,3,10)
  --targets N      targets drawn from N(5, 0.75^2 I) (10)
  --reward KIND    the plug-in U*: full or diagonal (full)]],
  {seeds = 2, steps = 20, long_steps = 60, groups = {1, 5},
   gammas = {1}})
if not opts then return end

local MEAN, STD, N_DIM = 5, 0.75, 2
local HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
local REFERENCE = {pg_ustar = 2.2, nll = 2.7, pg_identity = 7.5}

local function pg_options(c)
  local e = c.estimator
  if e == "min_shift" then return {transform = "min_shift"} end
  if e == "rbf" then return {transform = "rbf", gamma = c.gamma} end
  if e == "mean" or e == "mean_std" or e == "loo" then
    return {baseline = e}
  end
  return {}
end

local function run(c, ctx)
  local Y = d2r.rng(ctx.seed):randn({c.targets, N_DIM}) * STD + MEAN
  local X, x1 = d2r.ones(c.targets, 1), d2r.ones(1, 1)
  local cov = d2r.covariance(Y)
  local U = d2r.scalar(1)
  if c.method == "pg_ustar" then
    U = c.reward == "diagonal" and d2r.reward_diagonal(Y, c.lambda)
        or d2r.reward_full(Y, c.lambda)
  end
  -- The variance each dimension ends at, per the theory: lambda / (2 U_ii)
  -- for PG with a diagonal policy (with the full U*, 1 / (Sigma_hat^-1)_ii,
  -- the conditional variance: reverse KL with a diagonal family), the
  -- biased sample variance for NLL.
  local pred = {}
  for i = 1, N_DIM do
    if c.method == "nll" then
      pred[i] = cov[i][i] * (c.targets - 1) / c.targets
    else
      local u = U:dim() == 0 and U:item()
                or U:dim() == 1 and U[i] or U[i][i]
      pred[i] = c.lambda / (2 * u)
    end
  end
  local policy = d2r.gaussian_policy{inputs = 1, out = N_DIM,
    hidden = {64, 64}, rng = d2r.rng(ctx.seed + 1)}
  local noise = d2r.rng(ctx.seed + 2)
  local opt = d2r.adam(policy:parameters(), c.lr)
  local pg = pg_options(c)
  local every = math.max(1, c.steps // 50)
  local function metrics()
    return d2r.no_grad(function()
      local m, ls = policy:forward(x1)
      local var = ls:exp():square()
      local out = {
        nll = d2r.gaussian_nll(m:expand(c.targets, N_DIM),
                               ls:expand(c.targets, N_DIM), Y):item(),
        nll_true = (ls + HALF_LOG_2PI + ((m - MEAN):square() + STD ^ 2)
                    / (var * 2)):mean():item(),
        mean_err = (m - MEAN):abs():mean():item(),
        cov_err = (var - STD ^ 2):abs():mean():item(),
        var_ratio = (var[1][1] / pred[1] + var[1][2] / pred[2]) / 2,
        var_ratio_sample = (var[1][1] / cov[1][1] + var[1][2] / cov[2][2])
                           / 2,
      }
      return out
    end)
  end
  local function finite(v)
    return v == v and v ~= math.huge and v ~= -math.huge
  end
  -- A run whose loss or metrics stop being finite (rbf's variance grows
  -- without bound) is recorded as diverged, with the update it happened.
  local diverged
  ctx:log{epoch = 0, nll = metrics().nll}
  for step = 1, c.steps do
    if step == math.floor(c.decay * c.steps) + 1 then opt:lr(c.lr / 10) end
    local d = policy:dist(X)
    local loss
    if c.method == "nll" then
      local m, ls = d:params()
      loss = d2r.gaussian_nll(m, ls, Y)
    elseif c.estimator == "pathwise" then
      local yhat = d:rsample(c.group, noise)
      loss = d2r.pathwise_surrogate(
        d2r.mahalanobis_reward(yhat, Y, U) / N_DIM, d:entropy(), c.lambda)
    else
      local yhat = d:sample(c.group, noise)
      loss = d2r.pg_surrogate(d:log_prob(yhat),
                              d2r.mahalanobis_reward(yhat, Y, U),
                              d:entropy(), c.lambda, pg)
    end
    if loss:count_nonfinite() > 0 then
      diverged = step
      break
    end
    opt:zero_grad()
    loss:backward()
    opt:step()
    if step % every == 0 or step == c.steps then
      local nll = metrics().nll
      if not finite(nll) then
        diverged = step
        break
      end
      ctx:log{epoch = step, nll = nll}
    end
  end
  local final = metrics()
  for _, v in pairs(final) do
    if not finite(v) then diverged = diverged or c.steps end
  end
  if diverged then return {diverged = 1, diverged_at = diverged} end
  final.diverged = 0
  return final
end

local horizons = {"toy"}
if opts.long_steps > 0 then horizons[2] = "long" end
if opts.reward ~= "full" and opts.reward ~= "diagonal" then
  io.stderr:write("--reward must be full or diagonal\n")
  os.exit(2)
end
local base = {
  lr = opts.lr, lambda = opts.lambda, targets = opts.targets,
  reward = opts.reward,
  horizon = horizons,
  steps = function(c)
    return c.horizon == "long" and opts.long_steps or opts.steps
  end,
  decay = function(c) return c.horizon == "long" and 0.7 or 1 end,
}
local function grid(t)
  for k, v in pairs(base) do t[k] = v end
  return t
end
local sw = S.sweep(opts, {
  grids = {
    grid{method = "nll", estimator = "-", group = 0},
    grid{method = {"pg_ustar", "pg_identity"},
         estimator = {"none", "min_shift"}, group = opts.group},
    grid{method = "pg_ustar", estimator = {"none", "mean", "loo"},
         group = opts.groups},
    grid{method = "pg_ustar", estimator = {"none", "min_shift", "mean",
         "mean_std", "loo", "pathwise"}, group = opts.group},
    grid{method = "pg_ustar", estimator = "rbf", gamma = opts.gammas,
         group = opts.group},
  },
  order = {"horizon", "method", "estimator", "gamma", "group"},
  filter = function(c)
    return c.group >= 2 or c.estimator == "none" or c.method == "nll"
  end,
  run = run,
})

-- ---- summary -------------------------------------------------------------

local rows = S.metrics(sw)
for _, r in ipairs(rows) do
  r.variant = r.method == "nll" and "nll" or r.estimator
  if r.estimator == "rbf" then
    r.variant = "rbf g=" .. S.tag(r.gamma)
  end
  if r.gamma == nil then r.gamma = "" end
end
local final = S.select(rows, {epoch = function(e) return e == nil end})
local summary = S.collect({}, final, {"horizon", "method", "variant",
                                      "estimator", "gamma", "group",
                                      "name"})
for _, s in ipairs(summary) do
  s.metric, s.name = s.name, nil
end
S.write_summary(opts, {"horizon", "variant", "method", "estimator", "gamma",
                       "group", "metric", "n", "mean", "std", "lo", "hi",
                       "median"}, summary)
local function get(where)
  for _, s in ipairs(summary) do
    local ok = true
    for k, v in pairs(where) do
      if s[k] ~= v then
        ok = false
        break
      end
    end
    if ok then return s end
  end
end

-- headline
local G = opts.group
local head = {
  {"nll", "-", "nll"}, {"pg_ustar", "none", "pg_ustar"},
  {"pg_identity", "none", "pg_identity"},
  {"pg_ustar", "min_shift", "pg_ustar"},
  {"pg_identity", "min_shift", "pg_identity"},
}
local lines, value = {}, {}
for _, h in ipairs(head) do
  local grp = h[1] == "nll" and 0 or G
  local s = get{horizon = "toy", method = h[1], estimator = h[2],
                group = grp, metric = "nll"}
  local t = get{horizon = "toy", method = h[1], estimator = h[2],
                group = grp, metric = "nll_true"}
  value[h[1] .. "/" .. h[2]] = s and s.mean
  lines[#lines + 1] = {h[1], h[2], S.pm(s), s and ("%.3f"):format(s.median)
                       or "-", S.pm(t), ("%.1f"):format(REFERENCE[h[3]])}
  if opts.long_steps > 0 then
    table.insert(lines[#lines], S.pm(get{horizon = "long", method = h[1],
      estimator = h[2], group = grp, metric = "nll"}))
  end
end
print(("\nHeadline: the toy after %d updates (per-dimension NLL on the %d "
       .. "targets, mean +- std\nover %d seeds, and the median; true NLL: "
       .. "expected under N(5, 0.75^2 I); reference:\nthe published "
       .. "implementation; last column: the same after %d updates):")
      :format(opts.steps, opts.targets, opts.seeds, opts.long_steps))
local heads = {"method", "estimator", "NLL", "median", "true NLL",
               "reference"}
if opts.long_steps > 0 then heads[#heads + 1] = "NLL@" .. opts.long_steps end
print(d2r.format_table(heads, lines))
local function order_check(est)
  local u, n, i = value["pg_ustar/" .. est], value["nll/-"],
                  value["pg_identity/" .. est]
  if not (u and n and i) then return end
  local ok = u < n and n < i
  print(("  %-9s PG(U*) %.2f, NLL %.2f, PG(U=I) %.2f: %s the reference "
         .. "ordering PG(U*) < NLL < PG(U=I)%s"):format(est, u, n, i,
         ok and "matches" or "does NOT match",
         ok and "" or (u < i and " (PG(U*) < PG(U=I) holds)" or "")))
end
order_check("none")
order_check("min_shift")

-- the G ablation
local function cell(where, digits)
  return S.pm(get(where), digits)
end
lines = {}
for _, g in ipairs(opts.groups) do
  local row = {tostring(g)}
  for _, est in ipairs{"none", "mean", "loo"} do
    row[#row + 1] = cell{horizon = "toy", method = "pg_ustar",
                         estimator = est, group = g, metric = "nll"}
  end
  if opts.long_steps > 0 then
    for _, est in ipairs{"none", "mean", "loo"} do
      row[#row + 1] = cell{horizon = "long", method = "pg_ustar",
                           estimator = est, group = g,
                           metric = "var_ratio"}
    end
    row[#row + 1] = g >= 2 and ("%.3f"):format(g / (g - 1)) or "-"
  end
  lines[#lines + 1] = row
end
heads = {"G", "NLL none", "NLL mean", "NLL loo"}
if opts.long_steps > 0 then
  for _, h in ipairs{"ratio none", "ratio mean", "ratio loo",
                     "G/(G-1)"} do
    heads[#heads + 1] = h
  end
end
print(("\nNumber of samples G, PG(U*): NLL after %d updates; var ratio "
       .. "s^2 / (lambda / 2 U_ii)\nafter %d (the mean baseline is predicted "
       .. "to end at G/(G-1)):"):format(opts.steps, opts.long_steps))
print(d2r.format_table(heads, lines))
local ns = get{horizon = "long", method = "pg_ustar", estimator = "none",
               group = G, metric = "var_ratio_sample"}
if ns then
  print(("With the %s U* and no baseline (G = %d), s^2 / Sigma_hat_ii "
         .. "ends at %s."):format(opts.reward, G, S.pm(ns)))
end

-- the estimator ablation
local variants = {"none", "min_shift", "mean", "mean_std", "loo",
                  "pathwise"}
for _, g in ipairs(opts.gammas) do
  variants[#variants + 1] = "rbf g=" .. S.tag(g)
end
lines = {}
for _, v in ipairs(variants) do
  local function c(h, metric)
    return cell{horizon = h, method = "pg_ustar", variant = v, group = G,
                metric = metric}
  end
  -- runs that diverged, of all, per horizon
  local function div(h)
    local s = get{horizon = h, method = "pg_ustar", variant = v,
                  group = G, metric = "diverged"}
    return s and ("%d/%d"):format(math.floor(s.mean * s.n + 0.5), s.n)
           or "-"
  end
  local row = {v, c("toy", "nll"), c("toy", "mean_err"), div("toy")}
  if opts.long_steps > 0 then
    row[#row + 1] = c("long", "nll")
    row[#row + 1] = c("long", "mean_err")
    row[#row + 1] = c("long", "var_ratio")
    row[#row + 1] = div("long")
  end
  lines[#lines + 1] = row
end
heads = {"estimator", "NLL@" .. opts.steps, "mean err@" .. opts.steps,
         "diverged"}
if opts.long_steps > 0 then
  for _, h in ipairs{"NLL", "mean err", "var ratio", "diverged"} do
    heads[#heads + 1] = h .. "@" .. opts.long_steps
  end
end
print(("\nEstimators, PG(U*), G = %d (mean +- std over %d seeds, of the "
       .. "runs that did not\ndiverge):"):format(G, opts.seeds))
print(d2r.format_table(heads, lines))

-- ---- plots ---------------------------------------------------------------

local curves = S.select(rows, {horizon = "toy", name = "nll",
  epoch = function(e) return e ~= nil end,
  group = function(g) return g == 0 or g == G end,
  variant = {"nll", "none", "min_shift"}})
for _, r in ipairs(curves) do
  r.curve = r.method == "nll" and "nll" or r.method .. " " .. r.variant
end
if #curves > 0 then
  S.plotted(d2r.plot.curves(curves, {by = "curve", y = "value",
    out = opts.out .. "/headline_nll", title = ("The toy: NLL per "
    .. "dimension on the targets (mean, 95%% CI over %d seeds)")
    :format(opts.seeds), xlabel = "update", ylabel = "NLL"}))
end
local function points(sel, o)
  if #sel == 0 then return end
  S.plotted(d2r.plot.points(sel, o))
end
local pg = S.select(final, {method = "pg_ustar"})
for _, h in ipairs(horizons) do
  points(S.select(pg, {horizon = h, name = "nll",
                       estimator = {"none", "mean", "loo"}}),
    {by = "group", series = "estimator", y = "value",
     out = ("%s/group_nll_%s"):format(opts.out, h),
     title = ("PG(U*): NLL per dimension after %d updates against G")
       :format(h == "toy" and opts.steps or opts.long_steps),
     xlabel = "G", ylabel = "NLL"})
end
if opts.long_steps > 0 then
  points(S.select(pg, {horizon = "long", name = "var_ratio",
                       estimator = {"none", "mean", "loo"}}),
    {by = "group", series = "estimator", y = "value",
     out = opts.out .. "/group_var_ratio_long",
     title = ("PG(U*): s^2 / (lambda / 2 U_ii) after %d updates; "
              .. "mean baseline: G/(G-1) predicted")
       :format(opts.long_steps), xlabel = "G", ylabel = "var ratio"})
end
local est = S.select(pg, {group = G, name = "nll"})
points(est, {by = "variant", series = "horizon", y = "value",
  out = opts.out .. "/estimator_nll", title = ("PG(U*), G = %d: NLL per "
  .. "dimension at the end of each horizon (toy %d, long %d updates)")
  :format(G, opts.steps, opts.long_steps), xlabel = "estimator",
  ylabel = "NLL"})
points(S.log10_rows(S.select(pg, {group = G, name = "var_ratio"})),
  {by = "variant", series = "horizon", y = "value",
   out = opts.out .. "/estimator_var_ratio", title = ("PG(U*), G = %d: "
   .. "log10 variance ratio s^2 / (lambda / 2 U_ii) (0: the theory's)")
   :format(G), xlabel = "estimator", ylabel = "log10 var ratio"})
S.report(opts)
