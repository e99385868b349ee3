-- The tabular classification experiment (METHOD.md, experiment 4):
-- multiclass logistic regression trained by maximum likelihood (NLL) and by
-- policy gradient with one-hot Mahalanobis rewards U = beta I, at the
-- closed-form beta* = lambda C / (2 tr Sigma_onehot) and at another beta.
--
--   d2r scripts/uci_classification.lua [--datasets iris,wine] [--seeds 5]
--       [--epochs N] [--out results/uci_classification] [--data DIR]
--
-- Runs are a d2r.sweep: parallel worker processes, results stored as each
-- run ends in <out>/store.sqlite, and a re-run skips finished runs, so an
-- interrupted experiment resumes.  Writes <out>/runs.csv (one row per
-- run, epoch and split, with the configuration and seed) and
-- <out>/summary.csv (dataset,method,metric,mean,std,n); prints a table.
local d2r = require "d2r"

local here = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
local opts, usage = d2r.options(arg or {}, {
  datasets = {"iris", "wine", "breast_cancer", "digits", "spambase"},
  seeds = 5,
  seed = 0,
  epochs = 0,
  out = "results/uci_classification",
  data = here .. "/../data/uci",
  quiet = false,
  workers = -1,
}, [[
usage: d2r scripts/uci_classification.lua [options]
  --datasets LIST  comma-separated names from data/uci (default: all five)
  --seeds N        repeats per method (5)
  --seed S         base seed the runs' seeds derive from (0)
  --epochs N       override each protocol's epoch count (0: keep it)
  --out DIR        output folder (results/uci_classification)
  --data DIR       folder of the CSV files (data/uci next to scripts/)
  --workers N      worker processes (default: one per core; 0: run in
                   this process)
  --quiet          no progress display]])
if not opts then
  print(usage)
  return
end

-- The paper's two protocols.  `betas` lists the PG methods: a multiple of
-- beta* or a fixed value.
local PROTOCOLS = {
  paper = {epochs = 100, lr = 1e-2, lambda = 0.1, transform = "min_shift",
           betas = {{name = "pg_beta*", times = 1},
                    {name = "pg_2beta*", times = 2}}},
  table1 = {epochs = 30, lr = 4e-2, lambda = 10, transform = "none",
            betas = {{name = "pg_beta*", times = 1},
                     {name = "pg_beta=1", fixed = 1}}},
}
local PROTOCOL_OF = {spambase = "table1"}
local GROUP, BATCH = 50, 128
local TEST_FRAC, VAL_FRAC = 0.2, 0.2

-- Loads a dataset and splits it for one seed: stratified 20% test, then
-- 20% of the rest for validation; features standardised with the
-- training split's statistics.
local function prepare(name, seed)
  local path = opts.data .. "/" .. name .. ".csv"
  local tbl, err = d2r.read_csv(path)
  if not tbl then error(err, 0) end
  local rng = d2r.rng(seed)
  local train, val, test = d2r.protocol_split(tbl.y, TEST_FRAC, VAL_FRAC,
                                              rng)
  local Xtr = tbl.X:take_rows(train)
  local scaler = d2r.standardizer(Xtr)
  local function part(idx)
    return {X = scaler:apply(tbl.X:take_rows(idx)), y = tbl.y:take_rows(idx)}
  end
  return {train = part(train), val = part(val), test = part(test),
          classes = tbl.classes, features = tbl.features}
end

-- Accuracy and NLL of the model on each split.
local function evaluate(model, data)
  return d2r.no_grad(function()
    local out = {}
    for _, split in ipairs{"train", "val", "test"} do
      local p = data[split]
      local logits = model(p.X)
      out[split] = {
        accuracy = logits:argmax(2):eq(p.y):mean():item(),
        nll = d2r.cross_entropy(logits, p.y):item(),
      }
    end
    return out
  end)
end

-- One run: trains from the seed's initialisation with reward weight beta
-- (PG methods), calling log{epoch, split, accuracy, nll} after each epoch
-- (epoch 0 is the initial model).
local function train_run(cfg, data, seed, beta_value, log)
  local init = d2r.rng(seed)                   -- same start for every method
  local noise = d2r.rng(seed + 1000003)        -- batches and PG samples
  local model = d2r.linear(data.features, data.classes, init)
  local opt = d2r.adam(model, cfg.lr)
  local train, C = data.train, data.classes
  local beta = d2r.scalar(beta_value)
  local function record(epoch)
    for split, m in pairs(evaluate(model, data)) do
      log{epoch = epoch, split = split, accuracy = m.accuracy, nll = m.nll}
    end
  end
  record(0)
  local n = train.y:numel()
  for epoch = 1, cfg.epochs do
    local order = d2r.batch_order(noise, n)
    for b = 1, d2r.batch_count(n, BATCH) do
      local xb = d2r.batch_rows(train.X, order, b, BATCH)
      local yb = d2r.batch_rows(train.y, order, b, BATCH)
      local logits = model(xb)
      local loss
      if cfg.method == "nll" then
        loss = d2r.cross_entropy(logits, yb)
      else
        -- The reward depends on a sample only through its class, so the
        -- class counts of the GROUP draws are all the estimator needs.
        local counts = d2r.categorical_counts(noise, logits, GROUP)
        loss = d2r.pg_surrogate_counts(logits:log_softmax(),
                                       d2r.onehot_reward_classes(yb, C, beta),
                                       counts, d2r.categorical_entropy(logits),
                                       cfg.lambda, {transform = cfg.transform})
      end
      if loss:count_nonfinite() > 0 then
        error(("%s %s: the loss became %g at epoch %d"):format(
          cfg.dataset, cfg.method, loss:item(), epoch), 0)
      end
      opt:zero_grad()
      loss:backward()
      opt:step()
    end
    record(epoch)
  end
end

-- The sweep: datasets x methods x repeats.  Methods of one dataset and
-- repeat share a seed (seed_by), hence the split and the initial model:
-- their comparison is paired.
local METHODS = {"nll", "pg_beta*", "pg_2beta*", "pg_beta=1"}
local function protocol(c) return PROTOCOLS[PROTOCOL_OF[c.dataset] or
                                             "paper"] end

local sweep = d2r.sweep{
  name = "uci_classification",
  store = opts.out .. "/store.sqlite",
  repeats = opts.seeds,
  base_seed = opts.seed,
  seed_by = {"dataset"},
  order = {"dataset"},
  grid = {
    dataset = opts.datasets,
    method = METHODS,
    epochs = function(c)
      return opts.epochs > 0 and opts.epochs or protocol(c).epochs
    end,
    lr = function(c) return protocol(c).lr end,
    lambda = function(c) return protocol(c).lambda end,
    transform = function(c)
      return c.method == "nll" and "none" or protocol(c).transform
    end,
    samples = function(c) return c.method == "nll" and 0 or GROUP end,
    batch = BATCH,
  },
  -- Each protocol has its own second beta.
  filter = function(c)
    for _, b in ipairs(protocol(c).betas) do
      if b.name == c.method then return true end
    end
    return c.method == "nll"
  end,
  run = function(cfg, ctx)
    local data = prepare(cfg.dataset, ctx.seed)
    local beta = 0
    for _, b in ipairs(protocol(cfg).betas) do
      if b.name == cfg.method then
        beta = b.fixed or b.times * d2r.reward_onehot_beta(
          data.train.y, data.classes, cfg.lambda)
      end
    end
    train_run(cfg, data, ctx.seed, beta, function(m) ctx:log(m) end)
    return {beta = beta}
  end,
}

local outcome = sweep:run{progress = opts.quiet and "none" or "auto",
                          workers = opts.workers >= 0 and opts.workers
                                    or nil}
if outcome.failed > 0 then
  print(("%d runs failed: d2r status %s"):format(outcome.failed,
                                                  outcome.store))
end

-- runs.csv: one row per run, epoch and split, with the configuration.
local store = d2r.sweep.open(outcome.store)
local wanted = {}
for _, name in ipairs(opts.datasets) do wanted[name] = true end
local betas, rows, index = {}, {}, {}
for _, m in ipairs(store:metrics{status = "done"}) do
  if wanted[m.dataset] then
    if m.split == "final" and m.name == "beta" then
      betas[m.run] = m.value
    elseif m.epoch then
      local key = m.run .. "|" .. m.epoch .. "|" .. m.split
      local row = index[key]
      if not row then
        row = {run = m.run, dataset = m.dataset, method = m.method,
               lambda = m.lambda, lr = m.lr, epochs = m.epochs,
               transform = m.transform, samples = m.samples,
               batch = m.batch, seed = m.seed, rep = m.rep,
               epoch = m.epoch, split = m.split}
        index[key] = row
        rows[#rows + 1] = row
      end
      row[m.name] = m.value
    end
  end
end
store:close()
for _, r in ipairs(rows) do r.beta = betas[r.run] or 0 end
table.sort(rows, function(a, b)
  if a.run ~= b.run then return a.run < b.run end
  if a.epoch ~= b.epoch then return a.epoch < b.epoch end
  return a.split < b.split
end)
d2r.write_csv(opts.out .. "/runs.csv",
              {"dataset", "method", "beta", "lambda", "lr", "epochs",
               "transform", "samples", "batch", "rep", "seed", "run",
               "epoch", "split", "accuracy", "nll"}, rows)

-- ---- summary ------------------------------------------------------------

local groups, order = {}, {}
for _, r in ipairs(rows) do
  if r.epoch == r.epochs and r.split == "test" then
    local key = r.dataset .. "|" .. r.method
    if not groups[key] then
      groups[key] = {dataset = r.dataset, method = r.method, acc = {},
                     nll = {}, beta = {}}
      order[#order + 1] = key
    end
    local g = groups[key]
    g.acc[#g.acc + 1] = r.accuracy
    g.nll[#g.nll + 1] = r.nll
    g.beta[#g.beta + 1] = r.beta
  end
end

local S = d2r.stats
local summary, lines = {}, {}
for _, key in ipairs(order) do
  local g = groups[key]
  local metrics = {test_accuracy = g.acc, test_nll = g.nll}
  if g.method ~= "nll" then metrics.beta = g.beta end
  for metric, xs in pairs(metrics) do
    summary[#summary + 1] = {dataset = g.dataset, method = g.method,
                             metric = metric, mean = S.mean(xs),
                             std = S.std(xs), n = #xs}
  end
  lines[#lines + 1] = {
    g.dataset, g.method,
    g.method == "nll" and "-" or ("%.4g"):format(S.mean(g.beta)),
    ("%.4f +- %.4f"):format(S.mean(g.acc), S.std(g.acc)),
    ("%.4f +- %.4f"):format(S.mean(g.nll), S.std(g.nll)),
    tostring(#g.acc),
  }
end
table.sort(summary, function(a, b)
  if a.dataset ~= b.dataset then return a.dataset < b.dataset end
  if a.method ~= b.method then return a.method < b.method end
  return a.metric < b.metric
end)
d2r.write_csv(opts.out .. "/summary.csv",
              {"dataset", "method", "metric", "mean", "std", "n"}, summary)
print(d2r.format_table({"dataset", "method", "beta", "test accuracy",
                        "test NLL", "n"}, lines))

-- Does PG match or beat NLL?  Each PG method against NLL on test
-- accuracy: the difference of means, Welch's two-sided p-value, and the
-- probability that a PG run beats an NLL run (with a 95% bootstrap
-- interval).  Runs are paired by seed, but the tests treat them as
-- independent samples, which is the cautious choice.
local comparisons, clines = {}, {}
for _, key in ipairs(order) do
  local g = groups[key]
  local base = groups[g.dataset .. "|nll"]
  if g.method ~= "nll" and base and #g.acc >= 2 and #base.acc >= 2 then
    local c = S.compare(g.acc, base.acc, {seed = 1})
    comparisons[#comparisons + 1] = {
      dataset = g.dataset, method = g.method, baseline = "nll",
      metric = "test_accuracy", diff = c.diff, welch_p = c.p,
      p_improvement = c.poi, p_improvement_lo = c.poi_lo,
      p_improvement_hi = c.poi_hi}
    clines[#clines + 1] = {g.dataset, g.method, ("%+.4f"):format(c.diff),
                           ("%.3f"):format(c.p),
                           ("%.2f [%.2f, %.2f]"):format(c.poi, c.poi_lo,
                                                        c.poi_hi)}
  end
end
if #comparisons > 0 then
  d2r.write_csv(opts.out .. "/comparisons.csv",
                {"dataset", "method", "baseline", "metric", "diff",
                 "welch_p", "p_improvement", "p_improvement_lo",
                 "p_improvement_hi"}, comparisons)
  print()
  print(d2r.format_table({"dataset", "PG method", "acc - NLL acc",
                          "Welch p", "P(PG run beats NLL run)"}, clines))
end
print(("results: %s/runs.csv, %s/summary.csv, %s/comparisons.csv")
      :format(opts.out, opts.out, opts.out))
