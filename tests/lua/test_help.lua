-- Tests of the documentation the REPL shows: every public function of
-- the module (in the d2r table, its namespaces, and the method tables of
-- its types) has an entry in bindings/REFERENCE.md, every entry names
-- something that exists, and d2r.doc / d2r.help find entries from
-- functions, objects, types and names.
local check = require "check"

-- ---- coverage ------------------------------------------------------------

-- Every function reachable from the module, with one name for each.
local function public_functions()
  local found, order = {}, {}
  local function add(f, name)
    if not found[f] then
      found[f] = name
      order[#order + 1] = f
    end
  end
  local function methods(tname, t)
    for k, v in pairs(t) do
      if type(k) == "string" and type(v) == "function" then
        add(v, tname .. ":" .. k)
      end
    end
  end
  for k, mt in pairs(debug.getregistry()) do
    local tname = type(k) == "string" and k:match("^d2r%.(%u[%w_]*)$")
    local index = tname and type(mt) == "table" and rawget(mt, "__index")
    if type(index) == "function" then
      local _, up = debug.getupvalue(index, 1)
      index = up
    end
    if type(index) == "table" then
      methods(tname, index)
    end
  end
  local function walk(t, prefix, depth, seen)
    seen[t] = true
    for k, v in pairs(t) do
      if type(k) == "string" and not k:find("^_") then
        if type(v) == "function" then
          add(v, prefix .. "." .. k)
        elseif type(v) == "table" and k:find("^%u") then
          methods(k, v)
        elseif type(v) == "table" and not seen[v] and depth < 3 then
          walk(v, prefix .. "." .. k, depth + 1, seen)
        end
      end
    end
  end
  walk(d2r, "d2r", 1, {})
  return found, order
end

local found, order = public_functions()
check.ok(#order > 150, "the walk finds the module's functions: " .. #order)
local missing = {}
for _, f in ipairs(order) do
  if d2r.doc(f) == nil then
    missing[#missing + 1] = found[f]
  end
end
table.sort(missing)
check.ok(#missing == 0, #missing .. " public functions have no entry in " ..
         "bindings/REFERENCE.md:\n  " .. table.concat(missing, "\n  "))

-- Every documented function name stands for something that exists.
local stale = {}
for _, name in ipairs(d2r.doc()) do
  if (name:find("^d2r%.") or name:find(":")) and d2r._resolve(name) == nil
  then
    stale[#stale + 1] = name
  end
end
check.ok(#stale == 0, "entries of REFERENCE.md name nothing in the " ..
         "module:\n  " .. table.concat(stale, "\n  "))

-- ---- lookups ---------------------------------------------------------------

local function has(text, pattern, msg)
  check.ok(type(text) == "string" and text:find(pattern, 1, true),
           msg .. ": " .. tostring(text))
end

has(d2r.doc(d2r.zeros), "d2r.zeros(shape...)", "a function by value")
has(d2r.doc("zeros"), "d2r.zeros(shape...)", "a name without d2r.")
has(d2r.doc("d2r.zeros"), "d2r.zeros(shape...)", "a full name")
has(d2r.doc("Tensor:sum"), "Reductions over one axis", "a method")
has(d2r.doc("Tensor.sum"), "Reductions over one axis", "Type.method")
local t = d2r.ones(2, 2)
has(d2r.doc(t.sum), "Reductions over one axis", "a method by value")
has(d2r.doc(d2r.sum), "Reductions over one axis", "same function as t:sum")
has(d2r.doc(t), "Methods (help(\"Tensor:name\")", "an object: its type")
has(d2r.doc(t), "float64", "an object: the type's text")
has(d2r.doc(d2r.rng(1)), "Mersenne", "a generator")
has(d2r.doc(d2r.mlp(2, {3}, 1, d2r.rng(1))), "parameters", "a model")
has(d2r.doc("Model"), "Linear layers", "a type by name")
has(d2r.doc("d2r.Optim"), "SGD, Adam", "a type by full name")
has(d2r.doc("step"), "Optim:step", "a bare method name lists types")
has(d2r.doc("step"), "Plateau:step", "all of them")
has(d2r.doc("Autodiff"), "d2r.grad", "a section by title")
has(d2r.doc(d2r), "Sections", "the module: an overview")
has(d2r.doc(d2r.help), "d2r.help([x])", "help documents itself")

local none, msg = d2r.doc("no_such_thing")
check.eq(none, nil, "an unknown name")
has(msg, "no documentation for 'no_such_thing'", "the message")
none, msg = d2r.doc("grad_")
has(msg, "see ", "suggestions for a near name")
none, msg = d2r.doc(print)
check.eq(none, nil, "a function outside d2r")

-- d2r.help prints what d2r.doc gives.
local out = {}
local write = io.write
io.write = function(...) for _, s in ipairs{...} do out[#out + 1] = s end end
local ok = pcall(d2r.help, "d2r.eye")
io.write = write
check.ok(ok, "help runs")
has(table.concat(out), "The identity matrix", "help prints the entry")

check.done("test_help")
