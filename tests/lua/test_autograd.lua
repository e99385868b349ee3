-- Tests of autodiff through the binding: backward into leaves, d2r.grad
-- with its options, second derivatives, no_grad, against gradients
-- computed by hand.
local check = require "check"
local T = d2r.tensor

-- d/dx sum(3 x^2) = 6 x
local x = T({1, 2, 3}, {requires_grad = true})
check.ok(x:requires_grad(), "requires_grad()")
check.eq(x:grad(), nil, "no gradient before backward")
check.eq(x:grad_fn(), nil, "a leaf has no grad_fn")
local loss = (x * x * 3):sum()
check.ok(loss:grad_fn() ~= nil, "a result has a grad_fn")
loss:backward()
check.tensor(x:grad(), {6, 12, 18}, 1e-12, "backward")

-- gradients accumulate until zero_grad
;(x * 1):sum():backward()
check.tensor(x:grad(), {7, 13, 19}, 1e-12, "accumulation")
x:zero_grad()
check.eq(x:grad(), nil, "zero_grad drops the gradient")

-- d/dx log(sum(exp(x))) = softmax(x)
local z = T({0, math.log(3)}, {requires_grad = true})
z:exp():sum():log():backward()
check.tensor(z:grad(), {0.25, 0.75}, 1e-12, "log-sum-exp")

-- matrix product: loss = sum(A B), dA = 1 B^T, dB = A^T 1
local A = T({{1, 2, 3}, {4, 5, 6}}, {requires_grad = true})
local B = T({{1, 0}, {0, 1}, {2, 3}}, {requires_grad = true})
A:matmul(B):sum():backward()
check.tensor(A:grad(), {{1, 1, 5}, {1, 1, 5}}, 1e-12, "dA")
check.tensor(B:grad(), {{5, 5}, {7, 7}, {9, 9}}, 1e-12, "dB")

-- broadcasting: the gradient is summed back to the input's shape
local bias = T({1, 2}, {requires_grad = true})
local g = d2r.grad((d2r.ones(3, 2) * bias):sum(), bias)
check.tensor(g[1], {3, 3}, 1e-12, "broadcast gradient")

-- views and indexing carry gradients
local v = T({{1, 2}, {3, 4}}, {requires_grad = true})
local s = v[2]:sum() + v:slice(2, 1, 1):sum() * 10
check.tensor(d2r.grad(s, v)[1], {{10, 0}, {11, 1}}, 1e-12, "views")

-- d2r.grad with several inputs and outputs, and grad_outputs
local p = T({2}, {requires_grad = true})
local q = T({5}, {requires_grad = true})
local gs = d2r.grad({(p * q):sum(), (p * p):sum()}, {p, q})
check.tensor(gs[1], {5 + 4}, 1e-12, "d/dp (pq + p^2)")
check.tensor(gs[2], {2}, 1e-12, "d/dq (pq + p^2)")
local gv = d2r.grad(p * T{1, 2, 3}, p,
                    {grad_outputs = T{1, 1, 1}})
check.tensor(gv[1], {6}, 1e-12, "grad_outputs")
check.raises("2 grad_outputs for 1 outputs", d2r.grad, p * 2, p,
             {grad_outputs = {T{1}, T{1}}})

-- second derivatives: f = sum(x^3), f' = 3 x^2, f'' = 6 x
local u = T({1, 2}, {requires_grad = true})
local d1 = d2r.grad((u ^ 3):sum(), u, {create_graph = true})[1]
check.tensor(d1, {3, 12}, 1e-12, "first derivative")
check.ok(d1:requires_grad(), "create_graph keeps history")
local d2 = d2r.grad(d1:sum(), u)[1]
check.tensor(d2, {6, 12}, 1e-12, "second derivative")

-- Hessian-vector product of f = x1^2 x2 at (1, 2) with v = (1, 1):
-- H = [[2 x2, 2 x1], [2 x1, 0]] = [[4, 2], [2, 0]], Hv = (6, 2)
local w = T({1, 2}, {requires_grad = true})
local w1, w2 = w:slice(1, 1, 1), w:slice(1, 2, 2)
local f = (w1 * w1 * w2):sum()
local gw = d2r.grad(f, w, {create_graph = true})[1]
local hv = d2r.grad((gw * T{1, 1}):sum(), w)[1]
check.tensor(hv, {6, 2}, 1e-12, "Hessian-vector product")

-- unused inputs
local unused = T({1}, {requires_grad = true})
check.raises("grad: .*depend", d2r.grad, (p * 2):sum(), unused)
check.tensor(d2r.grad((p * 2):sum(), {p, unused},
                      {allow_unused = true})[2], {0}, nil, "allow_unused")

-- no_grad: nothing recorded, setting restored even after an error
check.ok(d2r.grad_enabled(), "recording is on by default")
local r = d2r.no_grad(function(a) return a * 2 end, p)
check.ok(not r:requires_grad(), "no_grad result has no history")
check.ok(d2r.grad_enabled(), "no_grad restores the setting")
check.raises("inside", d2r.no_grad, function() error("inside") end)
check.ok(d2r.grad_enabled(), "restored after an error")
check.eq(select("#", d2r.no_grad(function() return 1, nil, 3 end)), 3,
         "no_grad returns every result")
check.eq(d2r.set_grad_enabled(false), true, "set_grad_enabled")
check.ok(not (p * 2):requires_grad(), "recording off")
d2r.set_grad_enabled(true)

-- detach shares values but not history
local dt = (p * 3):detach()
check.ok(not dt:requires_grad(), "detach")
check.tensor(dt, {6})

-- errors
check.raises("backward", function() (p * T{1, 2}):backward() end)
check.raises("boolean expected", function() p:requires_grad(1) end)
check.raises("grad: inputs%[2%] is a number", d2r.grad, p:sum(), {p, 1})
check.raises("no outputs given", d2r.grad, {}, p)
check.raises("requires_grad", function()
  (p * 2):requires_grad(false)
end)

-- A tensor a graph used, updated in place before the backward pass: the
-- gradient would belong to a function never evaluated, so backward
-- fails and names the op; after a fresh forward pass it works again.
do
  local w = T({1, 2, 3}, {requires_grad = true})
  local c = T({4, 5, 6})
  local loss = (w * c):sum()
  c[2] = 50
  check.raises("input 2 %(shape %[3%]%) of mul was updated in place",
               function() loss:backward() end)
  c:fill_(1)
  ;(w * c):sum():backward()
  check.tensor(w:grad(), {1, 1, 1}, 0, "fresh forward after the update")
  -- a view shares its base's storage
  local base = T({1, 2, 3, 4})
  local view = base:slice(1, 1, 2)
  local l2 = (w:sum() * view):sum()
  base:scale_(2)
  check.raises("updated in place", function() l2:backward() end)
  -- an index tensor too
  local logits = T({{0, 1}, {2, 0}}, {requires_grad = true})
  local s = T({{0, 1}, {1, 1}})
  local lp = d2r.categorical_log_prob(logits, s):sum()
  s:fill_(0)
  check.raises("index or mask .* of categorical_log_prob was updated",
               function() lp:backward() end)
  -- an optimiser's step updates its parameters in place too
  local q = T({1, 2}, {requires_grad = true})
  local opt = d2r.adam({q}, 0.1)
  ;(q * q):sum():backward()
  local stale = (q * q):sum()
  opt:step()
  check.raises("of mul was updated in place",
               function() stale:backward() end)
end

check.done("test_autograd")
