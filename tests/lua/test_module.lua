-- Tests that stock lua5.4 loads the module with require "d2r" (from the
-- build directory, next to the d2r executable running this test), and
-- the d2r executable's command line: -e, -v, script arguments, standard
-- input and exit statuses.
local check = require "check"

-- The d2r executable running this test, and the build directory.
local exe = arg[-1]
local i = -2
while arg[i] do
  exe, i = arg[i], i - 1
end
local build = exe:match("^(.*)/[^/]*$") or "."

local function sh(cmd)
  local ok, how, code = os.execute(cmd)
  return ok and 0 or code, how
end

local function quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

local tmp = os.tmpname()
local function run(cmd)
  local code = sh(cmd .. " >" .. tmp .. " 2>&1")
  local f = assert(io.open(tmp))
  local out = f:read("a")
  f:close()
  return code, out
end

-- A module built with AddressSanitizer needs its runtime loaded first.
local function asan_preload()
  local p = io.popen("ldd " .. quote(build .. "/d2r.so") ..
                     " 2>/dev/null | awk '/libasan/ {print $3}'")
  local lib = p:read("l")
  p:close()
  return lib and ("LD_PRELOAD=" .. quote(lib) .. " ") or ""
end

if sh("command -v lua5.4 >/dev/null") == 0 then
  local code, out = run(asan_preload() .. "LUA_CPATH=" ..
    quote(build .. "/?.so") .. " lua5.4 -e " .. quote([[
      local d2r = require "d2r"
      local x = d2r.tensor({1, 2}, {requires_grad = true})
      local g = d2r.grad((x * x):sum(), x)[1]
      assert(g[2] == 4, "gradient")
      assert(not pcall(d2r.zeros, "a"))
      print("ok " .. d2r.version)]]))
  check.eq(code, 0, "stock lua5.4 loads the module: " .. out)
  check.ok(out:find("^ok %d"), "module output: " .. out)
else
  print("lua5.4 not found: skipping the stock interpreter check")
end

local code, out = run(quote(exe) .. " -v")
check.eq(code, 0, "-v")
check.ok(out:find("^d2r %S+ %(Lua 5%.4"), "-v prints the version: " .. out)

code, out = run(quote(exe) .. " -e " .. quote("print(d2r.ones{2}:sum())"))
check.eq(code, 0, "-e")
check.ok(out:find("tensor%(2"), "-e runs code with d2r global: " .. out)

code, out = run(quote(exe) .. " -e " .. quote("error('bad thing')"))
check.eq(code, 1, "an error exits with status 1")
check.ok(out:find("bad thing") and out:find("stack traceback"),
         "the error and a traceback on stderr: " .. out)

local script = os.tmpname()
local f = assert(io.open(script, "w"))
f:write("local a, b = ...\nprint(arg[0] ~= nil, arg[1], arg[2], a, b)\n")
f:close()
code, out = run(quote(exe) .. " " .. quote(script) .. " one two")
check.eq(code, 0, "script with arguments")
check.eq(out, "true\tone\ttwo\tone\ttwo\n", "arg and ... as lua.c sets")

code, out = run("echo 'print(#d2r.zeros(3))' | " .. quote(exe))
check.eq(code, 0, "standard input as a script")
check.eq(out, "3\n", "standard input output")

code, out = run("echo 'x = (' | " .. quote(exe))
check.eq(code, 1, "a syntax error on standard input")

code, out = run(quote(exe) .. " -z")
check.eq(code, 1, "an unknown option")
check.ok(out:find("usage"), "usage on a bad option")

-- require finds modules next to the script
local dir = os.tmpname()
os.remove(dir)
check.eq(sh("mkdir " .. quote(dir)), 0, "mkdir")
f = assert(io.open(dir .. "/helper_mod.lua", "w"))
f:write("return {answer = 42}\n")
f:close()
f = assert(io.open(dir .. "/main.lua", "w"))
f:write("print(require('helper_mod').answer)\n")
f:close()
code, out = run("cd / && " .. quote(exe) .. " " .. quote(dir .. "/main.lua"))
check.eq(out, "42\n", "require looks in the script's directory")
os.remove(dir .. "/helper_mod.lua")
os.remove(dir .. "/main.lua")
os.remove(dir)
os.remove(script)
os.remove(tmp)

check.done("test_module")
