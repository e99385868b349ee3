-- Tests of the dynamics-model binding: training with MSE, NLL and PG
-- under the reward matrices of METHOD.md, the metrics, rollouts,
-- prediction, losses differentiable in U (for a learned u), and planning
-- through a learned model.
local check = require "check"
local T = d2r.tensor

local env = d2r.env("pendulum", {max_steps = 50})
local data = d2r.collect{env = env, behaviour = "random", episodes = 20,
                         seed = 1}
local train, val, test = data:split{train = 0.5, val = 0.2, test = 0.3,
                                    seed = 2}

local function model(opts)
  local o = {env = env, hidden = {32, 32}, seed = 3}
  for k, v in pairs(opts or {}) do o[k] = v end
  return d2r.dynamics(o)
end

local dyn = model()
check.ok(tostring(dyn):find("d2r.Dynamics%(obs 3, act 1, delta"),
         tostring(dyn))
check.raises("not fitted", dyn.evaluate, dyn, test)
check.raises("the pg loss needs 'U'", dyn.train, dyn,
             {train = train, loss = "pg"})

-- the three losses; each gives finite metrics on the test split
local results = {}
for _, spec in ipairs{
  {loss = "mse"}, {loss = "nll"},
  {loss = "pg", U = "identity"}, {loss = "pg", U = "isotropic"},
  {loss = "pg", U = "full"},
} do
  local m = model()
  local rep = m:train{train = train, val = val, loss = spec.loss,
                      U = spec.U, lambda = 1, group = 5, steps = 100,
                      lr = 3e-3, seed = 4}
  check.eq(rep.skipped, 0, "no skipped steps")
  check.ok(rep.val_mse == rep.val_mse, "validation MSE")
  local mt = m:evaluate(test)
  check.ok(mt.rmse > 0 and mt.rmse < 1, spec.loss .. " rmse " .. mt.rmse)
  check.ok(mt.nll == mt.nll, "nll is a number")
  results[#results + 1] = mt
  if spec.U == "isotropic" then
    check.eq(rep.U:numel(), 1, "isotropic u is a number")
  elseif spec.U == "full" then
    check.eq(table.concat(rep.U:shape(), ","), "3,3", "full U")
  end
end
-- NLL fits the likelihood better than MSE (whose std is untrained)
check.ok(results[2].nll < results[1].nll,
         string.format("nll %.3f vs mse model %.3f", results[2].nll,
                       results[1].nll))

-- rollouts, prediction, normalisers
local nll = model()
nll:train{train = train, loss = "nll", steps = 150, lr = 3e-3}
local err, cnt = nll:rollout_error(test, {1, 5, 10, 25}, 5)
check.eq(#err, 4, "four horizons")
check.ok(err[1] < err[4], "error grows with the horizon")
check.eq(cnt[4], test.episodes * 6, "starts 0, 5, ..., 25 of 50 steps")
local o = test.obs:slice(1, 1, 4)
local a = test.act:slice(1, 1, 4)
local p = nll:predict(o, a)
check.eq(table.concat(p:shape(), ","), "4,3", "prediction shape")
local ps = nll:predict(o, a, {mode = "sample", rng = d2r.rng(1)})
check.ok(not ps:allclose(p), "a sample differs from the mean")
local nz = nll:normalizers()
check.eq(nz.in_std:numel(), 4, "input normaliser")
local x, y = nll:data(test)
check.eq(x:dim(2), 4, "normalised inputs")
check.eq(y:dim(2), 3, "normalised targets")

-- the PG loss is differentiable in U: the bilevel building block
local u = T(0.5, {requires_grad = true})
local loss, stats = nll:loss(1, x, y, {loss = "pg", U = u, lambda = 1,
                                       group = 3, reward_grad = true,
                                       rng = d2r.rng(2)})
check.ok(stats.reward_mean < 0, "rewards are negative distances")
local g = d2r.grad(loss, u)
check.ok(g[1]:item() ~= 0, "d loss / d u")
check.raises("member must be in 1..1", nll.loss, nll, 2, x, y, {})
check.raises("needs 'rng'", nll.loss, nll, 1, x, y,
             {loss = "pg", U = u})
check.eq(#nll:parameters(1), 6, "W0, b0, W1, b1, W2, b2")

-- ensembles pick elites by validation MSE
local ens = model{ensemble = 3, elites = 2}
ens:train{train = train, val = val, loss = "nll", steps = 20,
          bootstrap = true}
check.eq(#ens:elites(), 2, "two elites")
ens:set_elites{3}
check.eq(ens:elites()[1], 3, "elites by hand")
check.raises("U holds a non%-finite value", ens.train, ens,
             {train = train, loss = "pg", U = d2r.scalar(0 / 0), steps = 2})
check.raises('mode "sample" needs a generator', ens.predict, ens,
             d2r.zeros({2, 3}), d2r.zeros({2, 1}), {mode = "sample"})
-- member numbers in messages are the 1-based ones the caller wrote
check.raises("entry 1 is not a member number %(1..3%)", ens.set_elites,
             ens, {4})
check.raises("entry 2 is not a member number", ens.set_elites, ens,
             {1, 1.5})
check.raises("member 2 is listed twice", ens.set_elites, ens, {2, 2})
check.eq(ens:elites()[1], 3, "a refused list changes nothing")

-- planning through the learned model, with the env's reward function
local cem = d2r.cem{env = env, horizon = 10, population = 60,
                    iterations = 3, elites = 6, seed = 5}
local learned = cem:evaluate{env = env, model = nll, episodes = 2,
                             seed = 6}
local random = d2r.random_evaluate(env, {episodes = 2, seed = 6})
check.ok(learned == learned, "a finite closed-loop return")
print(string.format("pendulum, 50 steps: planning through the learned "
                    .. "model %.1f, random %.1f", learned, random))
nll:plan_mode("sample", 3)
check.ok(cem:act(env:reset(0), nll):numel() == 1, "TS1 sampling mode")
local bare = d2r.dynamics{obs_dim = 3, act_dim = 1}
bare:fit(train)
check.raises("reward function of its env", cem.act, cem, env:reset(0),
             bare)

-- A target dimension that never changes (reacher's goal, dimensions 5
-- and 6) gets the isotropic weight under "diagonal" and "full" rather
-- than an infinite or exploding one.
do
  local renv = d2r.env("reacher", {max_steps = 30})
  local rdata = d2r.collect{env = renv, behaviour = "random", episodes = 10,
                            seed = 5}
  local rm = d2r.dynamics{env = renv, hidden = {16}, seed = 6}
  rm:fit(rdata)
  local iso = rm:reward_matrix(rdata, "isotropic", 1):item()
  local diag = rm:reward_matrix(rdata, "diagonal", 1)
  local full = rm:reward_matrix(rdata, "full", 1)
  for _, i in ipairs{5, 6} do
    check.near(diag[i], iso, 1e-12, "diagonal weight of dim " .. i)
    check.near(full[i][i], iso, 1e-9, "full weight of dim " .. i)
  end
  check.ok(diag[1] > 0 and diag[1] < 10, "a varying dim")
  local rep = rm:train{train = rdata, loss = "pg", U = "diagonal",
                       steps = 5, seed = 7}
  check.eq(rep.skipped, 0, "PG with the diagonal U trains")
end

check.done("test_dynamics")
