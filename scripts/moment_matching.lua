-- Moment matching on synthetic regression (METHOD.md, experiment 1).
-- x ~ U[-5, 5]^2 and y = x + loc + sigma eps, with loc ~ U(-6, 6) (drawn
-- for each of the two dimensions) and sigma ~ U(0.1, 2.5) drawn once per
-- seed; 100 training inputs with 10 targets each, 100 validation and 100
-- test inputs (10 targets each too).  A Gaussian policy, MLP [64, 64] with
-- an input-dependent log-std head, is trained with Adam (lr 0.01) for 100
-- full-batch updates by:
--   mse                 the mean head by squared error (the log-std head
--                       is left alone: MSE has no variance, so its NLL and
--                       covariance error are not reported: "-" / absent)
--   nll                 maximum likelihood
--   pg_identity         PG with U = I
--   pg_ustar_marginal   PG with U* = (lambda/2) Sigma^-1, Sigma the
--                       marginal covariance of the training y (the plug-in
--                       as METHOD.md states it; it includes the spread of
--                       x + loc, about 100/12 per dimension)
--   pg_ustar_pooled     the same with Sigma the pooled covariance of the
--                       10 targets around each input's mean (a plug-in
--                       from data that estimates the noise covariance)
--   pg_ustar_oracle     the same with Sigma = sigma^2 I, the true noise
-- for lambda in {0.3, 0.53, 0.95, 1.69}, G = 5 samples per input, no
-- reward transform, per-dimension log-probabilities and entropies.  (PG
-- with a U* repeats the same run at every lambda, up to Adam's eps: its
-- loss is lambda times a lambda-free one, Adam ignores the scale, and
-- only U / lambda is identified.)
-- Validation curves per update of the NLL (per dimension), the mean error
-- |m(x) - (x + loc)| and the covariance error |s(x)^2 - sigma^2| (both
-- averaged over inputs and dimensions), mean and 95% bootstrap band over
-- seeds.
--
--   d2r scripts/moment_matching.lua [--seeds 10] [--out DIR] [--quick]
--       [--lambdas 0.3,0.53,0.95,1.69] [--epochs 100] [--workers N]
--
-- Writes <out>/runs.sqlite (the sweep store, each run stored as it ends;
-- running again resumes), <out>/runs.csv and <out>/metrics.csv (its
-- export), <out>/summary.csv (method, lambda, split, metric, epoch, n,
-- mean, std, lo, hi (95% bootstrap interval of the mean), median; metrics
-- nll, kl (the excess NLL, KL(q || p) per dimension, exact), mean_err,
-- cov_err, var_ratio (mean s^2 / sigma^2), nll_true and sigma on the test
-- split), the plots <out>/val_<kl|mean_err|cov_err>_lambda<l>.png (and
-- .svg beside each; log10 scale) and <out>/test_kl.png, and prints
-- tables.
local d2r = require "d2r"
local S = require "synthetic"

local opts = S.options("moment_matching", {
  lambdas = {0.3, 0.53, 0.95, 1.69},
  epochs = 100,
  lr = 0.01,
  group = 5,
  train = 100,
  targets = 10,
  val = 100,
  test = 100,
}, [[
usage: d2r scripts/moment_matching.lua [options]
  --lambdas LIST  entropy weights (0.3,0.53,0.95,1.69)
  --epochs N      full-batch updates (100)
  --lr X          Adam learning rate (0.01)
  --group G       PG samples per input (5)
  --train N       training inputs (100), --targets K per input (10)
  --val N, --test N  validation and test inputs (100 each)]],
  {seeds = 2, lambdas = {0.95}, epochs = 8, train = 20, val = 20,
   test = 20})
if not opts then return end

local N_DIM = 2
local HIDDEN = {64, 64}
local PG_METHODS = {"pg_identity", "pg_ustar_marginal", "pg_ustar_pooled",
                    "pg_ustar_oracle"}

-- The data of one seed: the experiment's loc and sigma, and the three
-- splits (training targets flattened to one row per (x, y) pair; val and
-- test targets as [B, K, n]).
local function make_data(seed, c)
  local r = d2r.rng(seed)
  local loc = r:rand({N_DIM}, -6, 6)
  local sigma = r:uniform(0.1, 2.5)
  local function split(n)
    local x = r:rand({n, N_DIM}, -5, 5)
    local mu = x + loc
    local y = mu:unsqueeze(2) + r:randn({n, c.targets, N_DIM}) * sigma
    return {x = x, mu = mu, y = y}
  end
  local train, val, test = split(c.train), split(c.val), split(c.test)
  train.xr = S.repeat_rows(train.x, c.targets)
  train.yr = train.y:reshape(c.train * c.targets, N_DIM)
  return {loc = loc, sigma = sigma, train = train, val = val, test = test}
end

-- The reward matrix of a PG method.
local function reward_of(method, lambda, data, c)
  if method == "pg_identity" then return d2r.scalar(1) end
  if method == "pg_ustar_oracle" then
    return d2r.scalar(lambda / (2 * data.sigma ^ 2))
  end
  if method == "pg_ustar_marginal" then
    return (d2r.reward_full(data.train.yr, lambda))
  end
  -- pooled: residuals around each input's own target mean
  local y = data.train.y
  local res = (y - y:mean(2, true)):reshape(c.train * c.targets, N_DIM)
  local cov = res:t():matmul(res) / (c.train * (c.targets - 1))
  return (d2r.reward_full_from_cov(cov, lambda))
end

-- Metrics of the policy on one split.
local function evaluate(policy, part, sigma, has_var)
  return d2r.no_grad(function()
    local m, ls = policy:forward(part.x)
    local out = {mean_err = (m - part.mu):abs():mean():item()}
    if has_var then
      local var = ls:exp():square()
      out.nll = d2r.gaussian_nll(m, ls, part.y):item()
      -- KL(q || p) per dimension, exact: the expected excess NLL
      out.kl = (ls - math.log(sigma) + ((m - part.mu):square() + sigma ^ 2)
                / (var * 2) - 0.5):mean():item()
      out.cov_err = (var - sigma ^ 2):abs():mean():item()
      out.var_ratio = var:mean():item() / sigma ^ 2
    end
    return out
  end)
end

local function run(c, ctx)
  local data = make_data(ctx.seed, c)
  local init = d2r.rng(ctx.seed + 1)
  local noise = d2r.rng(ctx.seed + 2)
  local policy = d2r.gaussian_policy{inputs = N_DIM, out = N_DIM,
                                     hidden = HIDDEN, rng = init}
  local opt = d2r.adam(policy:parameters(), c.lr)
  local has_var = c.method ~= "mse"
  local U = c.lambda and reward_of(c.method, c.lambda, data, c)
  local tr = data.train
  local function record(epoch)
    local m = evaluate(policy, data.val, data.sigma, has_var)
    m.epoch, m.split = epoch, "val"
    ctx:log(m)
  end
  record(0)
  for epoch = 1, c.epochs do
    local d = policy:dist(tr.xr)
    local loss
    if c.method == "mse" then
      loss = d2r.mse(d:mean(), tr.yr)
    elseif c.method == "nll" then
      local m, ls = d:params()
      loss = d2r.gaussian_nll(m, ls, tr.yr)
    else
      local yhat = d:sample(c.group, noise)
      loss = d2r.pg_surrogate(d:log_prob(yhat),
                              d2r.mahalanobis_reward(yhat, tr.yr, U),
                              d:entropy(), c.lambda)
    end
    opt:zero_grad()
    loss:backward()
    opt:step()
    record(epoch)
  end
  local final = evaluate(policy, data.test, data.sigma, has_var)
  final.split = "test"
  final.sigma = data.sigma
  -- the NLL of the true conditional distribution on the test targets
  final.nll_true = d2r.gaussian_nll(data.test.mu,
    d2r.full({c.test, N_DIM}, math.log(data.sigma)), data.test.y):item()
  return final
end

local fixed = {epochs = opts.epochs, lr = opts.lr, train = opts.train,
               targets = opts.targets, val = opts.val, test = opts.test}
local function grid(t)
  for k, v in pairs(fixed) do t[k] = v end
  return t
end
local sw = S.sweep(opts, {
  grids = {
    grid{method = {"mse", "nll"}},
    grid{method = PG_METHODS, lambda = opts.lambdas, group = opts.group},
  },
  order = {"method", "lambda"},
  run = run,
})

-- ---- summary -------------------------------------------------------------

local rows = S.metrics(sw)
for _, r in ipairs(rows) do
  if r.lambda == nil then r.lambda = "" end
end
local marks = S.checkpoints({10, 25, 50}, opts.epochs)
local summary = {}
local by = {"method", "lambda", "name"}
for _, e in ipairs(marks) do
  S.collect(summary, S.select(rows, {split = "val", epoch = e}), by,
            {split = "val", epoch = e})
end
S.collect(summary, S.select(rows, {split = "test"}), by,
          {split = "test", epoch = opts.epochs})
for _, s in ipairs(summary) do
  s.metric, s.name = s.name, nil
end
S.write_summary(opts, {"method", "lambda", "split", "metric", "epoch", "n",
                       "mean", "std", "lo", "hi", "median"}, summary)

local function find(method, lambda, split, metric, epoch)
  for _, s in ipairs(summary) do
    if s.method == method and s.lambda == lambda and s.split == split
       and s.metric == metric and s.epoch == epoch then
      return s
    end
  end
end

-- one table row per method (and lambda for PG)
local lines_end, lines_early = {}, {}
local early = marks[1]
local function median(s)
  return s and s.n > 0 and ("%.3f"):format(s.median) or "-"
end
local function table_rows(method, lambda)
  local function get(split, metric, epoch)
    return find(method, lambda, split, metric, epoch)
  end
  local last = opts.epochs
  local lab = lambda == "" and "-" or S.tag(lambda)
  lines_end[#lines_end + 1] = {method, lab,
    S.pm(get("test", "nll", last)), median(get("test", "nll", last)),
    S.pm(get("test", "mean_err", last)), S.pm(get("test", "cov_err", last)),
    S.pm(get("test", "var_ratio", last)),
    S.pm(get("test", "nll_true", last))}
  local row = {method, lab}
  for _, e in ipairs{early, last} do
    for _, metric in ipairs{"kl", "mean_err", "cov_err"} do
      row[#row + 1] = median(get("val", metric, e))
    end
  end
  lines_early[#lines_early + 1] = row
end
table_rows("mse", "")
table_rows("nll", "")
for _, lam in ipairs(opts.lambdas) do
  for _, m in ipairs(PG_METHODS) do table_rows(m, lam) end
end
print(("\nTest set after %d updates (mean +- std over %d seeds, and the "
       .. "median; NLL per\ndimension; var ratio = mean s^2 / sigma^2; true "
       .. "NLL: the noise distribution's own):"):format(opts.epochs,
       opts.seeds))
print(d2r.format_table({"method", "lambda", "NLL", "NLL median",
                        "mean err", "cov err", "var ratio", "true NLL"},
                       lines_end))
print(("\nValidation at updates %d and %d, medians over seeds (excess NLL "
       .. "= KL(q || p) per\ndimension):"):format(early, opts.epochs))
local heads = {"method", "lambda"}
for _, e in ipairs{early, opts.epochs} do
  for _, h in ipairs{"excess NLL", "mean err", "cov err"} do
    heads[#heads + 1] = h .. "@" .. e
  end
end
print(d2r.format_table(heads, lines_early))

-- ---- plots ---------------------------------------------------------------

-- Errors span orders of magnitude (NLL training first inflates the
-- variance; PG runs with a small sigma lag in the mean, which the NLL
-- punishes hard), so the curves show log10 of each metric, averaged over
-- seeds on that scale.  The NLL appears as its excess over the true
-- conditional's, KL(q || p) per dimension, computed exactly.
local TITLES = {
  kl = "log10 excess NLL, KL(q || p) per dimension",
  mean_err = "log10 mean error |m(x) - mu(x)|",
  cov_err = "log10 covariance error |s(x)^2 - sigma^2|",
}
for _, lam in ipairs(opts.lambdas) do
  for _, metric in ipairs{"kl", "mean_err", "cov_err"} do
    local curve = S.log10_rows(S.select(rows, {split = "val",
      name = metric, lambda = function(l) return l == "" or l == lam end}))
    S.plotted(d2r.plot.curves(curve, {by = "method", x = "epoch",
      y = "value", out = ("%s/val_%s_lambda%s"):format(opts.out, metric,
      S.tag(lam)), title = ("validation %s, lambda = %s (mean over "
      .. "seeds, 95%% CI)"):format(TITLES[metric], S.tag(lam)),
      xlabel = "update", ylabel = "log10 " .. metric}))
  end
end
-- the NLL method does not depend on lambda: repeated at each, as reference
local test_kl = {}
for _, r in ipairs(S.log10_rows(S.select(rows, {split = "test",
                                                name = "kl"}))) do
  if r.method == "nll" then
    for _, lam in ipairs(opts.lambdas) do
      local c = {}
      for k, v in pairs(r) do c[k] = v end
      c.lambda = lam
      test_kl[#test_kl + 1] = c
    end
  else
    test_kl[#test_kl + 1] = r
  end
end
if #test_kl > 0 then
  S.plotted(d2r.plot.points(test_kl, {by = "lambda", series = "method",
    y = "value", out = opts.out .. "/test_kl", title = "test log10 excess "
    .. "NLL per dimension after " .. opts.epochs .. " updates (mean over "
    .. "seeds, 95% CI)", ylabel = "log10 kl"}))
end
S.report(opts)
