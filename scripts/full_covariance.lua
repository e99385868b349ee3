-- Full covariance: a target N(mu, Sigma) in n = 2 and n = 4 dimensions
-- with a random SPD Sigma = A A^T / n + 0.2 I (A standard normal) and
-- mu ~ U(-3, 3)^n, drawn per seed; one input and 200 targets.  A
-- full-covariance Gaussian policy (MLP [64, 64], Cholesky head; Adam lr
-- 0.01, divided by 10 for the last 30% of 500 full-batch updates) is
-- trained by
--   nll       maximum likelihood
--   pg_full   PG with the full U* = (lambda/2) Sigma_hat^-1
--   pg_diag   PG with the diagonal U*, lambda / (2 Sigma_hat_ii)
--   pg_iso    PG with the isotropic U* = lambda n / (2 tr Sigma_hat) I
-- (Sigma_hat the targets' covariance), lambda = 1, G = 5, no transform.
-- The theory: PG ends at S = (lambda/2) U^-1, so pg_full recovers
-- Sigma_hat, pg_diag its diagonal only and pg_iso (tr Sigma_hat / n) I.
-- Metrics are exact against the true distribution q: the per-dimension
-- expected NLL E_q[-log p] (ce), its excess over q's entropy (kl), the
-- mean error ||m - mu||, the covariance error ||S - Sigma||_F and
-- ||S - Sigma_hat||_F (cov_err_sample).
--
--   d2r scripts/full_covariance.lua [--seeds 10] [--out DIR] [--quick]
--       [--dims 2,4] [--lambda 1] [--steps 500]
--
-- Writes <out>/runs.sqlite (the sweep store, each run stored as it ends;
-- running again resumes), its export <out>/runs.csv and <out>/metrics.csv,
-- <out>/summary.csv (dim, method, metric, n, mean, std, lo, hi, median),
-- the curves <out>/kl_dim<n>.png and <out>/cov_err_dim<n>.png (log10
-- scale), <out>/final_cov_err.png and <out>/final_kl.png (.svg beside
-- each), and prints a table.  The row "sample" is the Gaussian with the
-- targets' own mean and (maximum-likelihood) covariance: what a perfect
-- fit of the 200 targets achieves.
local d2r = require "d2r"
local S = require "synthetic"

local opts = S.options("full_covariance", {
  dims = {2, 4},
  lambda = 1,
  steps = 500,
  lr = 0.01,
  decay = 0.7,
  group = 5,
  targets = 200,
  every = 10,
}, [[
usage: d2r scripts/full_covariance.lua [options]
  --dims LIST    target dimensions (2,4)
  --lambda X     entropy weight (1)
  --steps N      full-batch updates (500); --lr X Adam learning rate (0.01)
  --decay F      the learning rate drops tenfold after this fraction of
                 the updates (0.7; 1: never)
  --group G      PG samples per target (5)
  --targets N    targets drawn from the true distribution (200)
  --every N      updates between recorded curve points (10)]],
  {seeds = 2, dims = {2}, steps = 30, targets = 50, every = 10})
if not opts then return end

local METHODS = {"nll", "pg_full", "pg_diag", "pg_iso"}
local th = d2r.theory

local function make_data(seed, n, count)
  local r = d2r.rng(seed + 7919 * n)
  local A = r:randn({n, n})
  local sigma = A:matmul(A:t()) / n + d2r.eye(n) * 0.2
  local mu = r:rand({n}, -3, 3)
  local y = mu + r:randn({count, n}):matmul(A:t()) / math.sqrt(n)
            + r:randn({count, n}) * math.sqrt(0.2)
  return {mu = mu, sigma = sigma, y = y}
end

local function frob(t)
  return t:square():sum():sqrt():item()
end

local function run(c, ctx)
  local n = c.dim
  local data = make_data(ctx.seed, n, c.targets)
  local Y, X, x1 = data.y, d2r.ones(c.targets, 1), d2r.ones(1, 1)
  local cov_hat = d2r.covariance(Y)
  local U
  if c.method == "pg_full" then
    U = d2r.reward_full(Y, c.lambda)
  elseif c.method == "pg_diag" then
    U = d2r.reward_diagonal(Y, c.lambda)
  elseif c.method == "pg_iso" then
    U = d2r.reward_isotropic(Y, c.lambda)
  end
  local policy = d2r.full_gaussian_policy{inputs = 1, out = n,
    hidden = {64, 64}, rng = d2r.rng(ctx.seed + 1)}
  local noise = d2r.rng(ctx.seed + 2)
  local opt = d2r.adam(policy:parameters(), c.lr)
  local h = th.entropy(data.sigma, "mean"):item()
  local function metrics(m, Sm)
    local ce = th.cross_entropy(data.mu, data.sigma, m, Sm, "mean"):item()
    return {ce = ce, kl = ce - h, mean_err = frob(m - data.mu),
            cov_err = frob(Sm - data.sigma),
            cov_err_sample = frob(Sm - cov_hat)}
  end
  local function record(step)
    d2r.no_grad(function()
      local m = metrics(policy:mean(x1)[1], policy:covariance(x1)[1])
      m.epoch = step
      ctx:log(m)
    end)
  end
  record(0)
  for step = 1, c.steps do
    if step == math.floor(c.decay * c.steps) + 1 then opt:lr(c.lr / 10) end
    local d = policy:dist(X)
    local loss
    if c.method == "nll" then
      loss = -d:log_prob(Y:unsqueeze(2)):mean()
    else
      local yhat = d:sample(c.group, noise)
      loss = d2r.pg_surrogate(d:log_prob(yhat),
                              d2r.mahalanobis_reward(yhat, Y, U),
                              d:entropy(), c.lambda)
    end
    opt:zero_grad()
    loss:backward()
    opt:step()
    if step % c.every == 0 or step == c.steps then record(step) end
  end
  -- the reference: the targets' own mean and ML covariance
  local ref = metrics(Y:mean(1), cov_hat * ((c.targets - 1) / c.targets))
  return {ref_ce = ref.ce, ref_kl = ref.kl, ref_mean_err = ref.mean_err,
          ref_cov_err = ref.cov_err, entropy = h}
end

local sw = S.sweep(opts, {
  grid = {method = METHODS, dim = opts.dims, lambda = opts.lambda,
          steps = opts.steps, lr = opts.lr, decay = opts.decay,
          group = opts.group, targets = opts.targets, every = opts.every},
  order = {"dim", "method"},
  run = run,
})

-- ---- summary -------------------------------------------------------------

local rows = S.metrics(sw)
local final = S.select(rows, {epoch = function(e)
  return e == nil or e == opts.steps
end})
-- the reference row, from the nll runs' ref_* metrics
for _, r in ipairs(S.select(final, {method = "nll"})) do
  local name = r.name:match("^ref_(.*)$")
  if name then
    local c = {}
    for k, v in pairs(r) do c[k] = v end
    c.method, c.name = "sample", name
    final[#final + 1] = c
  end
end
final = S.select(final, {name = function(v)
  return not v:match("^ref_")
end})
local summary = S.collect({}, final, {"dim", "method", "name"})
for _, s in ipairs(summary) do
  s.metric, s.name = s.name, nil
end
S.write_summary(opts, {"dim", "method", "metric", "n", "mean", "std", "lo",
                       "hi", "median"}, summary)
local function get(dim, method, metric)
  for _, s in ipairs(summary) do
    if s.dim == dim and s.method == method and s.metric == metric then
      return s
    end
  end
end
local lines = {}
for _, n in ipairs(opts.dims) do
  for _, m in ipairs{"nll", "pg_full", "pg_diag", "pg_iso", "sample"} do
    lines[#lines + 1] = {tostring(n), m, S.pm(get(n, m, "ce")),
      S.pm(get(n, m, "kl"), 4), S.pm(get(n, m, "mean_err")),
      S.pm(get(n, m, "cov_err")),
      m == "sample" and "-" or S.pm(get(n, m, "cov_err_sample"))}
  end
end
print(("\nAfter %d updates, lambda = %s (mean +- std over %d seeds; exact "
       .. "against the true q;\nNLL = E_q[-log p] per dimension, excess = "
       .. "its KL(q || p) part):"):format(opts.steps, S.tag(opts.lambda),
       opts.seeds))
print(d2r.format_table({"n", "method", "NLL", "excess NLL", "mean err",
                        "||S - Sigma||_F", "||S - Sigma_hat||_F"}, lines))

-- ---- plots ---------------------------------------------------------------

local curves = S.select(rows, {epoch = function(e) return e ~= nil end})
for _, n in ipairs(opts.dims) do
  for _, metric in ipairs{"kl", "cov_err"} do
    local c = S.log10_rows(S.select(curves, {dim = n, name = metric}))
    if #c > 0 then
      S.plotted(d2r.plot.curves(c, {by = "method", y = "value",
        out = ("%s/%s_dim%d"):format(opts.out, metric, n),
        title = ("%s, n = %d (log10; mean over seeds, 95%% CI)"):format(
          metric == "kl" and "excess NLL KL(q || p) per dimension"
          or "covariance error ||S - Sigma||_F", n),
        xlabel = "update", ylabel = "log10 " .. metric}))
    end
  end
end
for _, metric in ipairs{"cov_err", "kl"} do
  local p = S.select(final, {name = metric})
  if #p > 0 then
    S.plotted(d2r.plot.points(p, {by = "method", series = "dim",
      y = "value", out = opts.out .. "/final_" .. metric,
      title = ("%s after %d updates (mean, 95%% CI)"):format(
        metric == "kl" and "excess NLL per dimension"
        or "||S - Sigma||_F", opts.steps), ylabel = metric}))
  end
end
S.report(opts)
