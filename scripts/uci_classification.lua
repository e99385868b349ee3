-- The tabular classification experiment (METHOD.md, experiment 4):
-- multiclass logistic regression trained by maximum likelihood (NLL) and by
-- policy gradient with one-hot Mahalanobis rewards U = beta I, at the
-- closed-form beta* = lambda C / (2 tr Sigma_onehot) and at another beta.
--
--   d2r scripts/uci_classification.lua [--datasets iris,wine] [--seeds 5]
--       [--epochs N] [--out results/uci_classification] [--data DIR]
--
-- Writes <out>/runs.csv (one row per run, epoch and split, with the
-- configuration and seed; appended as each run ends) and <out>/summary.csv
-- (dataset,method,metric,mean,std,n), and prints a table.  Runs already in
-- runs.csv are not redone, so an interrupted experiment resumes.
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
}, [[
usage: d2r scripts/uci_classification.lua [options]
  --datasets LIST  comma-separated names from data/uci (default: all five)
  --seeds N        runs per method, seeds seed .. seed + N - 1 (5)
  --seed S         first seed (0)
  --epochs N       override each protocol's epoch count (0: keep it)
  --out DIR        output folder (results/uci_classification)
  --data DIR       folder of the CSV files (data/uci next to scripts/)
  --quiet          no per-run lines]])
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

-- One run: trains from the seed's initialisation and returns a list of
-- rows (epoch 0 is the initial model).
local function run(cfg, data)
  local init = d2r.rng(cfg.seed)               -- same start for every method
  local noise = d2r.rng(cfg.seed + 1000003)    -- batches and PG samples
  local model = d2r.linear(data.features, data.classes, init)
  local opt = d2r.adam(model, cfg.lr)
  local train, C = data.train, data.classes
  local beta = d2r.scalar(cfg.beta)
  local rows = {}
  local function record(epoch)
    for split, m in pairs(evaluate(model, data)) do
      local row = {epoch = epoch, split = split, accuracy = m.accuracy,
                   nll = m.nll}
      for k, v in pairs(cfg) do row[k] = v end
      rows[#rows + 1] = row
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
        local samples = d2r.categorical_sample(noise, logits, GROUP)
        local reward = d2r.onehot_reward(samples, yb, C, beta)
        loss = d2r.pg_surrogate(d2r.categorical_log_prob(logits, samples),
                                reward, d2r.categorical_entropy(logits),
                                cfg.lambda, {transform = cfg.transform})
      end
      if loss:count_nonfinite() > 0 then
        error(("%s %s seed %d: the loss became %g at epoch %d"):format(
          cfg.dataset, cfg.method, cfg.seed, loss:item(), epoch), 0)
      end
      opt:zero_grad()
      loss:backward()
      opt:step()
    end
    record(epoch)
  end
  return rows
end

local COLUMNS = {"dataset", "method", "beta", "lambda", "lr", "epochs",
                 "transform", "samples", "batch", "seed", "epoch", "split",
                 "accuracy", "nll"}

-- A run's identity: everything that changes its numbers.
local function run_key(r)
  return table.concat({r.dataset, r.method, r.seed, r.epochs, r.lr,
                       r.lambda, r.transform, r.samples, r.batch}, "|")
end

local results = d2r.results_file(opts.out .. "/runs.csv", COLUMNS)
local done = {}
for _, r in ipairs(results.rows) do
  if r.epoch == r.epochs then
    done[run_key(r)] = (done[run_key(r)] or 0) + 1
  end
end

local function log(...)
  if not opts.quiet then print(string.format(...)) end
end

local skipped = 0
for _, name in ipairs(opts.datasets) do
  local proto = PROTOCOLS[PROTOCOL_OF[name] or "paper"]
  local epochs = opts.epochs > 0 and opts.epochs or proto.epochs
  for s = opts.seed, opts.seed + opts.seeds - 1 do
    local data = prepare(name, s)
    local beta_star = d2r.reward_onehot_beta(data.train.y, data.classes,
                                             proto.lambda)
    local methods = {{method = "nll", beta = 0}}
    for _, b in ipairs(proto.betas) do
      methods[#methods + 1] = {method = b.name,
                               beta = b.fixed or b.times * beta_star}
    end
    for _, m in ipairs(methods) do
      local cfg = {dataset = name, method = m.method, beta = m.beta,
                   lambda = proto.lambda, lr = proto.lr, epochs = epochs,
                   transform = m.method == "nll" and "none"
                               or proto.transform,
                   samples = m.method == "nll" and 0 or GROUP,
                   batch = BATCH, seed = s}
      if (done[run_key(cfg)] or 0) >= 3 then
        skipped = skipped + 1
      else
        local rows = run(cfg, data)
        results:append(rows)
        for _, r in ipairs(rows) do
          if r.epoch == epochs and r.split == "test" then
            log("%-13s %-10s seed %d  beta %-8.4g test acc %.4f  nll %.4f",
                name, cfg.method, s, cfg.beta, r.accuracy, r.nll)
          end
        end
      end
    end
  end
end
results:close()
if skipped > 0 then
  log("%d runs were already in %s/runs.csv and were not redone", skipped,
      opts.out)
end

-- ---- summary ------------------------------------------------------------

local groups, order = {}, {}
for _, r in ipairs(results.rows) do
  local wanted = false
  for _, name in ipairs(opts.datasets) do
    wanted = wanted or r.dataset == name
  end
  if wanted and r.epoch == r.epochs and r.split == "test" then
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
print(("results: %s/runs.csv, %s/summary.csv"):format(opts.out, opts.out))
