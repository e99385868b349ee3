-- A tiny assertion library for the Lua tests: each check raises an error
-- naming the failure, so a failing test script exits non-zero; done()
-- prints a closing line with the counts.
local check = {passed = 0}

local function fail(msg, level)
  error(msg, (level or 1) + 2)
end

local function pass()
  check.passed = check.passed + 1
end

local function show(v)
  if type(v) == "string" then
    return string.format("%q", v)
  end
  return tostring(v)
end

--- check.ok(cond, msg): cond must be truthy.
function check.ok(cond, msg)
  if not cond then
    fail("check failed: " .. (msg or "condition is false"))
  end
  pass()
end

--- check.eq(got, want, msg): got == want (raw equality).
function check.eq(got, want, msg)
  if got ~= want then
    fail(string.format("%s: got %s, want %s", msg or "eq", show(got),
                       show(want)))
  end
  pass()
end

local function close(a, b, tol)
  if a ~= a or b ~= b then
    return false
  end
  if a == b then
    return true
  end
  return math.abs(a - b) <= tol * math.max(1, math.abs(b))
end

--- check.near(got, want [, tol [, msg]]): numbers within tol (relative
--- for large values, absolute near zero; 1e-9 by default).
function check.near(got, want, tol, msg)
  tol = tol or 1e-9
  if type(got) ~= "number" or not close(got, want, tol) then
    fail(string.format("%s: got %s, want %s (tol %g)", msg or "near",
                       show(got), show(want), tol))
  end
  pass()
end

-- Flattens a number or nested table of numbers into list.
local function flatten(v, list)
  if type(v) == "table" then
    for _, x in ipairs(v) do
      flatten(x, list)
    end
  else
    list[#list + 1] = v
  end
  return list
end

local function shape_of(v, s)
  s = s or {}
  if type(v) == "table" then
    s[#s + 1] = #v
    if #v > 0 then
      shape_of(v[1], s)
    end
  end
  return s
end

--- check.tensor(t, want [, tol [, msg]]): a tensor with the shape and
--- values of the nested table (or number) want.
function check.tensor(t, want, tol, msg)
  msg = msg or "tensor"
  tol = tol or 1e-9
  if not d2r.is_tensor(t) then
    fail(msg .. ": not a tensor: " .. show(t))
  end
  local gs, ws = table.concat(t:shape(), ","), table.concat(
    shape_of(want), ",")
  if gs ~= ws then
    fail(string.format("%s: shape [%s], want [%s]", msg, gs, ws))
  end
  local g, w = flatten(t:tolist(), {}), flatten(want, {})
  for i = 1, #w do
    if not close(g[i], w[i], tol) then
      fail(string.format("%s: element %d is %s, want %s (tol %g)\n%s",
                         msg, i, show(g[i]), show(w[i]), tol, tostring(t)))
    end
  end
  pass()
end

--- check.raises(pattern, f, ...): f(...) must raise an error whose
--- message matches pattern (a Lua pattern); returns the message.
function check.raises(pattern, f, ...)
  local ok, err = pcall(f, ...)
  if ok then
    fail("expected an error matching '" .. pattern .. "', got none")
  end
  err = tostring(err)
  if not err:find(pattern) then
    fail(string.format("error %s does not match '%s'", show(err),
                       pattern))
  end
  pass()
  return err
end

--- check.done(name): prints the closing line.
function check.done(name)
  print(string.format("%s: %d passed, 0 failed", name or "lua",
                      check.passed))
end

return check
