-- A reward written in Lua, used in the policy-gradient surrogate.
--
-- Toy regression: y = 2 x + 1 + noise, noise ~ N(0, 1).  A Gaussian
-- policy N(w x + c, s^2) draws predictions; a reward scores them.  The
-- built-in Mahalanobis reward -(yhat - y)^2 is symmetric, so the policy
-- learns the mean, c near 1.  The reward written here charges
-- over-prediction twice as much as under-prediction,
--   r(yhat, y) = -(2 max(yhat - y, 0) + max(y - yhat, 0)),
-- so the policy learns to predict low: c settles near the 1/3 quantile
-- of y given x, 1 - 0.43 (the point where over-prediction is a third as
-- likely as under-prediction).  Any Lua function of tensors that maps
-- predictions [B, G, n] and targets [B, n] to rewards [B, G] plugs in
-- the same way; the PG surrogate never differentiates it.
local d2r = require "d2r"

local rng = d2r.rng(3)
local N, G = 256, 16

-- The data.
local x = rng:randn(N, 1)
local y = x * 2 + 1 + rng:randn(N, 1)

-- The reward in Lua: yhat [B, G, 1] against y [B, 1] gives [B, G].
local function asymmetric_reward(yhat, target)
  local err = yhat - target:unsqueeze(2)        -- [B, G, 1]
  local over, under = err:relu(), (-err):relu()
  return -(over * 2 + under):sum(3)
end

local function builtin_reward(yhat, target)
  return d2r.mahalanobis_reward(yhat, target, 1)
end

-- Trains a linear Gaussian policy with the given reward; returns its
-- slope and intercept.
local function train(reward_fn)
  local mean_net = d2r.linear(1, 1, d2r.rng(1))
  local log_std = d2r.tensor({0}, {requires_grad = true})
  local params = mean_net:parameters()
  params[#params + 1] = log_std
  local optim = d2r.adam(params, 0.03)
  for _ = 1, 600 do
    local mean = mean_net(x)                                -- [N, 1]
    local yhat = d2r.gaussian_sample(rng, mean, log_std, G)   -- [N, G, 1]
    local logp = d2r.gaussian_log_prob(mean, log_std, yhat, "sum")
    local entropy = d2r.gaussian_entropy(log_std, "sum")
    local loss = d2r.pg_surrogate(logp, reward_fn(yhat, y), entropy, 0.05,
                                  {baseline = "mean"})
    optim:zero_grad()
    loss:backward()
    optim:step()
  end
  local w, c = mean_net:parameters()[1], mean_net:parameters()[2]
  return w:item(), c:item(), log_std:exp():item()
end

local w1, c1, s1 = train(builtin_reward)
print(("Mahalanobis reward:  y = %.2f x + %.2f  (policy std %.2f)")
      :format(w1, c1, s1))
local w2, c2, s2 = train(asymmetric_reward)
print(("asymmetric reward:   y = %.2f x + %.2f  (policy std %.2f)")
      :format(w2, c2, s2))

assert(math.abs(w1 - 2) < 0.3 and math.abs(c1 - 1) < 0.3,
       "the symmetric reward recovers the line")
assert(c2 < c1 - 0.2, "the asymmetric reward predicts low")
