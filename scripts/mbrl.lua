-- The model-based RL experiment (METHOD.md, experiment 5; the paper's
-- Table 3 protocol) on datasets d2r logs from its built-in environments:
-- one-step Gaussian dynamics models p(s' | s, a) (MLP [64, 64] on the
-- normalised [s, a], predicting the normalised s' - s) trained by MSE, by
-- NLL and by policy gradient with U = I, U = lambda n / (2 tr Sigma) I and
-- U = (lambda / 2) Sigma^-1 (Sigma from the normalised training targets)
-- and U = u I with u learned by implicit differentiation (the outer loss
-- is the validation NLL; see learn_u below); Adam lr 1e-3, full-batch
-- updates, lambda = 1, G = 5.  Each dataset is split by episode into 50%
-- train, 20% validation and 30% test.
--
--   d2r scripts/mbrl.lua [--envs pendulum,cartpole,reacher] [--seeds 5]
--       [--transitions 4000] [--updates 400] [--behaviour mix]
--       [--planners cem,mppi] [--ensemble 1] [--elites 0]
--       [--out results/mbrl] [--workers N] [--quick]
--
-- Reports, per environment and method, the test RMSE of the predicted
-- mean and the per-dimension NLL (the paper's two columns; normalised
-- units), the open-loop rollout error at horizons 1, 5, 10 and 25 (in
-- units of the observation std) and closed-loop returns: a CEM and an
-- MPPI planner acting in the real environment through each learned model,
-- against a random policy and against the same planners through the true
-- simulator.  --ensemble K trains K members per model (PETS-style
-- probabilistic ensembles; --elites E of them, chosen by validation MSE,
-- predict), planning through a random elite's samples.
--
-- The learned u follows d2r.implicit_hypergrad on the pathwise form of
-- the PG inner objective.  On the score-function surrogate the
-- hypergradient pointed the wrong way (u fell from 0.5 to 0.18 while a
-- larger fixed u gives a lower validation NLL); with the pathwise form,
-- on pendulum (2 seeds) u rose to 1.36 and the learned-u model had the
-- best NLL and RMSE of the PG rows.
--
-- Runs are a d2r.sweep stored in <out>/runs.sqlite (an interrupted run
-- resumes); writes <out>/runs.csv, <out>/metrics.csv, <out>/summary.csv
-- (env,method,metric,n,mean,std,lo,hi,median) and the plots
-- <out>/rollout_<env>.png; prints the tables and the time taken.
local d2r = require "d2r"
local S = require "synthetic"

local opts = S.options("mbrl", {
  envs = {"pendulum", "cartpole", "reacher"},
  seeds = 5,
  transitions = 4000,
  updates = 400,
  behaviour = "mix",
  data_steps = 200,
  episodes = 2,
  eval_steps = 100,
  population = 100,
  iterations = 3,
  horizon = 15,
  stride = 1,
  outer = 10,
  outer_lr = 0.1,
  cg = 1,
  planners = {"cem", "mppi"},
  ensemble = 1,
  elites = 0,
}, [[
usage: d2r scripts/mbrl.lua [options]
  --envs LIST       environments (pendulum, cartpole, reacher; also
                    mountain_car, acrobot)
  --transitions N   logged transitions per dataset (4000), split 50/20/30
                    by episode
  --updates N       full-batch Adam updates per model (400)
  --behaviour B     mix (half random, half medium episodes), random,
                    medium or expert
  --data-steps N    episode limit while logging (200, or the env's own
                    when smaller)
  --episodes N      closed-loop episodes per model (2)
  --eval-steps N    closed-loop episode limit (100)
  --population N    CEM candidates (100)
  --iterations N    CEM iterations per action (3)
  --horizon N       CEM planning horizon (15)
  --stride N        rollout-error starts every N steps (1)
  --outer N         outer steps of the learned u (10; updates / N inner
                    updates each)
  --outer-lr X      Adam step on log u (0.1)
  --cg N            conjugate-gradient iterations per hypergradient (1)
  --planners LIST   closed-loop planners (cem, mppi; both by default)
  --ensemble K      members per model (1); with K > 1 a planner draws
                    from a random elite's Gaussian
  --elites E        members that predict, by validation MSE (0: all)]],
{
  envs = {"pendulum"},
  seeds = 2,
  transitions = 600,
  updates = 40,
  data_steps = 60,
  episodes = 1,
  eval_steps = 20,
  population = 30,
  iterations = 2,
  horizon = 8,
  stride = 5,
  outer = 2,
})
if not opts then return end

-- The options are checked before anything runs: a bad value would
-- otherwise fail every run of the sweep one by one.
local function bad(fmt, ...)
  error("mbrl: " .. fmt:format(...), 0)
end
local function list_of(v) return type(v) == "table" and v or {v} end
local function whole(v) return math.type(v) == "integer" end
do
  local known = {}
  for _, name in ipairs(d2r.envs()) do known[name] = true end
  opts.envs = list_of(opts.envs)
  if #opts.envs == 0 then bad("--envs lists no environment") end
  for _, name in ipairs(opts.envs) do
    if not known[name] then
      bad("unknown environment '%s' (built in: %s)", tostring(name),
          table.concat(d2r.envs(), ", "))
    end
  end
  opts.planners = list_of(opts.planners)
  local seen = {}
  if #opts.planners == 0 then bad("--planners lists no planner") end
  for _, kind in ipairs(opts.planners) do
    if kind ~= "cem" and kind ~= "mppi" then
      bad("unknown planner '%s' (cem or mppi)", tostring(kind))
    end
    if seen[kind] then bad("planner '%s' is listed twice", kind) end
    seen[kind] = true
  end
  local behaviours = {mix = true, random = true, medium = true,
                      expert = true}
  if not behaviours[opts.behaviour] then
    bad("unknown behaviour '%s' (mix, random, medium or expert)",
        tostring(opts.behaviour))
  end
  if not whole(opts.ensemble) or opts.ensemble < 1 then
    bad("--ensemble must be a whole number >= 1, got %s",
        tostring(opts.ensemble))
  end
  if not whole(opts.elites) or opts.elites < 0
     or opts.elites > opts.ensemble then
    bad("--elites must be a whole number in 0..%d (0: all members), "
        .. "got %s", opts.ensemble, tostring(opts.elites))
  end
end

local HORIZONS = {1, 5, 10, 25}
local LAMBDA, GROUP, LR = 1, 5, 1e-3

-- The methods: how each trains its model (nil for the two baselines).
local METHODS = {
  {name = "mse", train = {loss = "mse"}},
  {name = "nll", train = {loss = "nll"}},
  {name = "pg_identity", train = {loss = "pg", U = "identity"}},
  {name = "pg_isotropic", train = {loss = "pg", U = "isotropic"}},
  {name = "pg_full", train = {loss = "pg", U = "full"}},
  {name = "pg_learned", train = {loss = "pg"}, learned_u = true},
  {name = "random"},
  {name = "simulator"},
}
local METHOD = {}
local NAMES = {}
for _, m in ipairs(METHODS) do
  METHOD[m.name] = m
  NAMES[#NAMES + 1] = m.name
end
local LEARNED = {"mse", "nll", "pg_identity", "pg_isotropic", "pg_full",
                 "pg_learned"}

-- The columns of d2r.dataset, in order.
local COLUMNS = {"obs", "act", "reward", "next_obs", "terminated",
                 "truncated", "episode"}

-- Joins datasets of one environment into one, renumbering the episodes.
local function join(parts, envname, behaviour, seed)
  if #parts == 1 then return parts[1] end
  local cols, offset = {}, 0
  for _, c in ipairs(COLUMNS) do cols[c] = {} end
  for _, p in ipairs(parts) do
    for _, c in ipairs(COLUMNS) do
      local t = p[c]
      if c == "episode" then t = t + offset end
      table.insert(cols[c], t)
    end
    offset = offset + p.episodes
  end
  local spec = {env = envname, behaviour = behaviour, seed = seed}
  for _, c in ipairs(COLUMNS) do spec[c] = d2r.cat(cols[c]) end
  return d2r.dataset(spec)
end

-- At least `target` transitions of env under behaviour: whole episodes,
-- collected in rounds sized by the episode length seen so far.
local function gather(env, envname, behaviour, target, seed)
  local parts, n, eps, len = {}, 0, 0, env:max_steps()
  local round = 0
  while n < target do
    local want = math.max(1, math.ceil((target - n) / len))
    local ds = d2r.collect{env = env, behaviour = behaviour,
                           episodes = want, seed = seed + round}
    parts[#parts + 1] = ds
    n, eps, round = n + #ds, eps + ds.episodes, round + 1
    len = math.max(1, n / eps)
  end
  return join(parts, envname, behaviour, seed)
end

-- The logged dataset of one environment and seed.
local function dataset(cfg, seed)
  local steps = math.min(d2r.env(cfg.env):max_steps(), cfg.data_steps)
  local env = d2r.env(cfg.env, {max_steps = steps})
  if cfg.behaviour ~= "mix" then
    return gather(env, cfg.env, cfg.behaviour, cfg.transitions, seed)
  end
  local half = math.ceil(cfg.transitions / 2)
  return join({gather(env, cfg.env, "random", half, seed),
               gather(env, cfg.env, "medium", half, seed + 1000)},
              cfg.env, "mix", seed)
end

-- A planner of the given kind with the run's budget: the same horizon,
-- population and iterations for CEM and MPPI.
local function planner(cfg, kind, env, seed)
  local o = {env = env, horizon = cfg.horizon, population = cfg.population,
             iterations = cfg.iterations, seed = seed}
  if kind == "cem" then
    o.elites = math.max(2, cfg.population // 10)
    return d2r.cem(o)
  end
  return d2r.mppi(o)
end

-- Trains dyn by PG with U = u I and u learned by implicit
-- differentiation: u starts at the isotropic plug-in value lambda n /
-- (2 tr Sigma); each of cfg.outer outer steps runs updates / outer
-- full-batch PG updates from the current parameters (a fresh Adam each
-- time), then takes the implicit hypergradient of the validation NLL
-- with respect to log u (cfg.cg conjugate-gradient iterations, clamped
-- to [-10, 10], as the reference code) and an Adam step on log u.  The
-- model sees the same number of updates as the other methods.
local function learn_u(cfg, ctx, dyn, train, val, seed)
  dyn:fit(train)
  local x, y = dyn:data(train)
  local vx, vy = dyn:data(val)
  local u0 = dyn:reward_matrix(train, "isotropic", LAMBDA):item()
  local phi = d2r.tensor({math.log(u0)}):requires_grad(true)
  local opt = d2r.adam({phi}, cfg.outer_lr)
  local inner_steps = math.max(1, cfg.updates // cfg.outer)
  local skipped, rep = 0, nil
  for o = 1, cfg.outer do
    local u = phi:detach():exp():reshape()
    rep = dyn:train{train = train, val = val, loss = "pg", U = u,
                    lambda = LAMBDA, group = GROUP, lr = LR,
                    steps = inner_steps, seed = seed + o}
    skipped = skipped + rep.skipped
    local rng = d2r.rng(seed + 1000 + o)
    local hg, _, info = d2r.implicit_hypergrad{
      theta = dyn:parameters(1), phi = {phi},
      -- The pathwise form of the same inner objective: the score
      -- surrogate's Hessian is not the expected objective's, and its
      -- hypergradient points the wrong way (see scripts/implicit_*).
      -- The reward is divided by n to match the per-dimension entropy.
      inner = function()
        local mean, log_std = dyn:dist(1, x)
        local yhat = d2r.gaussian_rsample(rng:clone(), mean, log_std, GROUP)
        local r = d2r.mahalanobis_reward(yhat, y, phi:exp():reshape())
        local h = d2r.gaussian_entropy(log_std, "mean")
        return -r:mean() / y:dim(2) - h:mean() * LAMBDA
      end,
      outer = function()
        local mean, log_std = dyn:dist(1, vx)
        return d2r.gaussian_nll(mean, log_std, vy)
      end,
      solver = "cg", max_iter = cfg.cg}
    local g = math.max(-10, math.min(10, hg[1]))
    opt:zero_grad()
    d2r.solvers.set_grad({phi}, d2r.tensor{g})
    opt:step()
    ctx:log{epoch = o, split = "outer", u = u:item(), hypergrad = hg[1],
            cg_residual = info.residual}
  end
  return {skipped = skipped, val_mse = rep.val_mse,
          u = phi:detach():exp():item()}
end

-- One run: a dataset for (env, seed) shared by every method of the
-- repeat, a model trained by the method (or a baseline), its metrics.
local function run(cfg, ctx)
  local seed = ctx.seed
  local eval_env = d2r.env(cfg.env, {max_steps = math.min(
    d2r.env(cfg.env):max_steps(), cfg.eval_steps)})
  local m = METHOD[cfg.method]
  local out = {}
  if m.train then
    local data = dataset(cfg, seed % 1000000)
    local train, val, test = data:split{train = 0.5, val = 0.2,
                                        test = 0.3, seed = seed + 1}
    local dyn = d2r.dynamics{env = eval_env, hidden = {64, 64},
                             ensemble = cfg.ensemble,
                             elites = cfg.elites > 0 and cfg.elites or nil,
                             seed = seed + 2}
    local spec = {train = train, val = val, lambda = LAMBDA,
                  group = GROUP, lr = LR, steps = cfg.updates,
                  seed = seed + 3}
    for k, v in pairs(m.train) do spec[k] = v end
    local t0 = d2r.proc.time()
    local rep
    if m.learned_u then
      rep = learn_u(cfg, ctx, dyn, train, val, seed + 3)
      out.u = rep.u
    else
      rep = dyn:train(spec)
    end
    out.train_seconds = d2r.proc.time() - t0
    out.skipped = rep.skipped
    out.val_mse = rep.val_mse
    local mt = dyn:evaluate(test)
    out.rmse, out.nll, out.rmse_raw = mt.rmse, mt.nll, mt.rmse_raw
    local err, cnt = dyn:rollout_error(test, HORIZONS, cfg.stride)
    for i, h in ipairs(HORIZONS) do
      if cnt[i] > 0 then
        ctx:log{epoch = h, split = "rollout", rollout_rmse = err[i],
                starts = cnt[i]}
        out["rollout_h" .. h] = err[i]
      end
    end
    out.train_transitions = #train
    -- One member plans through its mean; an ensemble through a random
    -- elite's samples (PETS's trajectory sampling).
    if cfg.ensemble > 1 then
      dyn:plan_mode("sample", seed + 6)
    else
      dyn:plan_mode("mean")
    end
    for _, kind in ipairs(opts.planners) do
      out["return_" .. kind] = planner(cfg, kind, eval_env, seed + 4)
        :evaluate{env = eval_env, model = dyn, episodes = cfg.episodes,
                  seed = seed + 5}
    end
  elseif cfg.method == "random" then
    out.return_random = d2r.random_evaluate(eval_env, {
      episodes = cfg.episodes, seed = seed + 5})
  else
    for _, kind in ipairs(opts.planners) do
      out["return_" .. kind] = planner(cfg, kind, eval_env, seed + 4)
        :evaluate{env = eval_env, episodes = cfg.episodes,
                  seed = seed + 5}
    end
  end
  return out
end

local t_start = d2r.proc.time()
local sw = S.sweep(opts, {
  grid = {env = opts.envs, method = NAMES,
          transitions = opts.transitions, updates = opts.updates,
          behaviour = opts.behaviour, data_steps = opts.data_steps,
          episodes = opts.episodes, eval_steps = opts.eval_steps,
          population = opts.population, iterations = opts.iterations,
          horizon = opts.horizon, stride = opts.stride,
          ensemble = opts.ensemble, elites = opts.elites,
          planners = table.concat(opts.planners, ","),
          outer = function(c)
            return c.method == "pg_learned" and opts.outer or 0
          end,
          outer_lr = function(c)
            return c.method == "pg_learned" and opts.outer_lr or 0
          end,
          cg = function(c)
            return c.method == "pg_learned" and opts.cg or 0
          end},
  order = {"env", "method"},
  run = run,
})
local elapsed = d2r.proc.time() - t_start

local final = S.metrics(sw, {split = "final"})
local rollout = S.metrics(sw, {split = "rollout", name = "rollout_rmse"})

local function cell(env, method, name, digits)
  return S.pm(S.one(S.select(final, {env = env, method = method,
                                     name = name})), digits)
end

local function values(env, method, name)
  local xs = {}
  for _, r in ipairs(S.select(final, {env = env, method = method,
                                      name = name})) do
    xs[#xs + 1] = r.value
  end
  return xs
end

-- summary.csv: every final metric by env and method.
local summary = {}
for _, env in ipairs(opts.envs) do
  for _, g in ipairs(d2r.stats.group(S.select(final, {env = env}),
                                     {"method", "name"})) do
    S.collect(summary, g.rows, {}, {env = env, method = g.keys.method,
                                    metric = g.keys.name})
  end
end
S.write_summary(opts, {"env", "method", "metric", "n", "mean", "std",
                       "lo", "hi", "median"}, summary)

for _, env in ipairs(opts.envs) do
  print()
  print(("%s: test metrics (normalised units), rollout RMSE (obs std) "
         .. "and closed-loop return; mean +- std over %d seeds")
        :format(env, opts.seeds))
  local rows = {}
  for _, method in ipairs(NAMES) do
    local learned = METHOD[method].train ~= nil
    local r = {method,
               learned and cell(env, method, "rmse", 4) or "-",
               learned and cell(env, method, "nll", 3) or "-"}
    for _, h in ipairs(HORIZONS) do
      r[#r + 1] = learned and cell(env, method, "rollout_h" .. h, 3)
                  or "-"
    end
    -- the random policy has one return; it stands in every column
    for _, kind in ipairs(opts.planners) do
      r[#r + 1] = cell(env, method, method == "random" and "return_random"
                                    or "return_" .. kind, 1)
    end
    rows[#rows + 1] = r
  end
  local head = {"method", "RMSE", "NLL", "roll h1", "roll h5", "roll h10",
                "roll h25"}
  for _, kind in ipairs(opts.planners) do
    head[#head + 1] = "return " .. kind:upper()
  end
  print(d2r.format_table(head, rows))

  -- each learned model against NLL: the difference of the means and
  -- the p-value of Welch's test
  local cmp = {}
  for _, method in ipairs(LEARNED) do
    if method ~= "nll" then
      local r = {method}
      local names = {"rmse", "nll"}
      for _, kind in ipairs(opts.planners) do
        names[#names + 1] = "return_" .. kind
      end
      for _, name in ipairs(names) do
        local a, b = values(env, method, name), values(env, "nll", name)
        if #a >= 2 and #b >= 2 then
          local c = d2r.stats.compare(a, b)
          r[#r + 1] = ("%+.4g (p %.3f)"):format(c.diff, c.p)
        else
          r[#r + 1] = "-"
        end
      end
      cmp[#cmp + 1] = r
    end
  end
  local u = S.one(S.select(final, {env = env, method = "pg_learned",
                                   name = "u"}))
  if u then
    print(("learned u (U = u I): %s"):format(S.pm(u, 3)))
  end
  if opts.seeds >= 2 then
    print("difference of means from NLL (Welch's p):")
    local head = {"method", "RMSE", "NLL"}
    for _, kind in ipairs(opts.planners) do
      head[#head + 1] = "return " .. kind:upper()
    end
    print(d2r.format_table(head, cmp))
  end

  local curve = S.select(rollout, {env = env})
  if #curve > 0 then
    S.plotted(d2r.plot.curves(curve, {
      by = "method", x = "epoch", y = "value",
      out = opts.out .. "/rollout_" .. env,
      title = env .. ": open-loop rollout error",
      xlabel = "horizon (steps)", ylabel = "RMSE (observation std)"}))
  end
end

S.report(opts)
print(("time: %.1f s for this invocation; %d runs planned, those "
       .. "already in the store skipped (workers: %s)"):format(
  elapsed, #sw:runs(), opts.workers >= 0 and tostring(opts.workers)
  or "one per core"))
