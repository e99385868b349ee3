-- Workload 6 of bench/d2r_bench, the d2r side: a sweep of toy runs end to
-- end, as a researcher would run one.  Run r (r = 1..runs, its seed)
-- draws the toy problem of workload 2 (10 training and 10 validation
-- inputs x ~ U[-5, 5]^2 with y = x + 2 + 1.25 eps), builds the Gaussian
-- policy (MLP 2-[64,64]-4, mean and log-std heads), and takes `updates`
-- PG updates (Adam, lr 1e-2; G = 5 samples per input; the diagonal U* of
-- the training targets; lambda = 1; entropy bonus; per-dimension log-
-- densities and entropies), then reports the validation NLL (per
-- dimension) into the sweep's store, <out>/runs.sqlite, as it ends.  At
-- the end it reads the store back and fails unless every run is stored
-- as done with a finite NLL.  bench/torch/toy_sweep.py is the PyTorch
-- twin.
--
--   d2r bench/toy_sweep.lua --out DIR [--runs 100] [--updates 100]
--       [--workers 1] [--chunk auto] [--progress none]
local d2r = require "d2r"

local opts = d2r.script_options("toy_sweep", {
  runs = 100,
  updates = 100,
  workers = 1,
  chunk = "auto",
  progress = "none",
}, [[
usage: d2r bench/toy_sweep.lua [options]
  --out DIR       where the store goes (results/toy_sweep)
  --runs N        runs, seeded 1..N (100)
  --updates K     PG updates per run (100)
  --workers W     sweep worker processes (1; 0: in this process)
  --chunk C       runs per worker process: auto (the runner's default)
                  or a number (1: a process per run)
  --progress M    auto, bar, lines or none (none)]])
if not opts then return end

local N, BATCH, HIDDEN, G, LAMBDA, LR = 2, 10, {64, 64}, 5, 1.0, 1e-2

-- BATCH toy inputs and their targets.
local function toy_split(rng)
  local x = rng:rand({BATCH, N}, -5, 5)
  local y = x + 2 + rng:randn({BATCH, N}) * 1.25
  return x, y
end

local function run(cfg, ctx)
  local rng = d2r.rng(cfg.run_seed)
  local x, y = toy_split(rng)
  local xv, yv = toy_split(rng)
  local U = d2r.reward_diagonal(y, LAMBDA)
  local policy = d2r.gaussian_policy{inputs = N, out = N, hidden = HIDDEN,
                                     rng = rng}
  local opt = d2r.adam(policy:parameters(), LR)
  for _ = 1, cfg.updates do
    local d = policy:dist(x)
    local yhat = d:sample(G, rng)
    local loss = d2r.pg_surrogate(d:log_prob(yhat),
                                  d2r.mahalanobis_reward(yhat, y, U),
                                  d:entropy(), LAMBDA)
    opt:zero_grad()
    loss:backward()
    opt:step()
  end
  local nll = d2r.no_grad(function()
    local m, ls = policy:forward(xv)
    return d2r.gaussian_nll(m, ls, yv):item()
  end)
  return {split = "val", nll = nll}
end

local seeds = {}
for r = 1, opts.runs do seeds[r] = r end
d2r.mkdir(opts.out)
local sw = d2r.sweep{
  name = "toy_sweep", store = opts.out .. "/runs.sqlite",
  grid = {run_seed = seeds, updates = opts.updates}, run = run,
}
local chunk = math.tointeger(tonumber(opts.chunk)) or opts.chunk
local res = sw:run{workers = opts.workers, chunk = chunk,
                   progress = opts.progress}

-- What the store holds now: every run done, one finite NLL each.
local store = d2r.sweep.open(res.store)
local counts = store:counts()
local finals = store:final{split = "val", name = "nll"}
store:close()
local sum, finite = 0, 0
for _, row in ipairs(finals) do
  local v = row.value
  if v == v and v ~= math.huge and v ~= -math.huge then
    finite = finite + 1
    sum = sum + v
  end
end
if (counts.done or 0) ~= opts.runs or finite ~= opts.runs then
  error(("toy_sweep: %d of %d runs stored as done, %d finite NLLs "
         .. "(%d failed)"):format(counts.done or 0, opts.runs, finite,
         counts.failed or 0), 0)
end
print(("toy_sweep: %d runs of %d updates stored in %s; validation NLL "
       .. "mean %.4f"):format(opts.runs, opts.updates, res.store,
       sum / opts.runs))
