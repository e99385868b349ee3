-- An environment written in Lua, used wherever a built-in one is.
--
-- A cart on a rail: the state is its position and velocity (x, v), the
-- action a force in [-1, 1], and each step of dt = 0.1 costs
-- x^2 + 0.1 a^2 (the reward is minus that).  It starts at rest at a
-- random x in [-2, 2] and should come to rest at 0.  The environment is
-- a table of Lua functions: reset(seed) and step(action) for episodes,
-- and predict(obs, act) on batches, which lets a planner use the
-- environment as its own model.  Random actions, a hand-written
-- controller (run by d2r.run_episode) and the CEM planner are compared.
local d2r = require "d2r"

local DT = 0.1

-- One step of the dynamics and its reward, on batches of tensors:
-- obs [N, 2], act [N, 1] give next obs [N, 2] and rewards [N].
local function dynamics(obs, act)
  local x, v = obs:slice(2, 1, 1), obs:slice(2, 2, 2)
  local v2 = v + act * DT
  local x2 = x + v2 * DT
  local reward = -(x2:square() + act:square() * 0.1):sum(2)
  return d2r.cat({x2, v2}, 2), reward
end

local function cart()
  local state                        -- a [1, 2] tensor between steps
  return d2r.env_from_lua{
    name = "cart",
    obs_low = {-10, -10}, obs_high = {10, 10},
    act_low = {-1}, act_high = {1},
    max_steps = 60,
    reset = function(seed)
      state = d2r.tensor{{d2r.rng(seed):uniform(-2, 2), 0}}
      return state[1]
    end,
    step = function(action)           -- action: a [1] tensor, clipped
      local reward
      state, reward = dynamics(state, action:reshape(1, 1))
      return state[1], reward[1], false
    end,
    predict = function(obs, act)
      local next_obs, reward = dynamics(obs, act)
      return next_obs, reward, d2r.zeros(obs:dim(1))
    end,
  }
end

local env = cart()
print(env)

-- Random actions, as a baseline.
local random = d2r.random_evaluate(env, {episodes = 5, seed = 1})

-- A proportional-derivative controller written as a Lua policy.
local function pd(obs)
  local force = -1.5 * obs[1] - 2.0 * obs[2]
  return {math.max(-1, math.min(1, force))}
end
local total = 0
for seed = 1, 5 do
  total = total + d2r.run_episode{env = env, policy = pd, seed = seed}.ret
end
local controller = total / 5

-- The CEM planner, using the environment's predict as its model.
local cem = d2r.cem{env = env, horizon = 15, population = 200,
                    iterations = 4, elites = 20, seed = 2}
local planned = cem:evaluate{env = env, episodes = 5, seed = 1}

print(("mean return over 5 episodes: random %.2f, controller %.2f, " ..
       "CEM %.2f"):format(random, controller, planned))
assert(controller > random and planned > random,
       "steering beats random actions")
