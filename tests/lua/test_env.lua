-- Tests of the environment binding: built-in environments, environments
-- written in Lua (used by collect and the planners like built-ins),
-- datasets (collection, files, splits) and the CEM / MPPI planners.
local check = require "check"
local T = d2r.tensor

-- built-in environments
local names = d2r.envs()
check.eq(#names, 5, "five built-ins")
check.eq(names[1], "pendulum", "first built-in")

local env = d2r.env("pendulum")
check.ok(tostring(env):find("d2r.Env%(pendulum"), tostring(env))
local sp = env:spaces()
check.eq(sp.obs.dim, 3, "obs dim")
check.eq(sp.act.dim, 1, "act dim")
check.tensor(sp.act.high, {2}, nil, "torque bound")
check.tensor(sp.obs.low, {-1, -1, -8}, nil, "observation low")
check.eq(sp.max_steps, 200, "episode limit")
check.eq(env:elapsed(), nil, "no episode yet")
check.raises("step before reset", env.step, env, {0})

local obs = env:reset(7)
check.eq(obs:numel(), 3, "observation size")
local again = d2r.env("pendulum"):reset(7)
check.tensor(obs, again:tolist(), 0, "same seed, same start")
local o2, r, term, trunc = env:step(T{1.5})
check.eq(type(r), "number", "reward")
check.eq(term, false, "pendulum never terminates")
check.eq(trunc, false, "not yet truncated")
local o3 = env:step(0.5)  -- a number is a one-element action
check.eq(o3:numel(), 3, "number action")
check.raises("action element 0 is %-?nan", env.step, env, {0 / 0})
check.raises("must have 1 elements, got shape %[2%]", env.step, env,
             {1, 2})
check.eq(env:elapsed(), 2, "refused actions do not count")

-- constants and truncation
local short = d2r.env("cartpole", {max_steps = 3, force_mag = 20})
check.eq(short:constants().force_mag, 20, "overridden constant")
check.eq(short:constants().masspole, 0.1, "standard constant")
short:reset(0)
short:step{0}
short:step{0}
local _, _, _, tr = short:step{0}
check.eq(tr, true, "truncated at max_steps")
check.raises("after the episode ended", short.step, short, {0})
check.raises("unknown constant 'gravty'", d2r.env, "cartpole",
             {gravty = 1})
check.raises("unknown environment 'pong'", d2r.env, "pong")

-- the batched model and the reward function
local next_obs, rew, done = env:predict(T{{1, 0, 0}, {0, 1, 0}},
                                        T{{0}, {1}})
check.eq(table.concat(next_obs:shape(), ","), "2,3", "predict shape")
check.near(rew[1], 0, 1e-15, "upright at rest costs nothing")
check.near(next_obs[2][3], 0.9, 1e-12, "hand-computed velocity")
check.eq(done[1], 0, "not done")
local rew2 = env:reward(T{{1, 0, 0}, {0, 1, 0}}, T{{0}, {1}}, next_obs)
check.tensor(rew2, rew:tolist(), 0, "reward agrees with predict")

-- an environment written in Lua: x' = x + a, reward -|x'|, done at 5
local function walker(opts)
  local x
  local spec = {
    name = "walk",
    obs_low = {-10}, obs_high = {10},
    act_low = {-1}, act_high = {1},
    max_steps = 20,
    reset = function(seed)
      x = seed % 3
      return {x}
    end,
    step = function(a)
      x = x + a[1]
      return {x}, -math.abs(x), x >= 5
    end,
    predict = function(o, a)
      local n = o + a
      return n, n:abs():neg(), n:ge(5)
    end,
  }
  for k, v in pairs(opts or {}) do
    if v == false then spec[k] = nil else spec[k] = v end
  end
  return d2r.env_from_lua(spec)
end
local walk = walker()
check.eq(walk:kind(), "lua", "kind")
check.tensor(walk:reset(4), {1}, 0, "reset through Lua")
local wo, wr, wt = walk:step{3}  -- clipped to 1 before Lua sees it
check.tensor(wo, {2}, 0, "clipped step")
check.eq(wr, -2, "reward from Lua")
check.eq(wt, false, "not done")

-- Lua errors and malformed results become clear errors
local broken = walker{step = function() error("boom") end}
broken:reset(0)
check.raises("step: .*boom", broken.step, broken, {0})
local wrong = walker{reset = function() return {1, 2} end}
check.raises("reset's observation must hold 1 values", wrong.reset, wrong,
             0)
local nanobs = walker{reset = function() return {0 / 0} end}
check.raises("non%-finite observation", nanobs.reset, nanobs, 0)
check.raises("'step' must be a function", d2r.env_from_lua,
             {reset = print, obs_dim = 1, act_dim = 1})
check.raises("unknown option 'stpe'", d2r.env_from_lua,
             {reset = print, step = print, stpe = 1, obs_dim = 1,
              act_dim = 1})

-- a Lua environment works wherever a built-in does: collect and plan
local ds = d2r.collect{env = walk, behaviour = "random", episodes = 3,
                       seed = 1}
check.eq(ds.env, "walk", "dataset env name")
check.eq(ds.episodes, 3, "episodes")
check.ok(#ds > 0 and #ds <= 60, "transitions: " .. #ds)
local cem = d2r.cem{env = walk, horizon = 5, population = 50,
                    iterations = 3, elites = 5, seed = 2}
local a, info = cem:act(T{2}, walk)
check.ok(a[1] < -0.5, "from x = 2, CEM steers back to 0: " .. a[1])
check.eq(info.model_rows, 50 * 5 * 3, "model rows")
local mean = cem:evaluate{env = walk, episodes = 2, seed = 3}
check.ok(mean > -10, "CEM keeps the walker near 0: " .. mean)
local expert = d2r.collect{env = walk, behaviour = "expert",
                           episodes = 1, seed = 1,
                           planner = {horizon = 3, population = 20}}
check.ok(expert.behaviour:find("H=3 N=20"), expert.behaviour)
-- a Lua environment without predict cannot be its own model
local nomodel = walker{predict = false}
check.raises("cannot serve as its own model", d2r.collect,
             {env = nomodel, behaviour = "medium"})

-- a Lua policy and a Lua model
local stats = d2r.run_episode{env = d2r.env("cartpole"), seed = 1,
                              policy = function(o)
                                return {o[3] * 10 + o[4]}
                              end}
check.ok(stats.steps > 100, "a proportional controller balances: " ..
         stats.steps)
local pend = d2r.env("pendulum", {max_steps = 50})
local calls = 0
local mppi = d2r.mppi{env = pend, horizon = 10, population = 50,
                      seed = 1}
local lua_model = function(o, act)
  calls = calls + 1
  return pend:predict(o, act)
end
local m1 = mppi:evaluate{env = pend, model = lua_model, episodes = 1,
                         seed = 4}
mppi:reset(1)
local m2 = mppi:evaluate{env = pend, episodes = 1, seed = 4}
check.near(m1, m2, 1e-12, "a Lua model equal to the simulator plans the "
           .. "same")
check.eq(calls, 50 * 10, "one model call per planning step")
check.raises("model: .*bad model", mppi.evaluate, mppi,
             {env = pend, model = function() error("bad model") end})

-- datasets: collection, metadata, files, splits
local data = d2r.collect{env = pend, behaviour = "random", episodes = 10,
                         seed = 5}
check.eq(data.size, 500, "10 x 50 transitions")
check.eq(data.obs_dim, 3, "obs_dim")
check.eq(table.concat(data.obs:shape(), ","), "500,3", "obs column")
check.eq(data.truncated[50], 1, "episode end")
check.eq(data.episode[51], 1, "episode ids are 0-based")
check.ok(tostring(data):find("500 transitions"), tostring(data))
check.eq(data:returns():numel(), 10, "one return per episode")
local path = os.tmpname()
assert(data:save(path))
local back = assert(d2r.load_dataset(path))
check.tensor(back.next_obs, data.next_obs:tolist(), 0, "round trip")
check.eq(back.behaviour, data.behaviour, "metadata round trip")
check.eq(back.seed, 5, "seed round trip")
local f = assert(io.open(path, "r+b"))
f:seek("set", 200)
f:write("x")
f:close()
local none, msg = d2r.load_dataset(path)
check.eq(none, nil, "a corrupted file gives nil")
check.ok(msg:find("checksum mismatch"), msg)
os.remove(path)
none, msg = d2r.load_dataset("/nonexistent/data.d2rt")
check.ok(none == nil and msg:find("cannot open"), msg)

local train, val, test = data:split{train = 0.5, val = 0.2, test = 0.3,
                                    seed = 1}
check.eq(train.episodes + val.episodes + test.episodes, 10, "partition")
check.eq(train.episodes, 5, "half for training")
local t2, v2, te2 = data:split{train = 0.6, val = 0, test = 0.2}
check.eq(v2, nil, "no validation part")
check.eq(t2.episodes + te2.episodes, 8, "a data proportion of 80%")
check.raises("sum to", data.split, data, {train = 0.9, val = 0.2})
local sub = data:select{3, 1}
check.eq(sub.episodes, 2, "select")
check.eq(sub.episode[1], 1, "in the dataset's order")

local made = d2r.dataset{env = "line", obs = {{0}, {1}}, act = {{1}, {1}},
                         reward = {0, 0}, next_obs = {{1}, {2}},
                         terminated = {0, 1}, truncated = {0, 0},
                         episode = {0, 0}}
check.eq(made.behaviour, "unknown", "default behaviour")
check.raises("not contiguous", d2r.dataset,
             {env = "line", obs = {{0}, {1}, {2}}, act = {{1}, {1}, {1}},
              reward = {0, 0, 0}, next_obs = {{1}, {2}, {3}},
              terminated = {0, 0, 0}, truncated = {0, 0, 0},
              episode = {0, 1, 0}})

-- planners through the true simulator beat random actions
local cem2 = d2r.cem{env = pend, seed = 3}
local planned = cem2:evaluate{env = pend, episodes = 2, seed = 9}
local random = d2r.random_evaluate(pend, {episodes = 2, seed = 9})
check.ok(planned > random + 100, string.format("CEM %.1f vs random %.1f",
         planned, random))
local act, inf = cem2:act(pend:reset(0), pend)
check.eq(act:numel(), 1, "one torque")
check.eq(inf.model_rows, 100 * 15 * 5, "N x H x iterations model rows")
check.raises("elites must be in 1..population", d2r.cem,
             {env = pend, elites = 1000})
check.raises("unknown option 'horizn'", d2r.cem,
             {env = pend, horizn = 3})
check.raises("finite box", d2r.cem, {low = {-1}, high = {1 / 0}})

-- MuJoCo: the bundled planar runner (when this build has MuJoCo)
if d2r.mujoco_available() then
  local runner = d2r.mujoco_env{model = "data/mujoco/runner.xml",
                                name = "runner", max_steps = 20}
  local rs = runner:spaces()
  check.eq(rs.obs.dim, 17, "runner observations")
  check.eq(rs.act.dim, 6, "runner actions")
  check.eq(runner:kind(), "mujoco", "kind")
  local o0 = runner:reset(1)
  local _, r0 = runner:step(d2r.zeros(6))
  check.eq(type(r0), "number", "default reward")
  -- a Lua reward (batched): stay upright
  local seen = 0
  local upright = d2r.mujoco_env{
    model = "data/mujoco/runner.xml", max_steps = 20,
    reward = function(o, a, n)
      seen = seen + 1
      return n:slice(2, 2, 2):reshape(-1):abs():neg()
    end}
  upright:reset(1)
  local n1, r1 = upright:step(d2r.zeros(6))
  check.near(r1, -math.abs(n1[2]), 1e-12, "the Lua reward")
  check.eq(seen, 1, "called once per step")
  local runs = d2r.collect{env = upright, behaviour = "random",
                           episodes = 2, seed = 3}
  check.eq(runs.size, 40, "two runner episodes")
  local rc = d2r.cem{env = upright, horizon = 3, population = 8,
                     iterations = 1, elites = 2}
  check.eq(rc:act(o0, upright):numel(), 6, "planning through MuJoCo")
  check.raises("cannot load the model", d2r.mujoco_env,
               {model = "/nonexistent.xml"})
else
  check.raises("no MuJoCo", d2r.mujoco_env, {model = "x.xml"})
end

-- Objects a running call holds cannot be closed from its callbacks (they
-- were freed under the engine's feet): a clear error, and the objects
-- still work afterwards.
do
  local e = d2r.env("pendulum", {max_steps = 5})
  check.raises("cannot be closed inside a callback", d2r.collect,
               {env = e, behaviour = function() e:close(); return 0 end})
  check.raises("cannot be closed inside a callback", d2r.run_episode,
               {env = e, policy = function() e:close(); return 0 end})
  local p = d2r.cem{env = e, horizon = 3, population = 10, iterations = 1}
  local other = d2r.env("pendulum", {max_steps = 5})
  check.raises("d2r.Planner cannot be closed", p.evaluate, p,
               {env = e, episodes = 1, model = function(o, a)
                 p:close()
                 return other:predict(o, a)
               end})
  local ds = d2r.collect{env = e, episodes = 2}
  local dyn
  local l = d2r.env_from_lua{
    obs_dim = 3, act_low = {-2}, act_high = {2}, max_steps = 5,
    reset = function() return d2r.zeros(3) end,
    step = function() return d2r.zeros(3), 0, false end,
    reward = function(o)
      dyn:close()
      return d2r.zeros(o:dim(1))
    end}
  dyn = d2r.dynamics{env = l, seed = 1}
  dyn:fit(ds)
  check.raises("d2r.Dynamics cannot be closed", p.evaluate, p,
               {env = l, episodes = 1, model = dyn})
  -- nor can the env a call is running episodes on be reset or stepped
  -- from its callbacks (collect looped forever); another env can
  check.raises("reset: this environment is running the episodes",
               d2r.collect, {env = e, behaviour = function()
                 e:reset(1)
                 return 0
               end})
  check.raises("step: this environment is running the episodes",
               d2r.run_episode, {env = e, policy = function()
                 e:step(d2r.tensor{0})
                 return 0
               end})
  other:reset(2)
  local ds2 = d2r.collect{env = e, episodes = 1, behaviour = function()
    other:step(d2r.tensor{0})
    return 0
  end}
  check.eq(#ds2, 5, "stepping another env from a policy is fine")
  check.eq(#d2r.collect{env = e, episodes = 1}, 5, "the env still works")
  check.ok(p:act(e:reset(1), e), "the planner still works")
  e:close()
  p:close()
  dyn:close()
  check.ok(tostring(e):find("closed"), "closed after the calls")
end

check.done("test_env")
