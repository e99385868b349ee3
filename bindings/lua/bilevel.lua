-- Learning the reward from data (METHOD.md, "Solvers for the outer
-- problem"): learnable rewards (d2r.reward_param), the problem a solver
-- works on (d2r.solvers.pg_problem, or any table with the same methods),
-- the building blocks of bilevel loops (inner training, unrolling,
-- implicit hypergradients, outer updates) and three solvers made of them:
-- plug-in closed forms, implicit differentiation and unrolled
-- differentiation.  The solvers are short on purpose: they are also the
-- worked example of writing one's own loop from the same primitives.
-- Runs inside the d2r module: `...` is the module table.
local d2r = ...

local exp, log, sqrt = math.exp, math.log, math.sqrt

local function fail(msg, level)
  error(msg, (level or 1) + 1)
end

-- Checks an option table against the known names and fills defaults.
local function options(fn, o, defaults)
  o = o or {}
  if type(o) ~= "table" then fail(fn .. ": options must be a table", 3) end
  for k in pairs(o) do
    if defaults[k] == nil then
      fail(("%s: unknown option '%s'"):format(fn, tostring(k)), 3)
    end
  end
  local out = {}
  for k, v in pairs(defaults) do
    if o[k] == nil then out[k] = v else out[k] = o[k] end
  end
  return out
end

-- A value no option may leave unset ("required") and one that may be
-- nil ("optional"), as defaults.
local REQUIRED, OPTIONAL = {}, {}

local function require_opts(fn, o, names)
  for _, k in ipairs(names) do
    if o[k] == REQUIRED then
      fail(("%s: option '%s' is required"):format(fn, k), 3)
    end
  end
  for k, v in pairs(o) do
    if v == OPTIONAL then o[k] = nil end
  end
end

-- ---- learnable rewards --------------------------------------------------

-- softplus^-1(u) = log(e^u - 1), for u > 0.
local function inv_softplus(u)
  if not (u > 0) then
    fail(("reward_param: %g is not positive (softplus values are)")
         :format(u), 4)
  end
  if u > 30 then return u end
  if u < 1e-6 then return log(u) end
  return log(exp(u) - 1)
end

-- The lower Cholesky factor of a symmetric positive definite matrix
-- given as a table of rows (plain numbers: used to set a full reward).
local function cholesky(A)
  local n, L = #A, {}
  for i = 1, n do
    L[i] = {}
    for j = 1, n do L[i][j] = 0 end
  end
  for j = 1, n do
    local s = A[j][j]
    for k = 1, j - 1 do s = s - L[j][k] ^ 2 end
    if not (s > 0) then
      fail("reward_param: U is not positive definite", 4)
    end
    L[j][j] = sqrt(s)
    for i = j + 1, n do
      local t = A[i][j]
      for k = 1, j - 1 do t = t - L[i][k] * L[j][k] end
      L[i][j] = t / L[j][j]
    end
  end
  return L
end

local function as_list(v)
  if d2r.is_tensor(v) then v = v:tolist() end
  if type(v) == "number" then return {v} end
  return v
end

-- The methods of a reward (d2r.Reward, for the documentation) and its
-- metatable.
local Reward = {}
d2r.Reward = Reward
local RewardMT = {__index = Reward}

local REWARD_KINDS = {scalar = true, diagonal = true, full = true,
                      network = true}

--- d2r.reward_param{kind =, n =, init =, softplus = true, ...}: a
--- learnable reward.
---   kind "scalar":   U = u I, phi = one number; u = softplus(phi) when
---                    softplus is set (the default), else u = phi.
---   kind "diagonal": U = diag(u), phi [n], each entry as for scalar.
---   kind "full":     U = L L^T with L lower triangular, phi [n, n] (its
---                    upper triangle is unused); L's diagonal is
---                    softplus(phi_ii), so U is positive definite by
---                    construction (softplus = false: phi_ii as is, U
---                    positive semi-definite).
---   kind "network":  r(yhat, y) = -softplus(f(z)) with f an MLP (hidden,
---                    activation = "tanh", rng) and z = yhat - y
---                    (input = "diff", the default) or [yhat, y]
---                    (input = "concat"); output = "linear" uses f(z)
---                    itself.  It has no matrix U.
--- init: a number (U = init I, the default 1), a list or [n] tensor (a
--- diagonal) or an [n, n] matrix (kind full); networks start from rng.
function d2r.reward_param(o)
  o = options("reward_param", o, {
    kind = "scalar", n = 1, init = 1, softplus = true, hidden = {16},
    activation = "tanh", input = "diff", output = "softplus",
    rng = OPTIONAL})
  require_opts("reward_param", o, {})
  if not REWARD_KINDS[o.kind] then
    fail(("reward_param: kind must be scalar, diagonal, full or network, "
          .. "got '%s'"):format(tostring(o.kind)), 2)
  end
  if math.type(o.n) ~= "integer" or o.n < 1 then
    fail("reward_param: n must be a positive integer", 2)
  end
  local r = setmetatable({kind_ = o.kind, n_ = o.n, softplus_ = o.softplus},
                         RewardMT)
  if o.kind == "network" then
    if o.input ~= "diff" and o.input ~= "concat" then
      fail("reward_param: input must be \"diff\" or \"concat\"", 2)
    end
    if o.output ~= "softplus" and o.output ~= "linear" then
      fail("reward_param: output must be \"softplus\" or \"linear\"", 2)
    end
    r.input_, r.output_ = o.input, o.output
    local fan_in = o.input == "diff" and o.n or 2 * o.n
    r.net_ = d2r.mlp(fan_in, o.hidden, 1, o.rng or d2r.rng(0),
                     o.activation)
    r.phi_ = r.net_:parameters()
    return r
  end
  local shape = ({scalar = {}, diagonal = {o.n}, full = {o.n, o.n}})[o.kind]
  r.raw_ = d2r.zeros(shape):requires_grad(true)
  r.phi_ = {r.raw_}
  if o.kind == "full" then
    local lower = {}
    for i = 1, o.n do
      lower[i] = {}
      for j = 1, o.n do lower[i][j] = j < i and 1 or 0 end
    end
    r.lower_ = d2r.tensor(lower)
    r.eye_ = d2r.eye(o.n)
  end
  r:set(o.init)
  return r
end

--- r:kind(), r:size(): the kind and n.
function Reward:kind() return self.kind_ end
function Reward:size() return self.n_ end
function RewardMT.__tostring(r)
  return ("d2r.Reward(%s, n = %d)"):format(r.kind_, r.n_)
end

--- r:parameters(): the list of leaf tensors phi (what an outer optimiser
--- updates and a hypergradient is taken over).
function Reward:parameters() return self.phi_ end

--- r:U(): U as a differentiable tensor: 0-d (scalar), [n] (diagonal) or
--- [n, n] (full).  Networks have none.
function Reward:U()
  local k = self.kind_
  if k == "network" then
    fail("reward:U(): a network reward has no matrix U", 2)
  end
  local pos = self.softplus_ and self.raw_:softplus() or self.raw_
  if k ~= "full" then return pos end
  local diag = (self.raw_ * self.eye_):sum(2)
  if self.softplus_ then diag = diag:softplus() end
  local L = self.raw_ * self.lower_ + self.eye_ * diag
  return L:matmul(L:t())
end

--- r:set(v): sets U (inverting the parametrisation): a number (u I), a
--- list or [n] tensor (diagonal), an [n, n] table or tensor (full).
--- Networks take a flat parameter vector.
function Reward:set(v)
  local k, n = self.kind_, self.n_
  if k == "network" then
    d2r.params_assign_flat(self.phi_, v)
    return self
  end
  local pos = self.softplus_ and inv_softplus or function(x) return x end
  local raw
  if k == "scalar" then
    local u = as_list(v)
    if #u ~= 1 or type(u[1]) ~= "number" then
      fail("reward:set: a scalar reward takes one number", 2)
    end
    raw = d2r.scalar(pos(u[1]))
  elseif k == "diagonal" then
    local u = as_list(v)
    if #u == 1 then
      local x = u[1]
      u = {}
      for i = 1, n do u[i] = x end
    end
    if #u ~= n then
      fail(("reward:set: %d values for a diagonal of %d"):format(#u, n), 2)
    end
    local vals = {}
    for i = 1, n do vals[i] = pos(u[i]) end
    raw = d2r.tensor(vals)
  else
    local A = as_list(v)
    if type(A[1]) == "number" then
      if #A ~= 1 then
        fail("reward:set: a full reward takes a number or an n x n "
             .. "matrix", 2)
      end
      local x = A[1]
      A = {}
      for i = 1, n do
        A[i] = {}
        for j = 1, n do A[i][j] = i == j and x or 0 end
      end
    end
    if #A ~= n then
      fail(("reward:set: a %d x ? matrix for n = %d"):format(#A, n), 2)
    end
    local L = cholesky(A)
    for i = 1, n do L[i][i] = pos(L[i][i]) end
    raw = d2r.tensor(L)
  end
  self.raw_:copy_(raw)
  return self
end

--- r:values(): U's entries as plain numbers (scalar: {u}; diagonal:
--- {u1..un}; full: row by row), and their names (u; u1..; U11, U12, ..).
--- Networks: empty lists.
function Reward:values()
  if self.kind_ == "network" then return {}, {} end
  local U = d2r.no_grad(function() return self:U() end)
  local vals, names = {}, {}
  if self.kind_ == "scalar" then
    return {U:item()}, {"u"}
  elseif self.kind_ == "diagonal" then
    for i = 1, self.n_ do
      vals[i] = U[i]
      names[i] = "u" .. i
    end
  else
    for i = 1, self.n_ do
      for j = 1, self.n_ do
        vals[#vals + 1] = U[{i, j}]
        names[#names + 1] = ("U%d%d"):format(i, j)
      end
    end
  end
  return vals, names
end

--- r:flat(): phi as one flat tensor (a copy); r:assign(flat) sets it.
function Reward:flat() return d2r.params_flatten(self.phi_) end
function Reward:assign(flat)
  d2r.params_assign_flat(self.phi_, flat)
  return self
end

--- r:u_grad(g): for scalar and diagonal rewards, turns a gradient over
--- phi (a list or flat tensor) into one over u (dividing by softplus'
--- when used); nil for the other kinds.
function Reward:u_grad(g)
  if self.kind_ ~= "scalar" and self.kind_ ~= "diagonal" then return nil end
  g = as_list(g)
  if not self.softplus_ then return g end
  local s = as_list(self.raw_:detach():sigmoid())
  local out = {}
  for i = 1, #g do out[i] = g[i] / s[i] end
  return out
end

-- The network's reward of yhat [..., n] against y (broadcast to it).
local function net_reward(self, yhat, y)
  local z
  if self.input_ == "diff" then
    z = yhat - y
  else
    z = d2r.cat({yhat, y:expand(table.unpack(yhat:shape()))}, yhat:ndim())
  end
  local f = self.net_(z)
  f = f:squeeze(f:ndim())
  if self.output_ == "softplus" then return -f:softplus() end
  return f
end

--- r:reward(yhat, y): the reward of yhat [B, G, n] against y [B, n]
--- ([B, G]; or yhat [B, n] -> [B]), differentiable in phi.
function Reward:reward(yhat, y)
  if self.kind_ == "network" then
    if yhat:ndim() > y:ndim() then y = y:unsqueeze(2) end
    return net_reward(self, yhat, y)
  end
  return d2r.mahalanobis_reward(yhat, y, self:U())
end

--- r:onehot_reward(samples, labels, classes): the reward on one-hot
--- vectors of class indices, samples [B, G] against labels [B] -> [B, G].
function Reward:onehot_reward(samples, labels, classes)
  if self.kind_ == "network" then
    return net_reward(self, samples:one_hot(classes),
                      labels:one_hot(classes):unsqueeze(2))
  end
  return d2r.onehot_reward(samples, labels, classes, self:U())
end

-- ---- the problem a solver works on --------------------------------------

local solvers = {}
d2r.solvers = solvers

local Problem = {}
d2r.Problem = Problem
local ProblemMT = {__index = Problem}

--- d2r.solvers.pg_problem{policy =, reward =, train = {X =, Y =},
--- val = {X =, Y =}, test =, lambda = 1, G = 5, transform = "none",
--- baseline = "none", estimator = "score", classes =, batch =, seed = 0}:
--- the bilevel problem of METHOD.md for a policy and a learnable reward.
---   policy:  a policy object, or a function(rng) building one (needed
---            for inner_init = "fresh"); seed seeds that generator.
---   train, val, test: inputs X [B, d] and targets Y ([B, n] vectors, or
---            [B] class indices when classes is set: one-hot rewards and
---            a categorical policy).  Several targets per input: repeat
---            the input's row.
---   estimator: "score" (the REINFORCE surrogate L_PG, with transform
---            and baseline), "dice" (the same gradient, with a Hessian
---            that estimates the expected objective's: see inner_loss)
---            or "pathwise" (reparameterised samples, Gaussian
---            policies).  The score surrogate's Hessian is not the
---            objective's: with rewards <= 0 it is negative along the
---            mean, so CG stops at once (reported as not converged).
---   batch:   inner losses on random batches of that many training rows
---            (nil: the full training set).
--- Any table with the methods init, inner_loss and outer_loss and a
--- field reward can stand in for it (see those methods below).
function solvers.pg_problem(o)
  o = options("pg_problem", o, {
    policy = REQUIRED, reward = REQUIRED, train = REQUIRED, val = OPTIONAL,
    test = OPTIONAL, lambda = 1, G = 5, transform = "none",
    baseline = "none", estimator = "score", classes = OPTIONAL,
    batch = OPTIONAL, seed = 0})
  require_opts("pg_problem", o, {"policy", "reward", "train"})
  if o.estimator ~= "score" and o.estimator ~= "dice"
     and o.estimator ~= "pathwise" then
    fail("pg_problem: estimator must be \"score\", \"dice\" or "
         .. "\"pathwise\"", 2)
  end
  local P = setmetatable({}, ProblemMT)
  for k, v in pairs(o) do P[k] = v end
  P.init_rng = d2r.rng(o.seed)
  if type(o.policy) == "function" then
    P.make_policy = o.policy
    P.policy = o.policy(P.init_rng)
  end
  P.init_flat = d2r.params_flatten(P.policy:parameters())
  P.theta = P.policy:parameters()
  return P
end

--- P:init(mode): the inner parameters theta (a list of leaf tensors) to
--- start an outer step from: "reinit" puts back the initial values (the
--- same every outer step), "fresh" draws a new initialisation (a policy
--- built by the constructor), "warm" keeps the current values.
function Problem:init(mode)
  if mode == "reinit" then
    d2r.params_assign_flat(self.theta, self.init_flat)
  elseif mode == "fresh" then
    if not self.make_policy then
      fail("pg_problem: inner_init = \"fresh\" needs a policy constructor",
           2)
    end
    self.policy = self.make_policy(self.init_rng)
    self.theta = self.policy:parameters()
  elseif mode ~= "warm" then
    fail(("inner_init must be \"reinit\", \"fresh\" or \"warm\", got '%s'")
         :format(tostring(mode)), 2)
  end
  return self.theta
end

-- The rows an inner loss uses: all, or a random batch.
local function inner_rows(self, rng)
  local tr = self.train
  if not self.batch or self.batch >= #tr.X then return tr.X, tr.Y end
  local order = d2r.batch_order(rng, #tr.X)
  return d2r.batch_rows(tr.X, order, 1, self.batch),
         d2r.batch_rows(tr.Y, order, 1, self.batch)
end

--- P:inner_loss(theta, rng): the inner objective at parameters theta (a
--- list shaped as the policy's, leaves or not), with G fresh samples per
--- input from rng, keeping the reward's graph to phi.  Returns the 0-d
--- loss and {reward_mean =, transformed_mean =, entropy_mean =}.
function Problem:inner_loss(theta, rng)
  local X, Y = inner_rows(self, rng)
  local dist = self.policy:dist(X, theta)
  if self.estimator == "pathwise" then
    -- The reward (a sum over the n dimensions) is divided by n, as the
    -- per-dimension entropy is: both terms scaled alike, or the optimum
    -- moves to U* / n.
    local yh = dist:rsample(self.G, rng)
    local r = self.reward:reward(yh, Y)
    local loss, stats = d2r.pathwise_surrogate(r / yh:dim(yh:ndim()),
                                               dist:entropy(), self.lambda)
    stats.reward_mean = r:mean():item()
    return loss, stats
  end
  local yh = dist:sample(self.G, rng)
  local r
  if self.classes then
    r = self.reward:onehot_reward(yh, Y, self.classes)
  else
    r = self.reward:reward(yh, Y)
  end
  local pg = {transform = self.transform, baseline = self.baseline,
              reward_grad = true}
  if self.estimator == "score" then
    return d2r.pg_surrogate(dist:log_prob(yh), r, dist:entropy(),
                            self.lambda, pg)
  end
  -- "dice": -mean(rt exp(log p - stop(log p))) / n - lambda mean(H).
  -- Its gradient is the score surrogate's; its Hessian in theta, unlike
  -- that one's, estimates the Hessian of the expected objective (the
  -- score outer-product term is kept), which is what implicit
  -- differentiation needs.  log p is summed over the n output dimensions
  -- and the result divided by n, so both terms keep the per-dimension
  -- scale of the reference convention.
  local rt = d2r.pg_transform(r, pg)
  local lp = self.classes and dist:log_prob(yh) or dist:log_prob(yh, "sum")
  local n = self.classes and 1 or yh:dim(yh:ndim())
  local h = dist:entropy()
  local loss = -(rt * (lp - lp:detach()):exp()):mean() / n
               - h:mean() * self.lambda
  return loss, {reward_mean = r:mean():item(),
                transformed_mean = rt:mean():item(),
                entropy_mean = h:mean():item()}
end

--- P:outer_loss(theta, split): the outer loss F, the data's NLL (per
--- output dimension for Gaussian policies, the cross-entropy for
--- categorical ones) under the policy at theta; split is "train"
--- (default), "val" or "test".
function Problem:outer_loss(theta, split)
  local data = self[split or "train"]
  if not data then fail(("outer_loss: no '%s' split"):format(split), 2) end
  local dist = self.policy:dist(data.X, theta)
  local Y = data.Y
  if self.classes then
    Y = Y:reshape(Y:numel(), 1)
  else
    Y = Y:unsqueeze(2)
  end
  return -dist:log_prob(Y):mean()
end

-- ---- building blocks ----------------------------------------------------

-- The value of a loss function (no graph kept), or NaN without the split.
local function value_of(problem, theta, split)
  if split ~= "train" and not problem[split] then return 0 / 0 end
  return d2r.no_grad(function()
    return problem:outer_loss(theta, split):item()
  end)
end
solvers.value_of = value_of

--- d2r.solvers.set_grad(params, flat): makes flat (a [Q] tensor laid out
--- as d2r.flatten(params)) the gradient of the list params, replacing
--- what was there, so an ordinary optimiser can step with it.
function solvers.set_grad(params, flat)
  d2r.params_zero_grad(params)
  local s = (d2r.flatten(params) * flat:detach()):sum()
  s:backward()
end

local function make_optim(name, params, lr)
  if name == "adam" then return d2r.adam(params, {lr = lr}) end
  if name == "sgd" then return d2r.sgd(params, {lr = lr}) end
  fail(("optimiser must be \"adam\" or \"sgd\", got '%s'")
       :format(tostring(name)), 3)
end

--- d2r.solvers.inner_fit(problem, theta, {steps =, optim = "adam", lr =,
--- clip = 1, rng =, optimizer =}): steps optimiser steps on the inner
--- loss over theta, each gradient clamped to [-clip, clip] (clip false
--- or 0: none).  optimizer: an existing optimiser over theta to continue
--- (a new one otherwise).  Returns the curves {loss = {...}, reward =
--- {...}} (one value per step, before it) and the optimiser.
function solvers.inner_fit(problem, theta, o)
  local opt = o.optimizer or make_optim(o.optim or "adam", theta, o.lr)
  local curve = {loss = {}, reward = {}}
  for k = 1, o.steps do
    local loss, stats = problem:inner_loss(theta, o.rng)
    opt:zero_grad()
    loss:backward()
    if o.clip and o.clip > 0 then d2r.clip_grad_value(theta, o.clip) end
    opt:step()
    curve.loss[k] = loss:item()
    curve.reward[k] = stats and stats.reward_mean or 0 / 0
  end
  return curve, opt
end

-- One functional optimiser step: new tensors from ths and grads g (the
-- graph kept through both).  state holds Adam's moments.
local function functional_step(name, ths, g, state, lr)
  local out = {}
  if name == "sgd" then
    for i = 1, #ths do out[i] = ths[i] - g[i] * lr end
    return out
  end
  local b1, b2, eps = 0.9, 0.999, 1e-8
  state.t = (state.t or 0) + 1
  state.m, state.v = state.m or {}, state.v or {}
  local c1, c2 = 1 - b1 ^ state.t, 1 - b2 ^ state.t
  for i = 1, #ths do
    local m = g[i] * (1 - b1)
    local v = g[i] * g[i] * (1 - b2)
    if state.m[i] then
      m = state.m[i] * b1 + m
      v = state.v[i] * b2 + v
    end
    state.m[i], state.v[i] = m, v
    -- The tiny shift keeps the derivative of sqrt finite where v is 0
    -- (a parameter without gradient); it changes no value that matters.
    local denom = ((v / c2) + 1e-30):sqrt() + eps
    out[i] = ths[i] - (m / c1) / denom * lr
  end
  return out
end

local function detached_leaves(ts)
  local out = {}
  for i, t in ipairs(ts) do out[i] = t:detach():requires_grad(true) end
  return out
end

--- d2r.solvers.unroll(problem, theta, {steps =, optim = "adam", lr =,
--- clip = 1, truncate = 0, rng =, measure = false}): runs steps
--- functional optimiser steps from theta (leaves, left unchanged)
--- keeping the graph of the last truncate steps (0: all), then
--- differentiates the training outer loss through them.  Returns the
--- hypergradient over problem.reward's phi (a flat tensor), the final
--- parameters (plain tensors), the curves, and {seconds =, live_bytes =}:
--- the CPU time of the unrolling and the backward pass, and with measure
--- set the engine bytes alive with the whole graph built (a garbage
--- collection first, not counted in seconds).
function solvers.unroll(problem, theta, o)
  local steps, trunc = o.steps, o.truncate or 0
  local name, lr, clip = o.optim or "adam", o.lr, o.clip
  if name ~= "adam" and name ~= "sgd" then
    fail(("unroll: optim must be \"adam\" or \"sgd\", got '%s'")
         :format(tostring(name)), 2)
  end
  local phi = problem.reward:parameters()
  local ths, state = theta, {}
  local curve = {loss = {}, reward = {}}
  local t0 = os.clock()
  local keep_from = (trunc > 0 and trunc < steps) and steps - trunc + 1 or 1
  if keep_from > 1 then ths = detached_leaves(theta) end
  for k = 1, steps do
    local keep = k >= keep_from
    if k == keep_from and keep_from > 1 then
      -- The graph starts here: the state so far becomes constant.
      ths = detached_leaves(ths)
      for i = 1, #ths do
        if state.m then
          state.m[i] = state.m[i]:detach()
          state.v[i] = state.v[i]:detach()
        end
      end
    end
    local loss, stats = problem:inner_loss(ths, o.rng)
    local g = d2r.grad(loss, ths, {create_graph = keep, allow_unused = true})
    if clip and clip > 0 then
      for i = 1, #g do g[i] = g[i]:clamp(-clip, clip) end
    end
    local nxt = functional_step(name, ths, g, state, lr)
    if not keep then
      nxt = detached_leaves(nxt)
      if state.m then
        for i = 1, #nxt do
          state.m[i], state.v[i] = state.m[i]:detach(), state.v[i]:detach()
        end
      end
    end
    ths = nxt
    curve.loss[k] = loss:item()
    curve.reward[k] = stats and stats.reward_mean or 0 / 0
  end
  local F = problem:outer_loss(ths, "train")
  local info = {}
  if o.measure then
    local t1 = os.clock()
    collectgarbage()
    info.live_bytes = d2r.live_bytes()
    t0 = t0 + (os.clock() - t1)
  end
  local hg = d2r.flatten(d2r.grad(F, phi, {allow_unused = true}))
  local final = {}
  for i = 1, #ths do final[i] = ths[i]:detach() end
  info.seconds = os.clock() - t0
  return hg, final, curve, info
end

--- d2r.solvers.implicit_step(problem, theta, {solver = "cg", max_iter =,
--- tol =, ridge =, alpha =, w0 =, rng =}): the implicit-function-theorem
--- hypergradient at theta (taken as an inner optimum) through
--- d2r.implicit_hypergrad, with one fresh draw of samples for the inner
--- loss.  Returns the hypergradient (flat over phi), w, and the solve's
--- diagnostics {residual =, iterations =, converged =, solver =}.
function solvers.implicit_step(problem, theta, o)
  return d2r.implicit_hypergrad{
    theta = theta, phi = problem.reward:parameters(),
    inner = function() return (problem:inner_loss(theta, o.rng)) end,
    outer = function() return problem:outer_loss(theta, "train") end,
    solver = o.solver, tol = o.tol, max_iter = o.max_iter,
    ridge = o.ridge, alpha = o.alpha, w0 = o.w0}
end

-- ---- the solvers --------------------------------------------------------

-- Presets: "paper" follows the reference implementation (METHOD.md):
-- inner gradients clamped to [-1, 1], outer ones to [-10, 10], one CG
-- iteration, the policy re-initialised every outer step.  "accurate"
-- solves the linear system to a tolerance and warm-starts it.
local PRESETS = {
  paper = {inner_clip = 1, outer_clip = 10, inner_init = "reinit",
           linsolve = {solver = "cg", max_iter = 1, tol = 1e-10,
                       ridge = 0}},
  accurate = {inner_clip = 1, outer_clip = 10, inner_init = "reinit",
              linsolve = {solver = "cg", max_iter = 100, tol = 1e-6,
                          ridge = 0}, warm_solve = true},
}

local SOLVER_DEFAULTS = {
  problem = REQUIRED, preset = "paper", outer_steps = 100,
  inner_steps = 50, inner_optim = "adam", inner_lr = 1e-2,
  inner_clip = OPTIONAL, inner_init = OPTIONAL, outer_optim = "adam",
  outer_lr = 1e-2, outer_clip = OPTIONAL, linsolve = OPTIONAL,
  warm_solve = OPTIONAL, truncate = 0, early_stop = false,
  plateau = false, on_unconverged = "use", noise_seed = 1,
  on_step = OPTIONAL, csv = OPTIONAL, kind = OPTIONAL, targets = OPTIONAL,
}

local Solver = {}
d2r.Solver = Solver
local SolverMT = {__index = Solver}

local function new_solver(method, fn, o)
  o = options(fn, o, SOLVER_DEFAULTS)
  require_opts(fn, o, {"problem"})
  local preset = PRESETS[o.preset]
  if not preset then
    fail(("%s: preset must be \"paper\" or \"accurate\", got '%s'")
         :format(fn, tostring(o.preset)), 3)
  end
  for k, v in pairs(preset) do
    if o[k] == nil then o[k] = v end
  end
  if o.warm_solve == nil then o.warm_solve = false end
  local lin = {}
  for k, v in pairs(preset.linsolve) do lin[k] = v end
  for k, v in pairs(o.linsolve or {}) do lin[k] = v end
  o.linsolve = lin
  local uc = o.on_unconverged
  if uc ~= "use" and uc ~= "skip" and uc ~= "error" then
    fail(fn .. ": on_unconverged must be \"use\", \"skip\" or \"error\"", 3)
  end
  local s = setmetatable({method = method, o = o, problem = o.problem,
                          reward = o.problem.reward, step_count = 0,
                          records = {}, finished = false}, SolverMT)
  s.rng = d2r.rng(o.noise_seed)
  if method ~= "plugin" then
    s.outer_opt = make_optim(o.outer_optim, s.reward:parameters(),
                             o.outer_lr)
  end
  if o.early_stop then
    if not o.problem.val then
      fail(fn .. ": early_stop needs a validation split", 3)
    end
    local es = o.early_stop == true and {} or o.early_stop
    s.stopper = d2r.early_stop{patience = es.patience or 10,
                               min_delta = es.min_delta or 0,
                               keep_best = true}
  end
  if o.plateau then
    s.schedule = d2r.plateau(o.plateau == true and {} or o.plateau)
  end
  if o.csv then s.writer = solvers.csv_writer(s, o.csv) end
  return s
end

--- d2r.solvers.implicit{problem =, ...}, d2r.solvers.unrolled{...} and
--- d2r.solvers.plugin{...}: a solver; s:step() runs one outer step and
--- returns its record (nil once finished), s:run() runs them all.
--- Options (defaults from preset = "paper" where marked *):
---   outer_steps (100), inner_steps K (50),
---   inner_optim "adam" | "sgd", inner_lr (1e-2), inner_clip* (1),
---   inner_init* "reinit" | "fresh" | "warm",
---   outer_optim "adam" | "sgd", outer_lr (1e-2), outer_clip* (10),
---   linsolve* ({solver = "cg", max_iter = 1, tol, ridge, alpha}),
---   warm_solve (start each solve from the last solution; false),
---   on_unconverged: "use" (step with the solve's iterate, the default;
---     the record says it did not converge), "skip" (no outer update
---     that step) or "error",
---   truncate (unrolled: back-propagate through the last k steps; 0 all),
---   early_stop (false, true or {patience = 10, min_delta = 0}): on the
---     validation NLL, restoring the best reward when the run ends,
---   plateau (false, true or the options of d2r.plateau): the outer
---     learning rate, on the validation NLL,
---   noise_seed (1): the generator of samples and batches,
---   on_step (function(record)), csv ({outer = path, inner = path,
---     fields = {column = value}}: see d2r.solvers.csv_writer),
---   plugin only: kind ("isotropic", "diagonal", "full", "onehot"; from
---     the reward's kind by default) and targets (the rows the closed
---     form is computed from; the training targets by default).
function solvers.implicit(o) return new_solver("implicit", "implicit", o) end
function solvers.unrolled(o) return new_solver("unrolled", "unrolled", o) end
function solvers.plugin(o)
  o = o or {}
  if o.outer_steps == nil then
    local c = {}
    for k, v in pairs(o) do c[k] = v end
    c.outer_steps = 1
    o = c
  end
  return new_solver("plugin", "plugin", o)
end

-- Sets the reward of a plug-in solver to the closed form of METHOD.md.
local function plugin_reward(s)
  local P, o = s.problem, s.o
  local kind = o.kind or ({scalar = P.classes and "onehot" or "isotropic",
                           diagonal = "diagonal", full = "full"})
                          [s.reward:kind()]
  local Y = o.targets or P.train.Y
  local U
  if kind == "isotropic" then
    U = d2r.reward_isotropic(Y, P.lambda)
  elseif kind == "diagonal" then
    U = d2r.reward_diagonal(Y, P.lambda)
  elseif kind == "full" then
    U = d2r.reward_full(Y, P.lambda)
  elseif kind == "onehot" then
    U = d2r.reward_onehot_beta(Y, P.classes, P.lambda)
  else
    fail(("plugin: no closed form '%s' for a %s reward"):format(
      tostring(kind), s.reward:kind()), 3)
  end
  s.reward:set(U)
end

local function flat_list(t)
  if t == nil then return {} end
  return t:tolist()
end

local function norm(list)
  local s = 0
  for _, x in ipairs(list) do s = s + x * x end
  return sqrt(s)
end

-- At the end of a run: roll back to the best reward under early stopping.
local function finish(self, rec)
  rec.stopped_early = self.stopper and self.stopper:should_stop() or false
  if self.stopper and self.stopper:best_params() then
    self.stopper:restore(self.reward:parameters())
    rec.best_step = select(2, self.stopper:best())
  end
end

--- s:step(): one outer step: K inner steps from the start inner_init
--- says, the hypergradient (implicit or unrolled; none for plug-in), the
--- training and validation NLL at the trained inner parameters (before
--- the reward moves), early stopping and the schedule, then the outer
--- update.  Returns the record:
---   {step, phi = {...}, U = {...} (the reward used this step),
---    U_names = {...}, U_next = {...} (after the update), hypergrad = {...},
---    hypergrad_u = {...} (scalar/diagonal), hypergrad_norm,
---    inner_loss = {...}, inner_reward = {...} (per inner step),
---    solve = {residual, iterations, converged, solver} (implicit),
---    train_nll, val_nll, lr (of this step's update), updated, seconds,
---    live_bytes, final}; live_bytes: for unrolled, the engine bytes
---    alive with the whole graph built, else those alive after the step
---    (uncollected garbage included).
function Solver:step()
  if self.finished then return nil end
  local o, P, R = self.o, self.problem, self.reward
  local t0 = os.clock()
  self.step_count = self.step_count + 1
  if self.method == "plugin" and self.step_count == 1 then
    plugin_reward(self)
  end
  local rec = {step = self.step_count, phi = flat_list(R:flat())}
  rec.U, rec.U_names = R:values()
  local theta = P:init(o.inner_init)
  local hg, curve
  if self.method == "unrolled" then
    local final, info
    hg, final, curve, info = solvers.unroll(P, theta, {
      steps = o.inner_steps, optim = o.inner_optim, lr = o.inner_lr,
      clip = o.inner_clip, truncate = o.truncate, rng = self.rng,
      measure = true})
    for i = 1, #theta do theta[i]:copy_(final[i]) end
    rec.live_bytes = info.live_bytes
  else
    if o.inner_init ~= "warm" or not self.inner_opt then
      self.inner_opt = nil
    end
    curve, self.inner_opt = solvers.inner_fit(P, theta, {
      steps = o.inner_steps, optim = o.inner_optim, lr = o.inner_lr,
      clip = o.inner_clip, rng = self.rng, optimizer = self.inner_opt})
    if self.method == "implicit" then
      local lin = {rng = self.rng, w0 = o.warm_solve and self.w or nil}
      for k, v in pairs(o.linsolve) do lin[k] = v end
      local info
      hg, self.w, info = solvers.implicit_step(P, theta, lin)
      rec.solve = info
    end
    rec.live_bytes = d2r.live_bytes()
  end
  rec.inner_loss, rec.inner_reward = curve.loss, curve.reward
  rec.hypergrad = flat_list(hg)
  for _, g in ipairs(rec.hypergrad) do
    if g ~= g or g == math.huge or g == -math.huge then
      fail(("outer step %d: the hypergradient is not finite (a ridge in "
            .. "linsolve may help)"):format(rec.step), 2)
    end
  end
  rec.hypergrad_norm = hg and norm(rec.hypergrad) or 0 / 0
  rec.hypergrad_u = hg and R:u_grad(rec.hypergrad) or nil
  rec.train_nll = value_of(P, theta, "train")
  rec.val_nll = value_of(P, theta, "val")
  -- Early stopping and the schedule judge the reward that was just used.
  local stop = false
  if self.stopper then
    stop = self.stopper:update(rec.val_nll, rec.step, R:parameters())
  end
  if self.schedule and self.outer_opt then
    self.schedule:step(self.outer_opt, rec.val_nll)
  end
  rec.lr = self.outer_opt and self.outer_opt:lr() or 0
  -- The outer update.
  rec.updated = false
  if hg then
    local ok = not rec.solve or rec.solve.converged
    if not ok and o.on_unconverged == "error" then
      fail(("outer step %d: the linear solve did not converge (residual "
            .. "%g after %d iterations)"):format(rec.step,
            rec.solve.residual, rec.solve.iterations), 2)
    end
    if ok or o.on_unconverged == "use" then
      local phi = R:parameters()
      solvers.set_grad(phi, hg)
      if o.outer_clip and o.outer_clip > 0 then
        d2r.clip_grad_value(phi, o.outer_clip)
      end
      self.outer_opt:step()
      rec.updated = true
    end
  end
  rec.U_next = R:values()
  rec.seconds = os.clock() - t0
  self.finished = stop or self.step_count >= o.outer_steps
  rec.final = self.finished
  if self.finished then finish(self, rec) end
  self.records[#self.records + 1] = rec
  if self.writer then self.writer(rec) end
  if o.on_step then o.on_step(rec) end
  return rec
end

--- s:run(): every outer step; returns {records =, steps =, reward =
--- (U's values at the end, after any rollback), best_step =, best_val =,
--- stopped_early =}.
function Solver:run()
  while self:step() do end
  local last = self.records[#self.records]
  local best_val, best_step = 0 / 0, last.step
  if self.stopper then best_val, best_step = self.stopper:best() end
  return {records = self.records, steps = #self.records,
          reward = (self.reward:values()), best_step = best_step,
          best_val = best_val, stopped_early = last.stopped_early}
end

-- ---- recording ----------------------------------------------------------

--- d2r.solvers.columns(reward): the outer CSV's measurement columns for a
--- reward (without the caller's fields).
function solvers.columns(reward)
  local cols = {"step"}
  local q = #reward:flat():tolist()
  local small = q <= 16
  local _, names = reward:values()
  for _, n in ipairs(names) do cols[#cols + 1] = n end
  for _, n in ipairs(names) do cols[#cols + 1] = n .. "_next" end
  if small then
    for i = 1, q do cols[#cols + 1] = "phi" .. i end
    for i = 1, q do cols[#cols + 1] = "hg" .. i end
  end
  if reward:kind() == "scalar" then cols[#cols + 1] = "hg_u" end
  for _, c in ipairs{"hypergrad_norm", "residual", "iterations",
                     "converged", "train_nll", "val_nll", "lr",
                     "inner_first", "inner_last", "reward_last",
                     "updated", "seconds", "live_bytes", "final"} do
    cols[#cols + 1] = c
  end
  return cols
end

local function field_names(fields)
  local names = {}
  for k in pairs(fields or {}) do names[#names + 1] = k end
  table.sort(names)
  return names
end

local function b01(v) return v and 1 or 0 end

--- d2r.solvers.csv_writer(solver, {outer = path, inner = path, fields =
--- {column = value}}): a function(record) appending one row per outer
--- step to the outer file (fields first, then d2r.solvers.columns) and
--- one per inner step to the inner file (fields, step, inner_step, loss,
--- reward).  Files are opened with d2r.results_file: rows already there
--- stay, so a script can resume (see d2r.solvers.completed).
function solvers.csv_writer(s, o)
  local names = field_names(o.fields)
  local outer_cols, inner_cols = {}, {}
  for _, n in ipairs(names) do
    outer_cols[#outer_cols + 1] = n
    inner_cols[#inner_cols + 1] = n
  end
  for _, c in ipairs(solvers.columns(s.reward)) do
    outer_cols[#outer_cols + 1] = c
  end
  for _, c in ipairs{"step", "inner_step", "loss", "reward"} do
    inner_cols[#inner_cols + 1] = c
  end
  local outer = o.outer and d2r.results_file(o.outer, outer_cols)
  local inner = o.inner and d2r.results_file(o.inner, inner_cols)
  return function(rec)
    local row = {}
    for _, n in ipairs(names) do row[n] = o.fields[n] end
    if inner then
      local rows = {}
      for k = 1, #rec.inner_loss do
        local r = {}
        for n, v in pairs(row) do r[n] = v end
        r.step, r.inner_step = rec.step, k
        r.loss, r.reward = rec.inner_loss[k], rec.inner_reward[k]
        rows[k] = r
      end
      inner:append(rows)
    end
    if not outer then return end
    row.step = rec.step
    for i, n in ipairs(rec.U_names) do
      row[n], row[n .. "_next"] = rec.U[i], rec.U_next[i]
    end
    for i, v in ipairs(rec.phi) do row["phi" .. i] = v end
    for i = 1, #rec.phi do row["hg" .. i] = rec.hypergrad[i] or 0 / 0 end
    row.hg_u = rec.hypergrad_u and rec.hypergrad_u[1] or 0 / 0
    row.hypergrad_norm = rec.hypergrad_norm
    local sv = rec.solve or {}
    row.residual = sv.residual or 0 / 0
    row.iterations = sv.iterations or 0
    row.converged = rec.solve and b01(sv.converged) or -1
    row.train_nll, row.val_nll, row.lr = rec.train_nll, rec.val_nll, rec.lr
    row.inner_first = rec.inner_loss[1] or 0 / 0
    row.inner_last = rec.inner_loss[#rec.inner_loss] or 0 / 0
    row.reward_last = rec.inner_reward[#rec.inner_reward] or 0 / 0
    row.updated = b01(rec.updated)
    row.seconds, row.live_bytes = rec.seconds, rec.live_bytes or 0
    row.final = b01(rec.final)
    outer:append({row})
  end
end

--- d2r.solvers.run_key(row, columns): the values of the columns joined
--- by "|", numbers written so that a value read back from a CSV file
--- gives the same key (1.0 and 1 alike).
function solvers.run_key(row, columns)
  local parts = {}
  for i, k in ipairs(columns) do
    local v = row[k]
    parts[i] = type(v) == "number" and ("%.17g"):format(v) or tostring(v)
  end
  return table.concat(parts, "|")
end

--- d2r.solvers.completed(path, key_columns [, inner_path]): for resuming
--- a script: reads the outer CSV at path, removes the rows of runs that
--- never wrote their final row (from the inner CSV too), and returns a
--- set of the keys (key columns joined by "|") of the finished runs.
function solvers.completed(path, keys, inner_path)
  local key = solvers.run_key
  keys = keys or {}
  local done = {}
  local rows, header = d2r.read_results(path)
  if not rows then error(header, 2) end
  for _, r in ipairs(rows) do
    if r.final == 1 then done[key(r, keys)] = true end
  end
  local function purge(p)
    local rs, h = d2r.read_results(p)
    if not rs then error(h, 2) end
    if not h then return end
    local kept = {}
    for _, r in ipairs(rs) do
      if done[key(r, keys)] then kept[#kept + 1] = r end
    end
    if #kept < #rs then d2r.write_csv(p, h, kept) end
  end
  purge(path)
  if inner_path then purge(inner_path) end
  return done
end
