-- Learned distributions (METHOD.md, experiment 2): one input, 10 targets
-- drawn from N(6.5, 0.8^2 I_2).  A Gaussian policy (MLP [64, 64], input-
-- dependent log-std head, Adam lr 0.01, one full-batch update per epoch)
-- is trained for 50 epochs by
--   nll           maximum likelihood on the 10 targets
--   pg_ustar      PG with U* = (lambda/2) Sigma^-1, Sigma the covariance
--                 of the 10 targets (the full plug-in, d2r.reward_full)
--   pg_identity   PG with U = I (whose optimum has variance lambda/2)
-- for lambda in {0.1, 0.32, 1, 3.16, 10}, G = 5 samples per target, no
-- reward transform.  Draws of each policy at epochs 0, 5, 10, 25, 40 and
-- 50 are shown next to the targets as scatter plots (one figure per
-- lambda: a row per method, a column per epoch), from the first seed.
--
--   d2r scripts/learned_distributions.lua [--seeds 10] [--out DIR]
--       [--quick] [--lambdas 0.1,0.32,1,3.16,10] [--plot_rep 1]
--
-- Writes <out>/runs.sqlite (the sweep store, each run stored as it ends;
-- running again resumes) with its export <out>/runs.csv and
-- <out>/metrics.csv (per epoch: nll on the targets; kl, the excess NLL
-- KL(q || p) per dimension against q = N(6.5, 0.8^2 I), exact; mean_err
-- |m - 6.5| and cov_err |s^2 - 0.64| averaged over dimensions; var, the
-- mean s^2; at the end also var_pred, the variance the theory predicts:
-- lambda/2 for U = I, lambda / (2 U*_ii) = 1 / (Sigma^-1)_ii for U*
-- (the conditional variances, at or below the targets' variances), the
-- targets' biased variance for NLL), <out>/samples/<run>_rep<r>.csv
-- (series, epoch, x, y: the draws and the targets), <out>/summary.csv,
-- the figures <out>/samples_lambda<l>.png, <out>/kl_lambda<l>.png
-- (curves, log10) and <out>/final_kl.png (.svg beside each), and prints
-- a table.
local d2r = require "d2r"
local S = require "synthetic"

local opts = S.options("learned_distributions", {
  lambdas = {0.1, 0.32, 1, 3.16, 10},
  epochs = 50,
  lr = 0.01,
  group = 5,
  targets = 10,
  snapshots = {0, 5, 10, 25, 40, 50},
  draws = 200,
  plot_rep = 1,
  range = {-4, 14},
}, [[
usage: d2r scripts/learned_distributions.lua [options]
  --lambdas LIST    entropy weights (0.1,0.32,1,3.16,10)
  --epochs N        updates (50); --lr X Adam learning rate (0.01)
  --group G         PG samples per target (5)
  --targets N       targets drawn from N(6.5, 0.8^2 I) (10)
  --snapshots LIST  epochs whose draws are kept (0,5,10,25,40,50)
  --draws N         draws kept per snapshot (200)
  --plot_rep R      the repeat shown in the scatter figures (1)
  --range LO,HI     axis range of the scatter figures, both axes (-4,14);
                    draws outside it are not shown]],
  {seeds = 2, lambdas = {1}, epochs = 10, snapshots = {0, 5, 10},
   draws = 50})
if not opts then return end

local MEAN, STD, N_DIM = 6.5, 0.8, 2

local function sample_file(method, lambda, rep)
  return ("%s/samples/%s%s_rep%d.csv"):format(opts.out, method,
    lambda and "_lambda" .. S.tag(lambda) or "", rep)
end

local function run(c, ctx)
  local data = d2r.rng(ctx.seed)
  local Y = data:randn({c.targets, N_DIM}) * STD + MEAN
  local X = d2r.ones(c.targets, 1)
  local x1 = d2r.ones(1, 1)
  local init = d2r.rng(ctx.seed + 1)
  local noise = d2r.rng(ctx.seed + 2)
  local show = d2r.rng(ctx.seed + 3)
  local policy = d2r.gaussian_policy{inputs = 1, out = N_DIM,
                                     hidden = {64, 64}, rng = init}
  local opt = d2r.adam(policy:parameters(), c.lr)
  local U
  if c.method == "pg_ustar" then
    U = d2r.reward_full(Y, c.lambda)
  elseif c.method == "pg_identity" then
    U = d2r.scalar(1)
  end
  local keep, points = {}, {}
  for _, e in ipairs(c.snapshots) do keep[e] = true end
  for i = 1, c.targets do
    points[#points + 1] = {series = "targets", epoch = -1, x = Y[i][1],
                           y = Y[i][2]}
  end
  local function record(epoch)
    d2r.no_grad(function()
      local m, ls = policy:forward(x1)
      local var = ls:exp():square()
      ctx:log{epoch = epoch,
              nll = d2r.gaussian_nll(m:expand(c.targets, N_DIM),
                                     ls:expand(c.targets, N_DIM), Y):item(),
              kl = (ls - math.log(STD) + ((m - MEAN):square() + STD ^ 2)
                    / (var * 2) - 0.5):mean():item(),
              mean_err = (m - MEAN):abs():mean():item(),
              cov_err = (var - STD ^ 2):abs():mean():item(),
              var = var:mean():item()}
      if keep[epoch] then
        local draws = policy:sample(x1, c.draws, show)[1]
        for i = 1, c.draws do
          points[#points + 1] = {series = "policy", epoch = epoch,
                                 x = draws[i][1], y = draws[i][2]}
        end
      end
    end)
  end
  record(0)
  for epoch = 1, c.epochs do
    local d = policy:dist(X)
    local loss
    if c.method == "nll" then
      local m, ls = d:params()
      loss = d2r.gaussian_nll(m, ls, Y)
    else
      local yhat = d:sample(c.group, noise)
      loss = d2r.pg_surrogate(d:log_prob(yhat),
                              d2r.mahalanobis_reward(yhat, Y, U),
                              d:entropy(), c.lambda)
    end
    opt:zero_grad()
    loss:backward()
    opt:step()
    record(epoch)
  end
  d2r.write_csv(sample_file(c.method, c.lambda, ctx.rep),
                {"series", "epoch", "x", "y"}, points)
  -- the variance each method's optimum has, per the Gaussian theory
  local cov = d2r.covariance(Y)
  local sample_var = (cov[1][1] + cov[2][2]) / 2
  local pred = sample_var * (c.targets - 1) / c.targets
  if c.method == "pg_ustar" then
    -- lambda / (2 U_ii) = 1 / (Sigma^-1)_ii: a diagonal policy under the
    -- full U* ends at the conditional variances (reverse KL)
    pred = c.lambda / (4 * U[1][1]) + c.lambda / (4 * U[2][2])
  end
  if c.method == "pg_identity" then pred = c.lambda / 2 end
  return {var_pred = pred}
end

local fixed = {epochs = opts.epochs, lr = opts.lr, targets = opts.targets,
               snapshots = {opts.snapshots}, draws = opts.draws}
local function grid(t)
  for k, v in pairs(fixed) do t[k] = v end
  return t
end
local sw = S.sweep(opts, {
  grids = {
    grid{method = {"nll"}},
    grid{method = {"pg_ustar", "pg_identity"}, lambda = opts.lambdas,
         group = opts.group},
  },
  order = {"method", "lambda"},
  run = run,
})

-- ---- summary -------------------------------------------------------------

local rows = S.metrics(sw)
for _, r in ipairs(rows) do
  if r.lambda == nil then r.lambda = "" end
end
local last = opts.epochs
local final = S.select(rows, {epoch = function(e)
  return e == last or e == nil
end})
local summary = S.collect({}, final, {"method", "lambda", "name"})
for _, s in ipairs(summary) do
  s.metric, s.name = s.name, nil
end
S.write_summary(opts, {"method", "lambda", "metric", "n", "mean", "std",
                       "lo", "hi", "median"}, summary)
local function get(method, lambda, metric)
  for _, s in ipairs(summary) do
    if s.method == method and s.lambda == lambda and s.metric == metric then
      return s
    end
  end
end
local lines = {}
local function line(method, lambda)
  lines[#lines + 1] = {method, lambda == "" and "-" or S.tag(lambda),
    S.pm(get(method, lambda, "nll")),
    get(method, lambda, "nll") and ("%.3f"):format(get(method, lambda,
      "nll").median) or "-",
    S.pm(get(method, lambda, "mean_err")),
    S.pm(get(method, lambda, "cov_err")), S.pm(get(method, lambda, "var")),
    S.pm(get(method, lambda, "var_pred"))}
end
line("nll", "")
for _, lam in ipairs(opts.lambdas) do
  line("pg_ustar", lam)
  line("pg_identity", lam)
end
print(("\nAfter %d epochs (mean +- std over %d seeds; NLL per dimension on "
       .. "the targets; var = s^2\naveraged over dimensions, against the "
       .. "variance the theory predicts; true var %.2f):"):format(last,
       opts.seeds, STD ^ 2))
print(d2r.format_table({"method", "lambda", "NLL", "NLL median",
                        "mean err", "cov err", "var", "predicted var"},
                       lines))

-- ---- figures -------------------------------------------------------------

local function read_points(method, lambda, rows_out)
  local pts = d2r.read_results(sample_file(method, lambda, opts.plot_rep))
  local targets = {}
  for _, p in ipairs(pts or {}) do
    if p.series == "targets" then targets[#targets + 1] = p end
  end
  for _, p in ipairs(pts or {}) do
    if p.series == "policy" then
      rows_out[#rows_out + 1] = {method = method, epoch = p.epoch,
                                 series = "policy draws", x = p.x, y = p.y}
    end
  end
  for _, e in ipairs(opts.snapshots) do
    for _, t in ipairs(targets) do
      rows_out[#rows_out + 1] = {method = method, epoch = e,
                                 series = "targets", x = t.x, y = t.y}
    end
  end
end
for _, lam in ipairs(opts.lambdas) do
  local pts = {}
  read_points("nll", nil, pts)
  read_points("pg_identity", lam, pts)
  read_points("pg_ustar", lam, pts)
  if #pts > 0 then
    S.plotted(d2r.plot.scatter(pts, {by = "series",
      panel = {"method", "epoch"}, layout = {3, #opts.snapshots},
      out = ("%s/samples_lambda%s"):format(opts.out, S.tag(lam)),
      title = ("Draws of each policy (colour) and the %d targets (black), "
               .. "lambda = %s, seed %d"):format(opts.targets, S.tag(lam),
               opts.plot_rep),
      colours = {targets = "#000000"}, sizes = {targets = 0.8},
      pointsize = 0.35, xlabel = "y1", ylabel = "y2",
      xrange = opts.range, yrange = opts.range}))
  end
  local curve = S.log10_rows(S.select(rows, {name = "kl",
    epoch = function(e) return e ~= nil end,
    lambda = function(l) return l == "" or l == lam end}))
  if #curve > 0 then
    S.plotted(d2r.plot.curves(curve, {by = "method", y = "value",
      out = ("%s/kl_lambda%s"):format(opts.out, S.tag(lam)),
      title = ("log10 excess NLL KL(q || p) per dimension, lambda = %s "
               .. "(mean over seeds, 95%% CI)"):format(S.tag(lam)),
      ylabel = "log10 kl"}))
  end
end
local points = {}
for _, r in ipairs(S.log10_rows(S.select(final, {name = "kl"}))) do
  if r.method == "nll" then
    for _, lam in ipairs(opts.lambdas) do
      local c = {}
      for k, v in pairs(r) do c[k] = v end
      c.lambda = lam
      points[#points + 1] = c
    end
  else
    points[#points + 1] = r
  end
end
if #points > 0 then
  S.plotted(d2r.plot.points(points, {by = "lambda", series = "method",
    y = "value", out = opts.out .. "/final_kl", title = ("log10 excess "
    .. "NLL per dimension after %d epochs (mean over seeds, 95%% CI)")
    :format(last), ylabel = "log10 kl"}))
end
S.report(opts)
