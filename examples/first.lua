-- A first d2r script: tensors, autodiff, a model, and policy-gradient
-- training of a classifier on iris.  Run it from the repository root:
--   d2r examples/first.lua        (or lua5.4 with LUA_CPATH set)
local d2r = require "d2r"

-- Tensors are dense float64 arrays; arithmetic broadcasts as in NumPy.
local a = d2r.tensor{{1, 2}, {3, 4}}
local b = a * 2 + 1
print(b)
-- Axes count from 1, as everything in Lua: sum over the rows.
print("column sums of a b:", a:matmul(b):sum(1))

-- Autodiff: mark a leaf, compute a scalar, call backward.
local w = d2r.tensor({0.5, -0.5}, {requires_grad = true})
local loss = (a:matmul(w) - d2r.tensor{1, 2}):square():mean()
loss:backward()
print("loss", loss:item(), "gradient", w:grad())

-- Data: the iris table, features standardised, labels 0..2.
local data = assert(d2r.read_csv("data/uci/iris.csv"))
local x = d2r.standardizer(data.X):apply(data.X)
local y = data.y

-- A model: a linear layer gives the logits of a categorical policy
-- over the classes.  Random numbers come from an explicit generator.
local rng = d2r.rng(1)
local policy = d2r.linear(data.features, data.classes, rng)
local optim = d2r.adam(policy, 0.05)

-- One policy-gradient step: draw 8 classes per row from the policy,
-- score them with the one-hot reward (0 when right, -2 when wrong),
-- build the REINFORCE surrogate with a mean baseline and an entropy
-- bonus, back-propagate, update.
local function pg_step()
  local logits = policy(x)
  local samples = d2r.categorical_sample(rng, logits, 8)
  local reward = d2r.onehot_reward(samples, y, data.classes, 1)
  local logp = d2r.categorical_log_prob(logits, samples)
  local entropy = d2r.categorical_entropy(logits)
  local surrogate, info = d2r.pg_surrogate(logp, reward, entropy, 0.01,
                                           {baseline = "mean"})
  optim:zero_grad()
  surrogate:backward()
  optim:step()
  return info
end

for step = 1, 100 do
  local info = pg_step()
  if step % 25 == 0 then
    print(("step %3d  mean reward %.3f  entropy %.3f"):format(step,
          info.reward_mean, info.entropy_mean))
  end
end

-- The policy's most likely class against the labels.
local accuracy = policy(x):argmax(2):eq(y):mean():item()
print(("training accuracy %.3f"):format(accuracy))
assert(accuracy > 0.8, "the policy should have learned iris")
