-- Lua-side helpers for tensors and autodiff: scoped gradient recording
-- (no_grad, enable_grad), comparisons with tolerance, and small methods
-- that need no C.  Run by luaopen_d2r with the module table as `...`.
local d2r = ...
local Tensor = d2r.Tensor

-- Runs f(...) with gradient recording set to `enabled`, restoring the
-- previous setting afterwards, also when f raises an error.
local function with_grad(enabled, f, ...)
  if type(f) ~= "function" then
    error(("bad argument #1 (function expected, got %s)"):format(type(f)),
          3)
  end
  local prev = d2r.set_grad_enabled(enabled)
  local res = table.pack(pcall(f, ...))
  d2r.set_grad_enabled(prev)
  if not res[1] then
    error(res[2], 0)
  end
  return table.unpack(res, 2, res.n)
end

--- d2r.no_grad(f, ...): f(...) without recording operations.
function d2r.no_grad(f, ...)
  return with_grad(false, f, ...)
end

--- d2r.enable_grad(f, ...): f(...) with recording on.
function d2r.enable_grad(f, ...)
  return with_grad(true, f, ...)
end

local function same_shape(a, b)
  local sa, sb = a:shape(), b:shape()
  if #sa ~= #sb then
    return false
  end
  for i = 1, #sa do
    if sa[i] ~= sb[i] then
      return false
    end
  end
  return true
end

--- d2r.allclose(a, b [, rtol [, atol]]): true when a and b have the same
--- shape and |a - b| <= atol + rtol * |b| everywhere (no NaN).
function d2r.allclose(a, b, rtol, atol)
  a, b = d2r.tensor(a), d2r.tensor(b)
  rtol, atol = rtol or 1e-5, atol or 1e-8
  if not same_shape(a, b) then
    return false
  end
  if a:numel() == 0 then
    return true
  end
  local bad = ((a - b):abs() - b:abs() * rtol):gt(atol)
  return bad:sum():item() == 0 and a:count_nonfinite() == 0
    and b:count_nonfinite() == 0
end

function Tensor:allclose(b, rtol, atol)
  return d2r.allclose(self, b, rtol, atol)
end

--- t:type(): "d2r.Tensor", for symmetry with other libraries.
function Tensor:type()
  return "d2r.Tensor"
end

--- d2r.stack(list [, axis]): the tensors (all of one shape) stacked
--- along a new axis (1 by default).
function d2r.stack(list, axis)
  axis = axis or 1
  local parts = {}
  for i, t in ipairs(list) do
    parts[i] = t:unsqueeze(axis)
  end
  return d2r.cat(parts, axis)
end
