-- How values look at the REPL: d2r.repr renders tensors with aligned
-- columns, their shape and dtype, cut to a summary when long; models with
-- their layers and parameter shapes; tables as nested constructors with a
-- bounded size; other values by their __tostring.  Runs inside the d2r
-- module: `...` is the module table.
local d2r = ...

local EDGE = 3          -- items kept at each end of a long dimension
local SUMMARY_AT = 1000 -- summarise tensors with more elements
local MAX_ITEMS = 24    -- items shown of a table
local MAX_DEPTH = 3     -- levels of nested tables shown
local WIDTH = 78

local fmt, concat = string.format, table.concat

-- ---- tensors ------------------------------------------------------------

-- The positions shown along a dimension of size n (false for "...").
local function positions(n, cut)
  local list = {}
  if cut and n > 2 * EDGE then
    for i = 1, EDGE do list[#list + 1] = i end
    list[#list + 1] = false
    for i = n - EDGE + 1, n do list[#list + 1] = i end
  else
    for i = 1, n do list[#list + 1] = i end
  end
  return list
end

-- A formatter for the numbers shown: integers as such, otherwise fixed
-- point or, over a wide range of magnitudes, scientific notation.
local function number_format(values)
  local integral, maxabs, minabs = true, 0, math.huge
  for _, v in ipairs(values) do
    if v == v and v ~= math.huge and v ~= -math.huge then
      local a = math.abs(v)
      if v ~= math.floor(v) or a >= 1e16 then
        integral = false
      end
      if a > maxabs then maxabs = a end
      if a > 0 and a < minabs then minabs = a end
    end
  end
  local pattern
  if integral then
    pattern = "%.0f"
  elseif maxabs >= 1e8 or minabs < 1e-4 or maxabs / minabs > 1e3 then
    pattern = "%.4e"
  else
    pattern = "%.4f"
  end
  return function(v)
    if v ~= v then return "nan" end
    if v == math.huge then return "inf" end
    if v == -math.huge then return "-inf" end
    return (fmt(pattern, v):gsub("^%-(0[%.0]*)$", "%1"))
  end
end

-- The values of t at the shown positions, as nested lists.
local function gather(t, shown, d, index, flat)
  local level = {}
  for k, i in ipairs(shown[d]) do
    if not i then
      level[k] = false
    else
      index[d] = i
      if d == #shown then
        local v = t[index]
        flat[#flat + 1] = v
        level[k] = v
      else
        level[k] = gather(t, shown, d + 1, index, flat)
      end
    end
  end
  index[d] = nil
  return level
end

-- A row of cells, wrapped to continue under its first cell when long.
local function layout_row(level, col, cell, out)
  local line = col + 1
  out[#out + 1] = "["
  for k, v in ipairs(level) do
    local s = v and cell(v) or "..."
    if k > 1 then
      if line + 2 + #s + 2 > WIDTH then
        out[#out + 1] = ",\n" .. (" "):rep(col + 1)
        line = col + 1
      else
        out[#out + 1] = ", "
        line = line + 2
      end
    end
    out[#out + 1] = s
    line = line + #s
  end
  out[#out + 1] = "]"
end

-- Rows of rows: blank lines between blocks, as many as the depth left.
local function layout(level, d, nd, indent, cell, out)
  if d == nd then
    return layout_row(level, indent + d - 1, cell, out)
  end
  out[#out + 1] = "["
  for k, v in ipairs(level) do
    if v then
      layout(v, d + 1, nd, indent, cell, out)
    else
      out[#out + 1] = "..."
    end
    if k < #level then
      out[#out + 1] = "," .. ("\n"):rep(nd - d) .. (" "):rep(indent + d)
    end
  end
  out[#out + 1] = "]"
end

local function shape_text(shape)
  return "[" .. concat(shape, ", ") .. "]"
end

local function tensor_repr(t)
  local ok, shape = pcall(t.shape, t)
  if not ok then
    return tostring(t)
  end
  local meta = ", shape=" .. shape_text(shape) .. ", dtype=float64"
  if t:grad_fn() then
    meta = meta .. ", grad_fn=" .. t:grad_fn()
  elseif t:requires_grad() then
    meta = meta .. ", requires_grad=true"
  end
  if #shape == 0 then
    local v = t:item()
    return "tensor(" .. number_format({v})(v) .. meta .. ")"
  end
  local shown, cut = {}, t:numel() > SUMMARY_AT
  for d = 1, #shape do
    shown[d] = positions(shape[d], cut)
  end
  local flat = {}
  local values = t:numel() == 0 and {} or gather(t, shown, 1, {}, flat)
  local form = number_format(flat)
  local width = 0
  for _, v in ipairs(flat) do
    width = math.max(width, #form(v))
  end
  local function cell(v)
    local s = form(v)
    return (" "):rep(width - #s) .. s
  end
  local out = {"tensor("}
  layout(values, 1, #shape, #"tensor(", cell, out)
  out[#out + 1] = meta .. ")"
  return concat(out)
end

-- A tensor inside a table: its values when few, else its shape.
local function tensor_brief(t)
  local ok, shape = pcall(t.shape, t)
  if not ok then
    return tostring(t)
  end
  if #shape <= 1 and t:numel() <= 8 then
    return (tensor_repr(t):gsub(", dtype=float64", ""))
  end
  return "tensor(shape=" .. shape_text(shape) .. ")"
end

-- ---- models --------------------------------------------------------------

local function model_repr(m)
  local lines = {tostring(m)}
  local ok, n = pcall(m.nlayers, m)
  local params = m:parameters()
  if ok and n and n >= 1 then
    local widths = {}
    for i = 1, #params do
      local s = params[i]:shape()
      if #s == 2 then
        if #widths == 0 then widths[1] = s[1] end
        widths[#widths + 1] = s[2]
      end
    end
    local act = m:activation()
    local line = "  layers " .. concat(widths, " -> ")
    if n > 1 and act ~= "identity" then
      line = line .. ", " .. act .. " between layers"
    end
    lines[#lines + 1] = line
  end
  local shapes = {}
  for i = 1, #params do
    shapes[i] = shape_text(params[i]:shape())
  end
  lines[#lines + 1] = "  parameters " .. concat(shapes, ", ")
  return concat(lines, "\n")
end

-- ---- other values ------------------------------------------------------

local function function_repr(f)
  if f == d2r.help then
    return "function: d2r.help (help() for an overview, help(x) for x)"
  end
  local names = d2r._names and d2r._names(f) or {}
  if names[1] then
    return "function: " .. names[1]
  end
  return tostring(f)
end

local brief

local function key_repr(k)
  if type(k) == "string" and k:match("^[%a_][%w_]*$") then
    return k
  end
  return "[" .. brief(k, MAX_DEPTH, {}) .. "]"
end

-- Keys of a table in display order: the sequence, then the rest sorted.
local function ordered_keys(t)
  local n, rest = #t, {}
  for k in pairs(t) do
    if not (math.type(k) == "integer" and k >= 1 and k <= n) then
      rest[#rest + 1] = k
    end
  end
  table.sort(rest, function(a, b)
    local ta, tb = type(a), type(b)
    if ta ~= tb then return ta < tb end
    if ta == "number" or ta == "string" then return a < b end
    return tostring(a) < tostring(b)
  end)
  return n, rest
end

local function table_repr(t, depth, seen, indent)
  if seen[t] then
    return "{<cycle>}"
  end
  if depth >= MAX_DEPTH then
    return next(t) == nil and "{}" or "{...}"
  end
  seen[t] = true
  local n, rest = ordered_keys(t)
  local items, total = {}, n + #rest
  for i = 1, math.min(n, MAX_ITEMS) do
    items[#items + 1] = brief(t[i], depth + 1, seen, indent .. "  ")
  end
  for i = 1, math.min(#rest, MAX_ITEMS - #items) do
    local k = rest[i]
    items[#items + 1] = key_repr(k) .. " = " ..
      brief(t[k], depth + 1, seen, indent .. "  ")
  end
  if total > #items then
    items[#items + 1] = fmt("... (%d more)", total - #items)
  end
  seen[t] = nil
  local one = "{" .. concat(items, ", ") .. "}"
  if #one + #indent <= WIDTH and not one:find("\n") then
    return one
  end
  return "{\n" .. indent .. "  " .. concat(items, ",\n" .. indent .. "  ")
    .. "\n" .. indent .. "}"
end

-- A value inside a table.
function brief(v, depth, seen, indent)
  indent = indent or ""
  local tv = type(v)
  if tv == "string" then
    return fmt("%q", v):gsub("\\\n", "\\n")
  elseif d2r.is_tensor(v) then
    return tensor_brief(v)
  elseif tv == "function" then
    return function_repr(v)
  elseif tv == "table" and not (getmetatable(v) or {}).__tostring then
    return table_repr(v, depth, seen, indent)
  end
  return tostring(v)
end

--- d2r.repr(v): the text the REPL shows for v.
function d2r.repr(v)
  local mt = getmetatable(v)
  local name = type(mt) == "table" and rawget(mt, "__name")
  if d2r.is_tensor(v) then
    return tensor_repr(v)
  elseif name == "d2r.Model" then
    local ok, s = pcall(model_repr, v)
    return ok and s or tostring(v)
  elseif type(v) == "string" then
    return v
  elseif type(v) == "function" then
    return function_repr(v)
  elseif type(v) == "table" and not (mt and mt.__tostring) then
    return table_repr(v, 0, {}, "")
  end
  return tostring(v)
end
