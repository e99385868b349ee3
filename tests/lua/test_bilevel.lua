-- Bilevel primitives through the binding: a Lua operator in a linear
-- solve, Hessian-vector products, and the implicit hypergradient of the
-- Gaussian problem (inner optimum known in closed form) against the
-- derivative worked out by hand; errors raised inside callbacks.
local check = require "check"
local T = d2r.tensor

-- A symmetric positive definite system with a known solution.
local A = T{{4, 1, 0}, {1, 3, 1}, {0, 1, 2}}
local xt = T{1, -2, 0.5}
local b = A:matmul(xt)
for _, solver in ipairs{"cg", "cg_normal", "dense"} do
  local x, info = d2r.linsolve(function(v) return A:matmul(v) end, b,
                               {solver = solver, tol = 1e-12})
  check.ok(info.converged, solver .. " converged")
  check.eq(info.solver, solver, "solver named")
  check.tensor(x, xt:tolist(), 1e-9, solver .. " solution")
end
local _, info = d2r.linsolve(function(v) return A:matmul(v) end, b,
                             {solver = "neumann", alpha = 0.2, max_iter = 3})
check.ok(not info.converged and info.residual > 1e-3,
         "a truncated Neumann series is reported as not converged")
check.raises("linsolve operator: .*boom", d2r.linsolve,
             function() error("boom") end, b)
check.raises("not a tensor", d2r.linsolve, function() return 1 end, b)
check.raises("unknown option 'tolerance'", d2r.linsolve,
             function(v) return v end, b, {tolerance = 1})
check.raises("invalid value 'qr'", d2r.linsolve,
             function(v) return v end, b, {solver = "qr"})

-- Hessian-vector product of f = sum(p * x^3) / 3.
local x = T{1, -2, 0.5}:requires_grad(true)
local p = T{2, 1, -1}:requires_grad(true)
local f = (p * x ^ 3):sum() / 3
local g = d2r.grad(f, {x}, {create_graph = true})
check.tensor(d2r.hvp(g, {x}, T{0.3, 0.2, 1}), {1.2, -0.8, -1}, 1e-12,
             "hvp")
check.tensor(d2r.mixed_vp(g, {p}, T{0.3, 0.2, 1}), {0.3, 0.8, 0.25}, 1e-12,
             "mixed product")

-- The Gaussian problem of tests/engine/test_bilevel.c.
local ys = T{1.2, -0.3, 2.5, 0.7, 1.9, -1.1, 0.4, 3.0, 1.0, 0.2}
local lambda, u0 = 0.8, 0.45
local ybar = ys:mean():item()
local v = ((ys - ybar) ^ 2):mean():item()
local m = T{ybar}:requires_grad(true)
local logs = T{0.5 * math.log(lambda / (2 * u0))}:requires_grad(true)
local u = T{u0}:requires_grad(true)
local function inner()
  return u * (((m - ybar) ^ 2) + v + (logs * 2):exp()) - logs * lambda
end
local function outer()
  return logs + ((ys - m) ^ 2):mean() / ((logs * 2):exp() * 2)
end
local hg, w, sinfo = d2r.implicit_hypergrad{theta = {m, logs}, phi = {u},
  inner = inner, outer = outer, solver = "cg", tol = 1e-12}
check.ok(sinfo.converged, "hypergradient solve converged")
check.near(hg[1], -1 / (2 * u0) + v / lambda, 1e-9, "implicit hypergradient")
check.eq(w:numel(), 2, "w over theta")
check.raises("outer loss: .*nope", d2r.implicit_hypergrad,
             {theta = {m, logs}, phi = {u}, inner = inner,
              outer = function() error("nope") end})

local parts = d2r.unflatten(T{1, 2, 3, 4, 5, 6, 7},
                            {T{{0, 0}, {0, 0}}, T{0, 0, 0}})
check.tensor(parts[1], {{1, 2}, {3, 4}}, 0, "unflatten")
check.tensor(d2r.flatten(parts), {1, 2, 3, 4, 5, 6, 7}, 0, "flatten")
check.done("bilevel")
