-- Tabular classification with a learned reward (METHOD.md, experiment 4
-- with the implicit solver): multiclass logistic regression trained by
-- PG with one-hot Mahalanobis rewards U = beta I, where beta is learned
-- by implicit differentiation of the validation-monitored training NLL,
-- against the closed form beta* = lambda C / (2 tr Sigma_onehot) and
-- against maximum likelihood.
--
--   d2r scripts/implicit_classification.lua [--datasets iris,wine]
--       [--seeds 3] [--quick] [--out results/implicit_classification]
--
-- Per dataset and seed (stratified 20% test, 20% of the rest for
-- validation, features standardised with training statistics): the
-- implicit solver (outer_steps of inner_steps PG steps, the "paper"
-- preset, early stopping on the validation NLL with rollback to the best
-- beta, a plateau schedule on the outer learning rate), for each inner
-- start in --inits; then final training for --epochs (protocol (a):
-- Adam lr 1e-2, lambda 0.1, min-shift, G = 50, batch 128) by NLL, by PG
-- at beta* and by PG at each learned beta, scored on the test split.
--
-- Writes <out>/runs.csv (outer steps), <out>/final.csv (test metrics per
-- method), <out>/summary.csv and PNG plots (beta_<dataset>,
-- val_nll_<dataset>, test_nll, test_accuracy).  Finished runs are not
-- redone.
package.path = ((arg and arg[0] or ""):match("^(.*)/[^/]*$") or ".")
               .. "/?.lua;" .. package.path
local d2r = require "d2r"
local C = require "implicit_common"

local here = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
local opts = d2r.script_options("implicit_classification", {
  datasets = {"iris", "wine", "breast_cancer"}, seeds = 3, seed = 0,
  inits = {"reinit", "warm"}, estimator = "dice", outer_steps = 100,
  inner_steps = 50, inner_lr = 1e-2, outer_lr = 5e-2, beta0 = 1.0,
  lambda = 0.1, G = 50, batch = 128, transform = "min_shift",
  epochs = 100, lr = 1e-2, patience = 20, preset = "paper",
  data = here .. "/../data/uci", quiet = false,
}, [[
usage: d2r scripts/implicit_classification.lua [options]
  --datasets LIST   from data/uci (iris,wine,breast_cancer)
  --seeds N (3)     --seed S (0)
  --inits LIST      inner starts of the solver: reinit, warm, fresh
                    (reinit,warm)
  --estimator E     dice (default), score or pathwise
  --outer_steps N (100)  --inner_steps K (50)  --inner_lr (1e-2)
  --outer_lr (5e-2) --beta0 B  initial beta (1; beta = softplus(phi))
  --lambda (0.1)  --G (50)  --batch (128)  --transform (min_shift)
  --epochs N        final training epochs (100)  --lr (1e-2)
  --patience P      early stopping on validation NLL (20; 0: off)
  --preset NAME     paper (default) or accurate
  --data DIR        folder of the CSV files (data/uci)
  --quick           iris only, 1 seed, 15 outer steps, 10 epochs
  --out DIR         output folder (results/implicit_classification)
  --quiet           no per-step lines]], {
  datasets = {"iris"}, seeds = 1, outer_steps = 15, epochs = 10})
if not opts then return end

local function log(...)
  if not opts.quiet then print(string.format(...)) end
end

local TEST_FRAC, VAL_FRAC = 0.2, 0.2

local function prepare(name, seed)
  local tbl, err = d2r.read_csv(opts.data .. "/" .. name .. ".csv")
  if not tbl then error(err, 0) end
  local train, val, test = d2r.protocol_split(tbl.y, TEST_FRAC, VAL_FRAC,
                                              d2r.rng(seed))
  local scaler = d2r.standardizer(tbl.X:take_rows(train))
  local function part(idx)
    return {X = scaler:apply(tbl.X:take_rows(idx)), Y = tbl.y:take_rows(idx)}
  end
  return {train = part(train), val = part(val), test = part(test),
          classes = tbl.classes, features = tbl.features}
end

local function policy_ctor(data)
  return function(rng)
    return d2r.categorical_policy{inputs = data.features,
                                  out = data.classes, hidden = {},
                                  rng = rng}
  end
end

-- ---- the bilevel runs ---------------------------------------------------

local CONFIG = {"dataset", "seed", "inner_init", "estimator", "outer_steps",
                "inner_steps", "inner_lr", "outer_lr", "beta0", "lambda",
                "G", "batch", "transform", "patience", "preset"}
local runs_path = opts.out .. "/runs.csv"
local done = d2r.solvers.completed(runs_path, CONFIG)
local planned, cache = {}, {}

local function config(name, s, init)
  return {dataset = name, seed = s, inner_init = init,
          estimator = opts.estimator, outer_steps = opts.outer_steps,
          inner_steps = opts.inner_steps, inner_lr = opts.inner_lr,
          outer_lr = opts.outer_lr, beta0 = opts.beta0,
          lambda = opts.lambda, G = opts.G, batch = opts.batch,
          transform = opts.transform, patience = opts.patience,
          preset = opts.preset}
end

local function data_of(name, s)
  local key = name .. "|" .. s
  cache[key] = cache[key] or prepare(name, s)
  return cache[key]
end

for _, name in ipairs(opts.datasets) do
  for s = opts.seed, opts.seed + opts.seeds - 1 do
    local data = data_of(name, s)
    local beta_star = d2r.reward_onehot_beta(data.train.Y, data.classes,
                                             opts.lambda)
    for _, init in ipairs(opts.inits) do
      local cfg = config(name, s, init)
      local key = C.key(cfg, CONFIG)
      planned[key] = true
      if done[key] then
        log("%s seed %d %s: already in %s", name, s, init, runs_path)
      else
        local reward = d2r.reward_param{kind = "scalar", init = opts.beta0}
        local P = d2r.solvers.pg_problem{
          policy = policy_ctor(data), reward = reward, train = data.train,
          val = data.val, classes = data.classes, lambda = opts.lambda,
          G = opts.G, batch = opts.batch, transform = opts.transform,
          estimator = opts.estimator, seed = 7919 * s + 1}
        local res = d2r.solvers.implicit{
          problem = P, preset = opts.preset, inner_init = init,
          outer_steps = opts.outer_steps, inner_steps = opts.inner_steps,
          inner_lr = opts.inner_lr, outer_lr = opts.outer_lr,
          noise_seed = 104729 * s + 3,
          early_stop = opts.patience > 0 and {patience = opts.patience}
                       or false,
          plateau = {patience = 5, factor = 0.5},
          csv = {outer = runs_path, fields = cfg},
          on_step = function(r)
            if r.step % 10 == 0 or r.final then
              log("%s seed %d %s step %3d  beta %.4f (beta* %.4f)  val NLL"
                  .. " %.4f  lr %.3g", name, s, init, r.step, r.U[1],
                  beta_star, r.val_nll, r.lr)
            end
          end}:run()
        log("%s seed %d %s: learned beta %.4f (best step %d%s)", name, s,
            init, res.reward[1], res.best_step,
            res.stopped_early and ", stopped early" or "")
      end
    end
  end
end

-- The learned beta of each finished run: the reward the solver ends with
-- (with early stopping, rolled back to the best validation step).
local learned, outer_rows = {}, {}
for _, r in ipairs((d2r.read_results(runs_path))) do
  if planned[C.key(r, CONFIG)] then
    outer_rows[#outer_rows + 1] = r
  end
end
for _, g in ipairs(d2r.stats.group(outer_rows, {"dataset", "seed",
                                                "inner_init"})) do
  local best, beta
  for _, r in ipairs(g.rows) do
    if opts.patience == 0 then
      beta = r.u_next
    elseif best == nil or r.val_nll < best then
      best, beta = r.val_nll, r.u
    end
  end
  local k = g.keys
  learned[k.dataset .. "|" .. k.seed .. "|" .. k.inner_init] = beta
end

-- ---- final training and test scores -------------------------------------

local function evaluate(policy, part)
  return d2r.no_grad(function()
    local logits = policy:forward(part.X)
    return logits:argmax(2):eq(part.Y):mean():item(),
           d2r.cross_entropy(logits, part.Y):item()
  end)
end

local function train_final(data, beta, seed)
  local policy = policy_ctor(data)(d2r.rng(7919 * seed + 1))
  local noise = d2r.rng(seed + 1000003)
  local opt = d2r.adam(policy:parameters(), opts.lr)
  local n, bs = #data.train.X, opts.batch
  local U = beta and d2r.scalar(beta)
  for _ = 1, opts.epochs do
    local order = d2r.batch_order(noise, n)
    for b = 1, d2r.batch_count(n, bs) do
      local xb = d2r.batch_rows(data.train.X, order, b, bs)
      local yb = d2r.batch_rows(data.train.Y, order, b, bs)
      local dist = policy:dist(xb)
      local loss
      if not beta then
        loss = -dist:log_prob(yb:reshape(yb:numel(), 1)):mean()
      else
        local smp = dist:sample(opts.G, noise)
        loss = d2r.pg_surrogate(dist:log_prob(smp),
                                d2r.onehot_reward(smp, yb, data.classes, U),
                                dist:entropy(), opts.lambda,
                                {transform = opts.transform})
      end
      opt:zero_grad()
      loss:backward()
      opt:step()
    end
  end
  return evaluate(policy, data.test)
end

local FCOLS = {"dataset", "seed", "method", "beta", "epochs", "lr",
               "lambda", "G", "batch", "transform", "outer_steps",
               "inner_steps", "outer_lr", "beta0", "estimator", "patience",
               "test_accuracy", "test_nll"}
local FKEY = {"dataset", "seed", "method", "beta", "epochs", "lr", "lambda",
              "G", "batch", "transform", "outer_steps", "inner_steps",
              "outer_lr", "beta0", "estimator", "patience"}
local final = d2r.results_file(opts.out .. "/final.csv", FCOLS)
local have = {}
for _, r in ipairs(final.rows) do have[C.key(r, FKEY)] = true end
local final_planned = {}
for _, name in ipairs(opts.datasets) do
  for s = opts.seed, opts.seed + opts.seeds - 1 do
    local data = data_of(name, s)
    local methods = {{"nll", nil}, {"pg_beta*", d2r.reward_onehot_beta(
      data.train.Y, data.classes, opts.lambda)}}
    for _, init in ipairs(opts.inits) do
      local b = learned[name .. "|" .. s .. "|" .. init]
      if b then methods[#methods + 1] = {"pg_learned_" .. init, b} end
    end
    for _, m in ipairs(methods) do
      local row = {dataset = name, seed = s, method = m[1],
                   beta = m[2] or 0, epochs = opts.epochs, lr = opts.lr,
                   lambda = opts.lambda, G = opts.G, batch = opts.batch,
                   transform = opts.transform,
                   outer_steps = opts.outer_steps,
                   inner_steps = opts.inner_steps,
                   outer_lr = opts.outer_lr, beta0 = opts.beta0,
                   estimator = opts.estimator, patience = opts.patience}
      local key = C.key(row, FKEY)
      final_planned[key] = true
      if not have[key] then
        row.test_accuracy, row.test_nll = train_final(data, m[2], s)
        final:append({row})
        have[key] = true
        log("%s seed %d %-18s beta %-8.4g test acc %.4f  NLL %.4f", name,
            s, m[1], row.beta, row.test_accuracy, row.test_nll)
      end
    end
  end
end
final:close()

-- ---- summary ------------------------------------------------------------

local S = d2r.stats
local frows = {}
for _, r in ipairs(final.rows) do
  if final_planned[C.key(r, FKEY)] then frows[#frows + 1] = r end
end
local summary, lines = {}, {}
for _, g in ipairs(S.group(frows, {"dataset", "method"})) do
  local acc, nll, beta = {}, {}, {}
  for _, r in ipairs(g.rows) do
    acc[#acc + 1], nll[#nll + 1], beta[#beta + 1] = r.test_accuracy,
                                                   r.test_nll, r.beta
  end
  local k = g.keys
  for metric, xs in pairs{test_accuracy = acc, test_nll = nll,
                          beta = beta} do
    summary[#summary + 1] = {dataset = k.dataset, method = k.method,
                             metric = metric, mean = S.mean(xs),
                             std = S.std(xs), n = #xs}
  end
  lines[#lines + 1] = {k.dataset, k.method,
    k.method == "nll" and "-"
      or ("%.4f +- %.4f"):format(S.mean(beta), S.std(beta)),
    ("%.4f +- %.4f"):format(S.mean(acc), S.std(acc)),
    ("%.4f +- %.4f"):format(S.mean(nll), S.std(nll)), tostring(#acc)}
end
table.sort(summary, function(a, b)
  if a.dataset ~= b.dataset then return a.dataset < b.dataset end
  if a.method ~= b.method then return a.method < b.method end
  return a.metric < b.metric
end)
d2r.write_csv(opts.out .. "/summary.csv", {"dataset", "method", "metric",
              "mean", "std", "n"}, summary)
print(d2r.format_table({"dataset", "method", "beta", "test accuracy",
                        "test NLL", "n"}, lines))

-- ---- plots --------------------------------------------------------------

local P = d2r.plot
for _, name in ipairs(opts.datasets) do
  local brows, vrows = {}, {}
  local stars = {}
  for _, r in ipairs(outer_rows) do
    if r.dataset == name then
      brows[#brows + 1] = {step = r.step, beta = r.u, curve = r.inner_init}
      vrows[#vrows + 1] = {step = r.step, nll = r.val_nll,
                           curve = r.inner_init}
    end
  end
  for s = opts.seed, opts.seed + opts.seeds - 1 do
    stars[#stars + 1] = d2r.reward_onehot_beta(data_of(name, s).train.Y,
      data_of(name, s).classes, opts.lambda)
  end
  for step = 1, opts.outer_steps do
    brows[#brows + 1] = {step = step, beta = S.mean(stars),
                         curve = "beta* (closed form)"}
  end
  if #vrows > 0 then
    C.plotted(P.curves(brows, {out = opts.out .. "/beta_" .. name,
      x = "step", y = "beta", by = "curve", band = "std",
      formats = {"png"}, xlabel = "outer step",
      title = name .. ": learned beta (mean +- std over seeds)"}))
    C.plotted(P.curves(vrows, {out = opts.out .. "/val_nll_" .. name,
      x = "step", y = "nll", by = "curve", band = "std",
      formats = {"png"}, xlabel = "outer step", ylabel = "NLL",
      title = name .. ": validation NLL of the inner policy"}))
  end
end
if #frows > 0 then
  C.plotted(P.points(frows, {out = opts.out .. "/test_nll", by = "dataset",
    series = "method", y = "test_nll", band = "std", formats = {"png"},
    title = "Test NLL (mean +- std over seeds)"}))
  C.plotted(P.points(frows, {out = opts.out .. "/test_accuracy",
    by = "dataset", series = "method", y = "test_accuracy", band = "std",
    formats = {"png"}, title = "Test accuracy (mean +- std over seeds)"}))
end
for _, f in ipairs(C.drawn) do print("plot: " .. f) end
print(("results: %s/runs.csv, final.csv, summary.csv"):format(opts.out))
