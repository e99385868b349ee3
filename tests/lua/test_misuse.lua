-- The Lua API under misuse: every function of the d2r table (and of its
-- sub-tables) and every method of every userdata type is called with a
-- fixed list of bad arguments: nothing, nil, wrong types, a path that
-- cannot exist, ragged tables, negative, huge and non-finite numbers,
-- tensors of the wrong shape, closed objects.  Each call must either
-- raise an error with a message, return nil and a message, or accept
-- the arguments (some patterns are valid for some functions); nothing
-- may crash.  Lua code that runs on for 5e7 instructions is stopped
-- and listed (C code cannot be stopped: a hang there hangs the test).
-- Afterwards the interpreter must still compute the right values.  Run
-- from a scratch directory (a function that takes a number for a name
-- may create a file or directory so named).
local check = require "check"
local T = d2r.tensor

local BADPATH = "/dev/null/d2r-misuse"   -- ENOTDIR even for root

-- Functions left out, with the reason.
local SKIP = {
  ["d2r.mpi.init"] = "starts the MPI runtime (test_mpi.lua covers it)",
}

-- The value a simple computation gives before and after the sweep.
local function probe()
  local a = T{{1, 2}, {3, 4}}
  local r = d2r.rng(5)
  local m = d2r.linear(2, 1, d2r.rng(6))
  local y = m(a):sum():item()
  return a:matmul(a):sum():item() + r:uniform() + y
end
local want = probe()

-- ---- instances of every userdata type ----------------------------------

local R = d2r.rng(1)
local made, not_made = {}, {}
local makers = {
  ["d2r.Tensor"] = function() return T{{1, 2}, {3, 4}} end,
  ["d2r.Rng"] = function() return d2r.rng(2) end,
  ["d2r.Model"] = function() return d2r.linear(2, 2, R) end,
  ["d2r.Optim"] = function() return d2r.adam(d2r.linear(2, 2, R), 0.1) end,
  ["d2r.Plateau"] = function() return d2r.plateau{} end,
  ["d2r.EarlyStop"] = function() return d2r.early_stop{} end,
  ["d2r.Standardizer"] = function()
    return d2r.standardizer(T{{1, 2}, {3, 5}})
  end,
  ["d2r.Policy"] = function()
    return d2r.gaussian_policy{["in"] = 2, out = 2, rng = R, hidden = {}}
  end,
  ["d2r.PolicyDist"] = function()
    local p = d2r.categorical_policy{["in"] = 2, out = 3, rng = R,
                                     hidden = {}}
    return p:dist(T{{1, 2}})
  end,
  ["d2r.Reward"] = function() return d2r.reward_param{kind = "diagonal",
                                                      n = 2} end,
  ["d2r.Env"] = function() return d2r.env("pendulum") end,
  ["d2r.Dataset"] = function()
    return d2r.collect{env = d2r.env("pendulum"), episodes = 1,
                       behaviour = "random"}
  end,
  ["d2r.Dynamics"] = function()
    return d2r.dynamics{env = d2r.env("pendulum"), hidden = {4}}
  end,
  ["d2r.Planner"] = function()
    return d2r.cem{env = d2r.env("pendulum"), horizon = 2,
                   population = 4, elites = 2, iterations = 1}
  end,
  ["d2r.Sqlite"] = function() return d2r.sqlite.open(":memory:") end,
  ["d2r.Process"] = function() return d2r.proc.spawn(function() end) end,
}

-- A sweep of two runs with its store in the working directory; a run
-- context kept from one of its runs; the store opened for reading.
local ctx
local function new_sweep()
  return d2r.sweep{name = "misuse", store = "misuse.sqlite",
                   grid = {a = {1, 2}}, progress = "none",
                   run = function(cfg, c)
                     ctx = c
                     c:log{epoch = 1, loss = cfg.a}
                   end}
end
makers["d2r.Sweep"] = new_sweep
makers["d2r.RunContext"] = function()
  new_sweep():run_one(1)
  return ctx
end
makers["d2r.Results"] = function()
  new_sweep():run{workers = 0}
  return d2r.sweep.open("misuse.sqlite")
end

local function make(tname)
  local f = makers[tname]
  if not f then return nil, "no constructor known to this test" end
  local ok, v = pcall(f)
  if not ok or v == nil then return nil, tostring(v) end
  return v
end

-- ---- bad arguments -------------------------------------------------------

local closed_t = T{1}
closed_t:close()
local closed_r = d2r.rng(1)
closed_r:close()

-- A fresh list each time: a call may change a table or tensor it gets.
local function patterns()
  return {
    {n = 0},
    {n = 1, nil},
    {n = 3, nil, nil, nil},
    {n = 1, BADPATH},
    {n = 1, ""},
    {n = 1, string.rep("x", 5000)},
    {n = 1, {}},
    {n = 1, {{1, 2}, {3}}},
    {n = 1, {a = "x", [1] = "y"}},
    {n = 1, true},
    {n = 1, function() error("misuse callback") end},
    {n = 1, -1},
    {n = 2, -1, -1},
    {n = 1, 0},
    {n = 1, 2 ^ 53},
    {n = 2, math.maxinteger, math.maxinteger},
    {n = 2, math.mininteger, 3},
    {n = 3, 0, 2 ^ 40, 2 ^ 40},
    {n = 1, 0 / 0},
    {n = 1, -math.huge},
    {n = 1, T{{{1}}}},
    {n = 2, T{1, 2, 3}, T{{1, 2}}},
    {n = 1, closed_t},
    {n = 1, closed_r},
  }
end

-- ---- calling and judging -------------------------------------------------

local count = {calls = 0, raised = 0, failed = 0, accepted = 0}
local problems, unclear, slow = {}, {}, {}

local function problem(name, what)
  problems[#problems + 1] = name .. ": " .. what
end

-- A call that runs too long in Lua code is stopped (C code cannot be).
local function limit()
  error("misuse: the call ran for too long", 2)
end

local function try(name, f, args)
  count.calls = count.calls + 1
  debug.sethook(limit, "", 50000000)
  local res = table.pack(pcall(f, table.unpack(args, 1, args.n)))
  debug.sethook()
  d2r.set_grad_enabled(true)
  if d2r.detect_anomaly then d2r.detect_anomaly(false) end
  if not res[1] then
    count.raised = count.raised + 1
    local msg = res[2]
    if type(msg) ~= "string" or msg == "" then
      problem(name, "raised without a message: " .. tostring(msg))
    elseif msg:find("ran for too long", 1, true) then
      slow[#slow + 1] = name
    elseif msg:find("attempt to ", 1, true) then
      unclear[#unclear + 1] = name .. ": " .. msg
    end
  elseif res.n >= 2 and res[2] == nil and res.n >= 3 then
    count.failed = count.failed + 1
    if type(res[3]) ~= "string" or res[3] == "" then
      problem(name, "returned nil without a message")
    end
  else
    count.accepted = count.accepted + 1
  end
end

local function sweep(name, f, receiver)
  for i, p in ipairs(patterns()) do
    if receiver ~= nil then
      table.insert(p, 1, receiver)
      p.n = p.n + 1
    end
    try(name .. " (pattern " .. i .. ")", f, p)
  end
end

-- Output of the functions that print (help, usage lines) is dropped.
local quiet_print, quiet_write = print, io.write
local function mute()
  print = function() end
  io.write = function() return io.stdout end
end
local function unmute()
  print, io.write = quiet_print, quiet_write
end

-- ---- every function of the d2r table -------------------------------------

local funcs = {}
local seen = {}
local function collect(t, prefix)
  if seen[t] then return end
  seen[t] = true
  for k, v in pairs(t) do
    if type(k) == "string" then
      if type(v) == "function" then
        funcs[#funcs + 1] = {prefix .. k, v}
      elseif type(v) == "table" then
        collect(v, prefix .. k .. ".")
      end
    end
  end
end
collect(d2r, "d2r.")
table.sort(funcs, function(a, b) return a[1] < b[1] end)

mute()
local nfuncs, skipped = 0, {}
for _, e in ipairs(funcs) do
  if SKIP[e[1]] then
    skipped[#skipped + 1] = e[1] .. " (" .. SKIP[e[1]] .. ")"
  else
    nfuncs = nfuncs + 1
    sweep(e[1], e[2])
  end
end
unmute()

-- ---- every method of every userdata type ---------------------------------

-- The methods of a metatable: its __index table, or the tables among
-- the upvalues of an __index function.
local function methods_of(mt)
  local out, idx = {}, rawget(mt, "__index")
  local function add(t)
    for k, v in pairs(t) do
      if type(k) == "string" and type(v) == "function" and
         not k:match("^__") then
        out[k] = v
      end
    end
  end
  if type(idx) == "table" then
    add(idx)
  elseif type(idx) == "function" then
    for i = 1, 10 do
      local name, up = debug.getupvalue(idx, i)
      if name == nil then break end
      if type(up) == "table" and up ~= d2r then add(up) end
    end
  end
  return out
end

local types = {}
for k, v in pairs(debug.getregistry()) do
  if type(k) == "string" and k:match("^d2r%.") and type(v) == "table" and
     rawget(v, "__name") == k then
    types[#types + 1] = k
  end
end
table.sort(types)

mute()
local nmethods, ntypes = 0, 0
for _, tname in ipairs(types) do
  local ms = methods_of(debug.getregistry()[tname])
  local names = {}
  for k in pairs(ms) do names[#names + 1] = k end
  table.sort(names)
  if #names > 0 then
    local obj, why = make(tname)
    if obj == nil then
      not_made[#not_made + 1] = tname .. " (" .. why .. ")"
    else
      ntypes = ntypes + 1
      for _, m in ipairs(names) do
        local name = tname .. ":" .. m
        nmethods = nmethods + 1
        sweep(name .. " (no receiver)", ms[m])
        local fresh = make(tname) or obj
        sweep(name, ms[m], fresh)
        if ms.close then
          local c = make(tname)
          if c then
            pcall(ms.close, c)
            try(name .. " (closed)", ms[m], {n = 1, c})
          end
        end
      end
    end
  end
end
unmute()

-- ---- metamethods of tensors and models -----------------------------------

local t = T{{1, 2}, {3, 4}}
local m = d2r.linear(2, 2, R)
local meta = {
  {"t + 'x'", function() return t + "x" end},
  {"t + {}", function() return t + {} end},
  {"t + ragged", function() return t + {{1}, {1, 2}} end},
  {"t * wrong shape", function() return t * T{1, 2, 3} end},
  {"t ^ closed", function() return t ^ closed_t end},
  {"t[0]", function() return t[0] end},
  {"t[huge]", function() return t[2 ^ 53] end},
  {"t[-huge]", function() return t[math.mininteger] end},
  {"t[nan]", function() return t[0 / 0] end},
  {"t['nope']", function() return t.nope end},
  {"t[{}]", function() return t[{}] end},
  {"t[7 dims]", function() return t[{1, 1, 1, 1, 1, 1, 1}] end},
  {"t[1] = 'x'", function() t[1] = "x" end},
  {"t[1] = wrong shape", function() t[1] = T{1, 2, 3} end},
  {"t[9] = 1", function() t[9] = 1 end},
  {"-closed", function() return -closed_t end},
  {"#closed", function() return #closed_t end},
  {"t(1)", function() return t(1) end},
  {"t .. 'x'", function() return t .. "x" end},
  {"t < t", function() return t < t end},
  {"m('x')", function() return m("x") end},
  {"m(wrong shape)", function() return m(T{1, 2, 3}) end},
  {"m(closed)", function() return m(closed_t) end},
  {"m.nope()", function() return m.nope() end},
}
for _, e in ipairs(meta) do
  try(e[1], e[2], {n = 0})
end

-- Sizes whose product wraps around 2^64 to the right count must not
-- give a view larger than its storage.
local z = d2r.zeros(4)
check.raises("too large", z.reshape, z, 4611686018427387905, 4)
check.raises("too large", z.reshape, z, 0, 2 ^ 40, 2 ^ 40)
check.raises("too large", d2r.zeros, 0, 2 ^ 40, 2 ^ 40)
check.ok(tostring(closed_t):find("closed"), "tostring of a closed tensor")

-- ---- the interpreter still works -----------------------------------------

collectgarbage()
collectgarbage()
check.eq(probe(), want, "the same computation after the sweep")
check.eq(d2r.grad_enabled(), true, "gradient recording is on")
check.eq(#problems, 0, "problems:\n  " .. table.concat(problems, "\n  "))
check.eq(#not_made, 0, "types not instantiated: " ..
         table.concat(not_made, ", "))

print(string.format("misuse: %d calls to %d functions and %d methods of "
                    .. "%d types: %d raised, %d returned nil and a "
                    .. "message, %d accepted", count.calls, nfuncs,
                    nmethods, ntypes, count.raised, count.failed,
                    count.accepted))
if #slow > 0 then
  print("misuse: stopped after 5e7 Lua instructions (accepted a bad "
        .. "argument and kept computing): " .. table.concat(slow, "; "))
end
if #skipped > 0 then
  print("misuse: skipped " .. table.concat(skipped, "; "))
end
if #unclear > 0 then
  -- Raw Lua errors come from library code that did not check its
  -- arguments: counted by the file that raised them.
  local by, order = {}, {}
  for _, u in ipairs(unclear) do
    local file = u:match(": ([%w_/%.]+%.lua):%d+:") or "?"
    if os.getenv("D2R_MISUSE_VERBOSE") then print("  " .. u) end
    if not by[file] then
      by[file] = {n = 0, example = u}
      order[#order + 1] = file
    end
    by[file].n = by[file].n + 1
  end
  table.sort(order)
  print(string.format("misuse: %d errors are raw Lua errors (\"attempt "
                      .. "to ...\"), by file:", #unclear))
  for _, f in ipairs(order) do
    print(string.format("  %s: %d, e.g. %s", f, by[f].n, by[f].example))
  end
end
check.done("misuse")
