-- The documentation of the API at run time: d2r.doc and d2r.help read the
-- entries of bindings/REFERENCE.md (compiled into the module and passed
-- here as the second argument), so what the REPL shows is the reference.
-- An entry is a `### ` heading naming one or more functions in backquotes
-- (`d2r.zeros(shape...)`, `Tensor:sum([axis])`, `d2r.stats.mean(xs)`),
-- followed by its text; a `## ` heading naming a type (`d2r.Tensor`) or a
-- namespace (`d2r.stats`) documents it with the text before its first
-- entry.  Runs inside the d2r module: `...` is the module table.
local d2r, reference = ...

local entries, keys          -- name -> entry; all names in file order
local parsed = false

-- ---- reading the reference ---------------------------------------------

-- The names an entry heading declares: each backquoted span that reads
-- as a name, up to its parenthesis.
local function heading_names(line)
  local names, seen = {}, {}
  for span in line:gmatch("`([^`]+)`") do
    local name = span:match("^([%a_][%w_%.:]*)%s*%(") or
      span:match("^([%a_][%w_%.:]*)$")
    if name and not seen[name] and
       (name:find("^d2r%.") or name:find("^%u[%w_]*:")) then
      seen[name] = true
      names[#names + 1] = name
    end
  end
  return names
end

local function add_entry(entry)
  for _, name in ipairs(entry.names) do
    if not entries[name] then
      entries[name] = entry
      keys[#keys + 1] = name
    end
  end
end

-- Reads the reference into entries: headings start entries (a heading
-- that ends with a comma goes on over the next lines), and everything up
-- to the next heading (outside code fences) is their text.  An entry
-- naming no function joins the text of its section.
local function parse()
  if parsed then
    return
  end
  parsed = true
  entries, keys = {}, {}
  local entry, section
  local fenced, continued = false, false
  local function close()
    if not entry then
      return
    end
    local body = table.concat(entry.lines, "\n"):gsub("^%s+", "")
      :gsub("%s+$", "")
    entry.lines = nil
    if #entry.names == 0 and entry ~= section and section then
      section.body = section.body .. "\n\n" .. entry.heading .. "\n" .. body
    else
      entry.body = body
      entry.names = heading_names(entry.heading)
      if entry == section then
        table.insert(entry.names, entry.title)
      end
      add_entry(entry)
    end
    entry = nil
  end
  for line in (reference .. "\n"):gmatch("([^\n]*)\n") do
    if line:find("^```") then
      fenced = not fenced
    end
    local level, title = line:match("^(##+)%s+(.*)$")
    if fenced then
      level = nil
    end
    if continued and entry then
      entry.heading = entry.heading .. "\n" .. line
      continued = line:find(",%s*$") ~= nil
    elseif level then
      close()
      entry = {heading = title, lines = {}, names = heading_names(title),
               level = #level}
      continued = #level == 3 and title:find(",%s*$") ~= nil
      if #level == 2 then
        section = entry
        entry.members = {}
        entry.title = title:gsub("%s*%(.*$", ""):gsub("`", "")
      elseif section then
        table.insert(section.members, entry)
      end
    elseif entry then
      entry.lines[#entry.lines + 1] = line
    end
  end
  close()
end

-- ---- naming the values of the module -----------------------------------

local names_of              -- value -> list of names
local type_methods          -- type name ("Tensor") -> method table

-- The method table behind a metatable's __index (a table, or the first
-- upvalue of an __index function, as a tensor's is).
local function method_table(mt)
  local index = type(mt) == "table" and rawget(mt, "__index")
  if type(index) == "function" then
    local _, up = debug.getupvalue(index, 1)
    index = up
  end
  return type(index) == "table" and index or nil
end

local function add_name(v, name)
  local list = names_of[v]
  if not list then
    list = {}
    names_of[v] = list
  end
  list[#list + 1] = name
end

local function walk_methods(tname, methods)
  type_methods[tname] = methods
  add_name(methods, "d2r." .. tname)
  for k, f in pairs(methods) do
    if type(k) == "string" and type(f) == "function" then
      add_name(f, tname .. ":" .. k)
    end
  end
end

-- Names the functions and tables reachable from t (a namespace).
local function walk(t, prefix, depth, seen)
  seen[t] = true
  for k, v in pairs(t) do
    if type(k) == "string" and not k:find("^_") then
      local name = prefix .. "." .. k
      if type(v) == "table" and k:find("^%u") then
        if not type_methods[k] then
          walk_methods(k, v)
        end
      elseif type(v) == "function" then
        add_name(v, name)
      elseif type(v) == "table" and not seen[v] and depth < 3 then
        add_name(v, name)
        walk(v, name, depth + 1, seen)
      end
    end
  end
end

local function index_values()
  names_of, type_methods = {}, {}
  for k, mt in pairs(debug.getregistry()) do
    local tname = type(k) == "string" and k:match("^d2r%.(%u[%w_]*)$")
    local methods = tname and method_table(mt)
    if methods then
      walk_methods(tname, methods)
    end
  end
  add_name(d2r, "d2r")
  walk(d2r, "d2r", 1, {})
end

-- The value a documented name stands for, or nil.
local function resolve(name)
  local tname, method = name:match("^(%u[%w_]*):([%w_]+)$")
  if tname then
    local methods = type_methods[tname]
    return methods and methods[method]
  end
  tname = name:match("^d2r%.(%u[%w_]*)$")
  if tname and type_methods[tname] then
    return type_methods[tname]
  end
  local v = {d2r = d2r}
  for part in name:gmatch("[^%.]+") do
    if type(v) ~= "table" then
      return nil
    end
    v = rawget(v, part)
  end
  return v
end

-- ---- rendering -----------------------------------------------------------

local function plain(s)
  return (s:gsub("`", ""):gsub("%*%*", ""))
end

-- Lays out words in lines of at most width columns, indented.
local function wrap(words, indent, width)
  local lines, line = {}, indent
  for _, w in ipairs(words) do
    if #line > #indent and #line + 1 + #w > width then
      lines[#lines + 1] = line
      line = indent
    end
    line = line .. (#line > #indent and " " or "") .. w
  end
  lines[#lines + 1] = line
  return table.concat(lines, "\n")
end

local function render(entry, no_members)
  local out = {plain(entry.heading)}
  if entry.body and entry.body ~= "" then
    out[#out + 1] = ""
    out[#out + 1] = plain(entry.body)
  end
  if entry.members and #entry.members > 0 and not no_members then
    out[#out + 1] = ""
    out[#out + 1] = "Entries (help(name) for one):"
    for _, m in ipairs(entry.members) do
      if #m.names > 0 then
        out[#out + 1] = wrap(m.names, "  ", 78)
      end
    end
  end
  return table.concat(out, "\n")
end

-- The text for a type: its own entry (if any) and its methods.
local function render_type(tname)
  local out = {}
  local entry = entries["d2r." .. tname]
  if entry then
    out[1] = render(entry, true)
  else
    out[1] = "d2r." .. tname
  end
  local methods = type_methods[tname]
  if methods then
    local list = {}
    for k, v in pairs(methods) do
      if type(k) == "string" and type(v) == "function" then
        list[#list + 1] = k
      end
    end
    table.sort(list)
    out[#out + 1] = "\nMethods (help(\"" .. tname .. ":name\") for one):"
    out[#out + 1] = wrap(list, "  ", 78)
  end
  return table.concat(out, "\n")
end

local function overview()
  local intro = reference:match("^#[^\n]*\n%s*(.-)\n%s*\n") or ""
  local out = {plain(intro), "",
               "Sections (help(\"name\") for one):"}
  for _, name in ipairs(keys) do
    local e = entries[name]
    if e.level == 2 and e.title == name then
      out[#out + 1] = "  " .. name
    end
  end
  return table.concat(out, "\n")
end

-- ---- lookup ----------------------------------------------------------------

local function doc_of_value(v)
  if v == d2r then
    return overview()
  end
  local mt = getmetatable(v)
  if type(v) == "userdata" and type(mt) == "table" then
    local tname = tostring(rawget(mt, "__name") or ""):match("^d2r%.(.+)$")
    if tname and (entries["d2r." .. tname] or type_methods[tname]) then
      return render_type(tname)
    end
  end
  for _, name in ipairs(names_of[v] or {}) do
    local tname = name:match("^d2r%.(%u[%w_]*)$")
    if tname and type_methods[tname] == v then
      return render_type(tname)
    end
    if entries[name] then
      return render(entries[name])
    end
  end
  return nil
end

-- Entries whose last name part is `word`, for a bare method name.
local function by_last_part(word)
  local found, seen = {}, {}
  for _, name in ipairs(keys) do
    local last = name:match("[%.:]([%w_]+)$")
    local e = entries[name]
    if last == word and not seen[e] then
      seen[e] = true
      found[#found + 1] = render(e)
    end
  end
  if #found > 0 then
    return table.concat(found, "\n\n")
  end
end

local function doc_of_name(s)
  s = s:gsub("^%s+", ""):gsub("%s+$", "")
  local tname = s:match("^d2r%.(%u[%w_]*)$") or s:match("^(%u[%w_]*)$")
  if tname and (type_methods[tname] or entries["d2r." .. tname]) then
    return render_type(tname)
  end
  if entries[s] then
    return render(entries[s])
  end
  if s == "d2r" then
    return overview()
  end
  for _, name in ipairs{s, "d2r." .. s, (s:gsub("%.([%w_]+)$", ":%1"))} do
    local ok, v = pcall(resolve, name)
    if ok and v ~= nil then
      local text = doc_of_value(v)
      if text then
        return text
      end
    end
  end
  return by_last_part(s)
end

-- Names of documented entries that contain s, for a suggestion.
local function similar(s)
  local list = {}
  for _, name in ipairs(keys) do
    if #s >= 2 and name:lower():find(s:lower(), 1, true) then
      list[#list + 1] = name
    end
  end
  return list
end

--- d2r.doc([x]): the documentation text of x (a d2r function, object,
--- type or namespace, or a name as a string), or nil and a message;
--- d2r.doc() lists every documented name.
function d2r.doc(...)
  parse()
  index_values()
  if select("#", ...) == 0 then
    local list = table.move(keys, 1, #keys, 1, {})
    table.sort(list)
    return list
  end
  local x = ...
  local text
  if type(x) == "string" then
    text = doc_of_name(x)
  else
    text = doc_of_value(x)
  end
  if text then
    return text
  end
  local what = type(x) == "string" and ("'" .. x .. "'") or tostring(x)
  local msg = "no documentation for " .. what
  if type(x) == "string" then
    local near = similar(x)
    if #near > 0 and #near <= 12 then
      msg = msg .. "; see " .. table.concat(near, ", ")
    end
  end
  return nil, msg
end

--- d2r.help([x]): prints the documentation of x (see d2r.doc); with no
--- argument, an overview.
function d2r.help(...)
  local text, msg
  if select("#", ...) == 0 then
    text = d2r.doc(d2r)
  else
    text, msg = d2r.doc(...)
  end
  io.write(text or msg, "\n")
end

-- Private helpers (a leading underscore keeps them out of the API): the
-- names under which v is reachable, and the value a name stands for.
function d2r._names(v)
  index_values()
  return names_of[v] or {}
end

function d2r._resolve(name)
  index_values()
  return resolve(name)
end
