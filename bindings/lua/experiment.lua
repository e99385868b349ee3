-- Experiment plumbing for scripts: command-line options, result files that
-- are written as a run goes and let an interrupted experiment resume, and
-- summary statistics and tables.  Runs inside the d2r module: `...` is the
-- module table.
local d2r = ...

local floor, sqrt = math.floor, math.sqrt

-- ---- command-line options ---------------------------------------------

-- Parses `--name value`, `--name=value` and `--flag` from an argument list
-- against a table of defaults; the type of each default decides how its
-- value is read (numbers, booleans, strings, and lists of strings or
-- numbers written with commas).  Unknown options are errors; `--help`
-- returns nil and a usage text.
function d2r.options(args, defaults, usage)
  local opts = {}
  for k, v in pairs(defaults) do opts[k] = v end
  local function convert(name, text)
    local def = defaults[name]
    local kind = type(def)
    if kind == "number" then
      local n = tonumber(text)
      if not n then
        error(("option --%s: '%s' is not a number"):format(name, text), 0)
      end
      return n
    elseif kind == "boolean" then
      if text == "true" or text == "1" or text == "yes" then return true end
      if text == "false" or text == "0" or text == "no" then return false end
      error(("option --%s: '%s' is not a boolean"):format(name, text), 0)
    elseif kind == "table" then
      local list, numeric = {}, type(def[1]) == "number"
      for item in text:gmatch("[^,]+") do
        local v = numeric and tonumber(item) or item
        if v == nil then
          error(("option --%s: '%s' is not a number"):format(name, item), 0)
        end
        list[#list + 1] = v
      end
      return list
    end
    return text
  end
  local i = 1
  while i <= #args do
    local a = args[i]
    local name, value = a:match("^%-%-([%w_%-]+)=(.*)$")
    if not name then name = a:match("^%-%-([%w_%-]+)$") end
    if not name then
      error(("unexpected argument '%s' (options look like --name value)")
            :format(a), 0)
    end
    name = name:gsub("%-", "_")
    if name == "help" then return nil, usage or "" end
    if defaults[name] == nil then
      error(("unknown option --%s"):format(name), 0)
    end
    if value == nil then
      if type(defaults[name]) == "boolean" then
        value = "true"
      else
        i = i + 1
        value = args[i]
        if value == nil then
          error(("option --%s needs a value"):format(name), 0)
        end
      end
    end
    opts[name] = convert(name, value)
    i = i + 1
  end
  return opts
end

-- The option names given on a command line (--name or --name=value,
-- dashes read as underscores).
local function given_names(args)
  local names = {}
  for _, a in ipairs(args) do
    local name = type(a) == "string" and a:match("^%-%-([^=]+)")
    if name then names[name:gsub("%-", "_")] = true end
  end
  return names
end

-- Options of an experiment script: d2r.options over `arg` with `quick`
-- and `out` added; a bad option prints its message and exits with status
-- 2, --help prints the usage and returns nil.  With --quick the fields of
-- the table quick replace the options not given on the command line;
-- out defaults to results/NAME (or results/NAME_quick).
function d2r.script_options(name, defaults, usage, quick)
  local all = {quick = false, out = ""}
  for k, v in pairs(defaults) do all[k] = v end
  local ok, opts, text = pcall(d2r.options, arg or {}, all, usage)
  if not ok then
    io.stderr:write(opts, "\n")
    os.exit(2)
  end
  if not opts then
    print(text)
    return nil
  end
  if opts.quick then
    local given = given_names(arg or {})
    for k, v in pairs(quick or {}) do
      if not given[k] then opts[k] = v end
    end
  end
  if opts.out == "" then
    opts.out = "results/" .. name .. (opts.quick and "_quick" or "")
  end
  return opts
end

-- ---- files --------------------------------------------------------------

local function csv_cell(v)
  if type(v) == "number" then
    if v == floor(v) and math.abs(v) < 2^53 then
      return ("%d"):format(v)
    end
    return ("%.17g"):format(v)
  end
  v = tostring(v)
  if v:find('[,"\n]') then v = '"' .. v:gsub('"', '""') .. '"' end
  return v
end

local function split_csv_line(line)
  local cells, pos = {}, 1
  while pos <= #line + 1 do
    if line:sub(pos, pos) == '"' then
      local buf, j = {}, pos + 1
      while true do
        local q = line:find('"', j, true)
        if not q then return nil end
        buf[#buf + 1] = line:sub(j, q - 1)
        if line:sub(q + 1, q + 1) == '"' then
          buf[#buf + 1] = '"'
          j = q + 2
        else
          pos = q + 2
          break
        end
      end
      cells[#cells + 1] = table.concat(buf)
    else
      local c = line:find(",", pos, true) or #line + 1
      cells[#cells + 1] = line:sub(pos, c - 1)
      pos = c + 1
    end
  end
  return cells
end

-- Reads a CSV file with a header into a list of rows keyed by column name
-- (numbers converted), the header, and whether lines cut short by a crash
-- were skipped.  A missing file gives an empty list; a malformed one gives
-- nil and a message.
function d2r.read_results(path)
  local f = io.open(path, "r")
  if not f then return {} end
  local header, rows, lineno, damaged = nil, {}, 0, false
  for line in f:lines() do
    lineno = lineno + 1
    local cells = split_csv_line(line)
    if not cells then
      f:close()
      return nil, ("%s:%d: unterminated quote"):format(path, lineno)
    end
    if not header then
      header = cells
    elseif #cells == #header then
      local row = {}
      for k, name in ipairs(header) do
        row[name] = tonumber(cells[k]) or cells[k]
      end
      rows[#rows + 1] = row
    else
      -- A line cut short by a crash mid-write: skipped, and the run it
      -- belongs to is redone.
      damaged = true
    end
  end
  f:close()
  return rows, header, damaged
end

-- Writes rows to a CSV file at once, through a temporary file renamed into
-- place, so a reader never sees half a file.
function d2r.write_csv(path, columns, rows)
  local dir = path:match("^(.*)/[^/]*$")
  if dir and dir ~= "" then d2r.mkdir(dir) end
  local tmp = path .. ".tmp"
  local f = assert(io.open(tmp, "w"))
  f:write(table.concat(columns, ","), "\n")
  for _, row in ipairs(rows) do
    local cells = {}
    for k, name in ipairs(columns) do cells[k] = csv_cell(row[name]) end
    f:write(table.concat(cells, ","), "\n")
  end
  f:close()
  assert(os.rename(tmp, path))
end

-- A results file that rows are appended to.  The header is written when
-- the file is new; an existing file must have the same columns.  Each
-- call to :append writes and flushes its rows at once, so an experiment
-- that stops loses only what it had not appended yet.
function d2r.results_file(path, columns)
  local dir = path:match("^(.*)/[^/]*$")
  if dir and dir ~= "" then d2r.mkdir(dir) end
  local existing, header, damaged = d2r.read_results(path)
  if not existing then error(header, 2) end
  if damaged then d2r.write_csv(path, header, existing) end
  if header and table.concat(header, ",") ~= table.concat(columns, ",") then
    error(("%s has columns %s, expected %s; move it away or choose "
           .. "another output folder"):format(path, table.concat(header, ","),
           table.concat(columns, ",")), 2)
  end
  local f, err = io.open(path, "a")
  if not f then error(err, 2) end
  if not header then
    f:write(table.concat(columns, ","), "\n")
    f:flush()
  end
  local obj = {path = path, columns = columns, rows = existing}
  function obj:append(rows)
    local out = {}
    for _, row in ipairs(rows) do
      local cells = {}
      for k, name in ipairs(columns) do
        local v = row[name]
        if v == nil then
          error(("results row lacks column '%s'"):format(name), 2)
        end
        cells[k] = csv_cell(v)
      end
      out[#out + 1] = table.concat(cells, ",")
      self.rows[#self.rows + 1] = row
    end
    if #out > 0 then
      f:write(table.concat(out, "\n"), "\n")
      f:flush()
    end
  end
  function obj:close() f:close() end
  return obj
end

-- ---- statistics and tables -------------------------------------------

d2r.stats = {}

function d2r.stats.mean(xs)
  local s = 0
  for _, x in ipairs(xs) do s = s + x end
  return #xs > 0 and s / #xs or 0 / 0
end

-- Sample standard deviation (n - 1); 0 for a single value.
function d2r.stats.std(xs)
  local n = #xs
  if n < 2 then return n == 1 and 0 or 0 / 0 end
  local m, s = d2r.stats.mean(xs), 0
  for _, x in ipairs(xs) do s = s + (x - m) ^ 2 end
  return sqrt(s / (n - 1))
end

-- Formats rows (lists of strings) under headers as an aligned text table.
function d2r.format_table(headers, rows)
  local width = {}
  for k, h in ipairs(headers) do width[k] = #h end
  for _, row in ipairs(rows) do
    for k, cell in ipairs(row) do
      width[k] = math.max(width[k] or 0, #tostring(cell))
    end
  end
  local function line(cells)
    local out = {}
    for k, cell in ipairs(cells) do
      local s = tostring(cell)
      out[k] = k == 1 and s .. (" "):rep(width[k] - #s)
                      or (" "):rep(width[k] - #s) .. s
    end
    return table.concat(out, "  ")
  end
  local rule = {}
  for k in ipairs(headers) do rule[k] = ("-"):rep(width[k]) end
  local out = {line(headers), line(rule)}
  for _, row in ipairs(rows) do out[#out + 1] = line(row) end
  return table.concat(out, "\n")
end
