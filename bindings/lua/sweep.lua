-- The experiment runner.  A sweep is a grid of configurations times a
-- number of repeats; each run's seed is a stable hash (FNV-1a) of the
-- base seed, its configuration and its repeat index, so any run can be
-- re-created from its row.  Runs execute in forked worker processes, a
-- process per run or a chunk of runs per process (or across MPI ranks,
-- or Slurm array tasks), and their status, timings
-- and metrics go to an SQLite store as they finish, so running a sweep
-- again resumes where the last one stopped.  Also reading a store back,
-- CSV export, merging shard stores, and the `d2r summary`, `d2r status`,
-- `d2r export` and `d2r merge` subcommands (d2r.commands).
-- Runs inside the d2r module: `...` is the module table.
local d2r = ...

local spack, sunpack = string.pack, string.unpack
local huge, floor = math.huge, math.floor

local sweep = {}

-- A type of objects made here, registered under its name as the C parts
-- register theirs (so argument errors and d2r.help know it).
local function new_type(name)
  local t = {__name = "d2r." .. name}
  t.__index = t
  debug.getregistry()[t.__name] = t
  return t
end

local Sweep = new_type("Sweep")

local TAG_RUN, TAG_DONE = 1, 2

-- ---- messages between processes -----------------------------------------

-- Lua values (nil, booleans, numbers, strings and tables of them) as
-- bytes and back; NaN and integers survive the trip.
local function ser(v, out)
  local t = type(v)
  if t == "nil" then
    out[#out + 1] = "n"
  elseif t == "boolean" then
    out[#out + 1] = v and "T" or "F"
  elseif t == "number" then
    if math.type(v) == "integer" then
      out[#out + 1] = spack("<c1j", "i", v)
    else
      out[#out + 1] = spack("<c1d", "d", v)
    end
  elseif t == "string" then
    out[#out + 1] = spack("<c1s4", "s", v)
  elseif t == "table" then
    out[#out + 1] = "t"
    for k, x in pairs(v) do
      ser(k, out)
      ser(x, out)
    end
    out[#out + 1] = "e"
  else
    error(("cannot send a %s value"):format(t), 0)
  end
end

local function serialise(v)
  local out = {}
  ser(v, out)
  return table.concat(out)
end

local function deser(s, pos)
  local tag = s:sub(pos, pos)
  if tag == "n" then return nil, pos + 1 end
  if tag == "T" then return true, pos + 1 end
  if tag == "F" then return false, pos + 1 end
  if tag == "i" then return sunpack("<j", s, pos + 1) end
  if tag == "d" then return sunpack("<d", s, pos + 1) end
  if tag == "s" then return sunpack("<s4", s, pos + 1) end
  if tag == "t" then
    local t = {}
    pos = pos + 1
    while s:sub(pos, pos) ~= "e" do
      if pos > #s then error("truncated message", 0) end
      local k, x
      k, pos = deser(s, pos)
      x, pos = deser(s, pos)
      t[k] = x
    end
    return t, pos + 1
  end
  error("malformed message", 0)
end

local function deserialise(s)
  local v, pos = deser(s, 1)
  if pos ~= #s + 1 then error("malformed message", 0) end
  return v
end

-- ---- canonical JSON ------------------------------------------------------

local escapes = {
  ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f",
  ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t",
}

local function quote(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    return escapes[c] or ("\\u%04x"):format(c:byte())
  end) .. '"'
end

-- The shortest of %.15g, %.16g, %.17g that reads back as x; integral
-- values print as integers, so 1 and 1.0 encode alike.
local function number_text(x)
  if math.type(x) == "integer" then return ("%d"):format(x) end
  if x == floor(x) and math.abs(x) < 2 ^ 53 then
    return ("%d"):format(math.tointeger(x))
  end
  for _, f in ipairs{"%.15g", "%.16g"} do
    local s = f:format(x)
    if tonumber(s) == x then return s end
  end
  return ("%.17g"):format(x)
end

local function encode(v, out, where)
  local t = type(v)
  if t == "string" then
    out[#out + 1] = quote(v)
  elseif t == "number" then
    if v ~= v or v == huge or v == -huge then
      error(("%s is not a finite number"):format(where), 0)
    end
    out[#out + 1] = number_text(v)
  elseif t == "boolean" then
    out[#out + 1] = tostring(v)
  elseif t == "table" then
    local n, count, keys = #v, 0, {}
    for k in pairs(v) do
      count = count + 1
      if type(k) == "string" then keys[#keys + 1] = k end
    end
    if count == n then
      out[#out + 1] = "["
      for i = 1, n do
        if i > 1 then out[#out + 1] = "," end
        encode(v[i], out, ("%s[%d]"):format(where, i))
      end
      out[#out + 1] = "]"
    elseif #keys == count then
      table.sort(keys)
      out[#out + 1] = "{"
      for i, k in ipairs(keys) do
        if i > 1 then out[#out + 1] = "," end
        out[#out + 1] = quote(k)
        out[#out + 1] = ":"
        encode(v[k], out, where .. "." .. k)
      end
      out[#out + 1] = "}"
    else
      error(("%s is neither a list nor a table of named fields")
            :format(where), 0)
    end
  else
    error(("%s is a %s, which a configuration cannot hold")
          :format(where, t), 0)
  end
end

-- Canonical JSON of a value: object keys sorted, numbers in their
-- shortest exact form.  Equal configurations give equal text.
function sweep.encode(v)
  local out = {}
  encode(v, out, "value")
  return table.concat(out)
end

local unescape = {
  b = "\b", f = "\f", n = "\n", r = "\r", t = "\t", ['"'] = '"',
  ["\\"] = "\\", ["/"] = "/",
}

-- Parses JSON text; null becomes nil.  Malformed text raises.
function sweep.decode(s)
  local pos = 1
  local function fail(msg)
    error(("json: %s at byte %d"):format(msg, pos), 0)
  end
  local function skip()
    pos = s:find("[^ \t\r\n]", pos) or #s + 1
  end
  local function str()
    local buf, i = {}, pos + 1
    while true do
      local j = s:find('["\\]', i)
      if not j then fail("unterminated string") end
      buf[#buf + 1] = s:sub(i, j - 1)
      if s:sub(j, j) == '"' then
        pos = j + 1
        return table.concat(buf)
      end
      local c = s:sub(j + 1, j + 1)
      if c == "u" then
        local hex = s:match("^%x%x%x%x", j + 2)
        if not hex then fail("bad \\u escape") end
        local cp = tonumber(hex, 16)
        i = j + 6
        local lo = s:match("^\\u(%x%x%x%x)", i)
        if cp >= 0xD800 and cp < 0xDC00 and lo then
          cp = 0x10000 + (cp - 0xD800) * 0x400 + tonumber(lo, 16) - 0xDC00
          i = i + 6
        end
        buf[#buf + 1] = utf8.char(cp)
      elseif unescape[c] then
        buf[#buf + 1] = unescape[c]
        i = j + 2
      else
        fail("bad escape")
      end
    end
  end
  local value
  local function list(close, item)
    pos = pos + 1
    skip()
    if s:sub(pos, pos) == close then
      pos = pos + 1
      return
    end
    while true do
      item()
      skip()
      local d = s:sub(pos, pos)
      pos = pos + 1
      if d == close then return end
      if d ~= "," then fail("expected ',' or '" .. close .. "'") end
    end
  end
  function value()
    skip()
    local c = s:sub(pos, pos)
    if c == "{" then
      local t = {}
      list("}", function()
        skip()
        if s:sub(pos, pos) ~= '"' then fail("expected a name") end
        local k = str()
        skip()
        if s:sub(pos, pos) ~= ":" then fail("expected ':'") end
        pos = pos + 1
        t[k] = value()
      end)
      return t
    elseif c == "[" then
      local t, n = {}, 0
      list("]", function()
        n = n + 1
        t[n] = value()
      end)
      return t
    elseif c == '"' then
      return str()
    end
    for word, v in pairs{["true"] = true, ["false"] = false} do
      if s:sub(pos, pos + #word - 1) == word then
        pos = pos + #word
        return v
      end
    end
    if s:sub(pos, pos + 3) == "null" then
      pos = pos + 4
      return nil
    end
    local lit = s:match("^-?%d+%.?%d*[eE]?[-+]?%d*", pos)
    local n = lit and tonumber(lit)
    if not n then fail("unexpected text") end
    pos = pos + #lit
    return n
  end
  local v = value()
  skip()
  if pos <= #s then fail("trailing text") end
  return v
end

-- ---- seeds ---------------------------------------------------------------

-- 64-bit FNV-1a of a string (integer arithmetic wraps modulo 2^64).
function sweep.hash(s)
  local h = 0xcbf29ce484222325
  for i = 1, #s do
    h = (h ~ s:byte(i)) * 0x100000001b3
  end
  return h
end

-- The seed of a run: FNV-1a of the canonical JSON of {base, config,
-- rep}, mixed by MurmurHash3's 64-bit finaliser (FNV alone leaves
-- texts that differ in their last bytes with close hashes), then cut to
-- 31 bits (1 .. 2^31 - 1, so any generator takes it).
function sweep.seed(base, config, rep)
  local h = sweep.hash(sweep.encode{base, config, rep})
  h = (h ~ (h >> 33)) * 0xff51afd7ed558ccd
  h = (h ~ (h >> 33)) * 0xc4ceb9fe1a85ec53
  h = h ~ (h >> 33)
  local s = h & 0x7fffffff
  return s == 0 and 1 or s
end

-- ---- declaring a sweep ---------------------------------------------------

-- Names that runs and metrics rows use for their own columns.
local reserved = {
  run = true, rep = true, seed = true, status = true, error = true,
  epoch = true, split = true, name = true, value = true, seconds = true,
  attempts = true, revision = true, host = true, worker = true,
  started = true, finished = true, key = true, config = true,
}

local function count(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end

local function is_list(v)
  return type(v) == "table" and v[1] ~= nil and #v == count(v)
end

local function copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end

-- Orders names: those in order first (in that order), then the rest
-- alphabetically.
local function ordered(names, order)
  local pos = {}
  for i, k in ipairs(order or {}) do pos[k] = i end
  table.sort(names, function(a, b)
    local pa, pb = pos[a], pos[b]
    if pa and pb then return pa < pb end
    if pa or pb then return pa ~= nil end
    return a < b
  end)
  return names
end

-- The configurations of one grid: the product of its list values, with
-- its other values fixed and its functions derived (in name order, each
-- from the configuration so far).  Returns them and the swept names.
local function expand(grid, order, filter)
  local axes, derived, base = {}, {}, {}
  for k, v in pairs(grid) do
    if type(k) ~= "string" then
      error("sweep: grid keys must be names", 4)
    end
    if reserved[k] then
      error(("sweep: '%s' is a column of the store; rename that grid "
             .. "entry"):format(k), 4)
    end
    if type(v) == "function" then
      derived[#derived + 1] = k
    elseif is_list(v) then
      axes[#axes + 1] = k
    else
      base[k] = v
    end
  end
  ordered(axes, order)
  table.sort(derived)
  local configs = {}
  local function product(a, cfg)
    if a > #axes then
      local c = copy(cfg)
      for _, k in ipairs(derived) do c[k] = grid[k](c) end
      if not filter or filter(c) then configs[#configs + 1] = c end
      return
    end
    for _, v in ipairs(grid[axes[a]]) do
      cfg[axes[a]] = v
      product(a + 1, cfg)
    end
    cfg[axes[a]] = nil
  end
  product(1, base)
  return configs, axes
end

local function value_text(v)
  if type(v) == "string" then return v end
  if type(v) == "number" then return number_text(v) end
  if type(v) == "table" then return sweep.encode(v) end
  return tostring(v)
end

local spec_fields = {
  name = true, store = true, grid = true, grids = true, order = true,
  repeats = true, base_seed = true, seed_by = true, run = true,
  workers = true, timeout = true, retry_failed = true, nan = true,
  progress = true, revision = true, filter = true, shard = true,
  shared_store = true, mpi = true, chunk = true,
}

local function check_spec(spec)
  if type(spec) ~= "table" then
    error("sweep: expected a table declaring the sweep", 4)
  end
  for k in pairs(spec) do
    if not spec_fields[k] then
      error(("sweep: unknown field '%s'"):format(tostring(k)), 4)
    end
  end
  if type(spec.run) ~= "function" then
    error("sweep: field 'run' must be the run function", 4)
  end
  local r = spec.repeats or 1
  if math.type(r) ~= "integer" or r < 1 then
    error("sweep: 'repeats' must be a positive integer", 4)
  end
  if spec.base_seed ~= nil and math.type(spec.base_seed) ~= "integer" then
    error("sweep: 'base_seed' must be an integer", 4)
  end
  if spec.nan ~= nil and spec.nan ~= "fail" and spec.nan ~= "keep" then
    error("sweep: 'nan' must be \"fail\" or \"keep\"", 4)
  end
end

-- The part of a configuration that enters the seed: the names in
-- seed_by, or all of it.
local function seed_part(cfg, seed_by)
  if not seed_by then return cfg end
  local part = {}
  for _, k in ipairs(seed_by) do part[k] = cfg[k] end
  return part
end

-- d2r.sweep{...}: declares a sweep; see the fields in check_spec and
-- the documentation of Sweep:run.
local function new_sweep(spec)
  check_spec(spec)
  local self = setmetatable({}, Sweep)
  self.name = spec.name or "sweep"
  self.store = spec.store or ("results/" .. self.name .. ".sqlite")
  self.fn = spec.run
  self.repeats = spec.repeats or 1
  self.base_seed = spec.base_seed or 0
  self.nan = spec.nan or "fail"
  self.options = spec
  local grids = spec.grids or {spec.grid or {}}
  local configs, seen, swept, axes_seen = {}, {}, {}, {}
  for _, g in ipairs(grids) do
    local cs, axes = expand(g, spec.order, spec.filter)
    for _, c in ipairs(cs) do
      local out = {}
      local ok, err = pcall(encode, c, out, "config")
      if not ok then error("sweep: " .. err, 3) end
      local text = table.concat(out)
      if not seen[text] then
        seen[text] = true
        configs[#configs + 1] = {config = c, json = text}
      end
    end
    for _, k in ipairs(axes) do
      if not axes_seen[k] then
        axes_seen[k] = true
        swept[#swept + 1] = k
      end
    end
  end
  self.swept = ordered(swept, spec.order)
  self.list = {}
  for rep = 1, self.repeats do
    for _, c in ipairs(configs) do
      local seed = sweep.seed(self.base_seed, seed_part(c.config,
                              spec.seed_by), rep)
      local run = {
        index = #self.list + 1, config = c.config, json = c.json,
        rep = rep, seed = seed,
        key = ("%s#%d#%d"):format(c.json, rep, seed),
      }
      local label = {}
      for _, k in ipairs(self.swept) do
        label[#label + 1] = k .. "=" .. value_text(c.config[k])
      end
      label[#label + 1] = "rep=" .. rep
      run.label = table.concat(label, " ")
      self.list[#self.list + 1] = run
    end
  end
  return self
end

-- The planned runs, in order: {index, config, rep, seed, key, label}.
function Sweep:runs()
  return self.list
end

-- ---- running one run -----------------------------------------------------

local Context = new_type("RunContext")

-- ctx:log{epoch = e, split = "train", name = value, ...}: records
-- metrics (numbers, one-element tensors; booleans count 0/1).  split
-- defaults to "train".
-- A NaN raises (failing the run) unless the sweep has nan = "keep".
function Context:log(t)
  if type(t) ~= "table" then
    error("log: expected a table {epoch=, split=, name=value...}", 2)
  end
  local epoch, split = t.epoch, t.split or self.split
  if epoch ~= nil then
    epoch = math.tointeger(epoch)
    if not epoch then error("log: epoch must be an integer", 2) end
  end
  if type(split) ~= "string" then
    error("log: split must be a string", 2)
  end
  local rows = {}
  for k, v in pairs(t) do
    if k ~= "epoch" and k ~= "split" then
      if type(k) ~= "string" then
        error("log: metric names must be strings", 2)
      end
      if type(v) == "boolean" then v = v and 1 or 0 end
      if d2r.is_tensor and d2r.is_tensor(v) then v = v:item() end
      if type(v) ~= "number" then
        error(("log: metric '%s' is a %s, not a number")
              :format(k, type(v)), 2)
      end
      if v ~= v and self.nan == "fail" then
        error(("metric '%s' is NaN%s"):format(k, epoch and
              (" at epoch " .. epoch) or ""), 2)
      end
      rows[#rows + 1] = {epoch, split, k, v}
    end
  end
  table.sort(rows, function(a, b) return a[3] < b[3] end)
  if #rows > 0 then self.emit(rows) end
end

-- ctx:rng(): a new generator seeded with the run's seed.
function Context:rng()
  return d2r.rng(self.seed)
end

local function traceback(e)
  if type(e) ~= "string" then
    e = ("(error object is a %s value)"):format(type(e))
  end
  return debug.traceback(e, 2)
end

-- The engine's switches (gradient recording, anomaly detection), as a
-- table, and putting them back.
local function engine_state()
  local anomaly = d2r.detect_anomaly(false)
  d2r.detect_anomaly(anomaly)
  return {grad = d2r.grad_enabled(), anomaly = anomaly}
end

local function restore_engine(st)
  d2r.set_grad_enabled(st.grad)
  d2r.detect_anomaly(st.anomaly)
end

-- Calls the run function in protected mode, passing metrics to emit;
-- returns true or false and the error with its traceback.  A table
-- returned by the run function is logged with split "final".  Every
-- run starts alike wherever it lands (a fresh worker, a worker that ran
-- others before it, or this process): the engine's switches as in
-- `start` (those of the sweep's start; now by default), whatever an
-- earlier run left them at, and math.random seeded from the run's
-- seed.  The switches are put back afterwards.
local function call_run(self, run, emit, start)
  start = start or engine_state()
  restore_engine(start)
  math.randomseed(run.seed)
  local ctx = setmetatable({
    seed = run.seed, rep = run.rep, index = run.index, label = run.label,
    config = run.config, name = self.name, nan = self.nan,
    split = "train", emit = emit,
  }, Context)
  local ok, res = xpcall(self.fn, traceback, copy(run.config), ctx)
  if ok and res ~= nil then
    if type(res) ~= "table" then
      return false, ("run returned a %s; return a table of final "
                     .. "metrics or nothing"):format(type(res))
    end
    ctx.split = "final"
    local t = copy(res)
    t.epoch = nil
    ok, res = pcall(ctx.log, ctx, t)
  end
  restore_engine(start)
  return ok, not ok and tostring(res) or nil
end

-- What a forked worker runs: its runs one after the other, each
-- announced, with its metrics and its outcome sent to the parent as
-- messages.  Given a budget (seconds), it stops after the run that
-- uses it up, and the parent gives the runs it did not start to
-- another worker.
local function worker_main(send, self, runs, budget)
  local function emit(rows) send(serialise{k = "m", rows = rows}) end
  local t0 = d2r.proc.clock()
  for i, run in ipairs(runs) do
    send(serialise{k = "start", i = i})
    local ok, err = call_run(self, run, emit, self.start_state)
    send(serialise(ok and {k = "ok"} or {k = "err", msg = err}))
    if budget and d2r.proc.clock() - t0 >= budget then return end
  end
end

-- Re-creates one run in this process (by index in Sweep:runs(), or a
-- run table): returns its metrics rows {epoch, split, name, value}.
-- Its error, if any, is raised.
function Sweep:run_one(which)
  local run = type(which) == "table" and which or self.list[which]
  if not run then error("run_one: no such run", 2) end
  local rows = {}
  local ok, err = call_run(self, run, function(batch)
    for _, r in ipairs(batch) do
      rows[#rows + 1] = {epoch = r[1], split = r[2], name = r[3],
                         value = r[4]}
    end
  end)
  if not ok then error(err, 0) end
  return rows
end

-- ---- the store -------------------------------------------------------------

local SCHEMA = [[
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS runs (
  id INTEGER PRIMARY KEY,
  key TEXT NOT NULL UNIQUE,
  config TEXT NOT NULL,
  rep INTEGER NOT NULL,
  seed INTEGER NOT NULL,
  status TEXT NOT NULL DEFAULT 'pending',
  error TEXT,
  revision TEXT,
  host TEXT,
  worker TEXT,
  attempts INTEGER NOT NULL DEFAULT 0,
  started REAL,
  finished REAL,
  seconds REAL);
CREATE TABLE IF NOT EXISTS metrics (
  run INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  epoch INTEGER,
  split TEXT,
  name TEXT NOT NULL,
  value REAL);
CREATE INDEX IF NOT EXISTS metrics_run ON metrics(run);
]]

local function parent_dir(path)
  local dir = path:match("^(.*)/[^/]*$")
  if dir and dir ~= "" then d2r.mkdir(dir) end
end

-- Opens (creating if need be) the store at path for experiment name;
-- axes (a list of the swept names, if given) is recorded for summaries.
local function open_store(path, name, axes)
  parent_dir(path)
  local db, err = d2r.sqlite.open(path)
  if not db then error("sweep: cannot open the store " .. err, 0) end
  db:exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
          .. "PRAGMA foreign_keys=ON;")
  db:exec(SCHEMA)
  local rows = db:rows("SELECT value FROM meta WHERE key = 'name'")
  if rows[1] and rows[1].value ~= name then
    db:close()
    error(("sweep: %s holds experiment '%s', not '%s'; choose another "
           .. "store"):format(path, rows[1].value, name), 0)
  end
  db:run("INSERT OR IGNORE INTO meta VALUES ('name', ?)", name)
  db:run("INSERT OR IGNORE INTO meta VALUES ('schema', '1')")
  db:run("INSERT OR IGNORE INTO meta VALUES ('created', ?)",
         os.date("!%Y-%m-%dT%H:%M:%SZ"))
  if axes then
    db:run("INSERT OR REPLACE INTO meta VALUES ('axes', ?)",
           sweep.encode(axes))
  end
  return db
end

local function transaction(db, f)
  db:exec("BEGIN IMMEDIATE")
  local ok, err = pcall(f)
  if ok then
    db:exec("COMMIT")
  else
    pcall(db.exec, db, "ROLLBACK")
    error(err, 0)
  end
end

-- Adds the runs not yet in the store (as pending); returns a table from
-- key to {id, status}.
local function plan(db, runs)
  transaction(db, function()
    local rows = {}
    for _, r in ipairs(runs) do
      rows[#rows + 1] = {r.key, r.json, r.rep, r.seed}
    end
    db:run_many("INSERT OR IGNORE INTO runs (key, config, rep, seed) "
                .. "VALUES (?, ?, ?, ?)", rows)
  end)
  local by_key = {}
  for _, row in ipairs(db:rows("SELECT id, key, status FROM runs")) do
    by_key[row.key] = row
  end
  return by_key
end

local FLUSH_SECONDS = 0.2

-- A sink that writes runs and metrics to the store as they come.
local function store_sink(db, ids)
  local sink = {}
  -- Metric rows are committed in batches, at most FLUSH_SECONDS apart
  -- and always when a run ends: one transaction per log call would cost
  -- more than the runs.  Rows still buffered when the sweep is killed
  -- belong to unfinished runs, which are redone anyway.
  local pending, last_flush = {}, d2r.proc.time()
  local function flush()
    if #pending > 0 then
      transaction(db, function()
        db:run_many("INSERT INTO metrics (run, epoch, split, name, value) "
                    .. "VALUES (?, ?, ?, ?, ?)", pending)
      end)
      pending = {}
    end
    last_flush = d2r.proc.time()
  end
  function sink.start(run, info)
    local id = ids[run.key]
    flush()
    db:run("DELETE FROM metrics WHERE run = ?", id)
    db:run("UPDATE runs SET status = 'running', error = NULL, "
           .. "started = ?, finished = NULL, seconds = NULL, "
           .. "attempts = attempts + 1, host = ?, worker = ?, "
           .. "revision = ? WHERE id = ?", info.started, info.host,
           info.worker, info.revision, id)
  end
  function sink.rows(run, rows)
    local id = ids[run.key]
    for _, r in ipairs(rows) do
      pending[#pending + 1] = {id, r[1], r[2], r[3], r[4]}
    end
    if d2r.proc.time() - last_flush >= FLUSH_SECONDS then flush() end
  end
  function sink.finish(run, info)
    flush()
    db:run("UPDATE runs SET status = ?, error = ?, finished = ?, "
           .. "seconds = ? WHERE id = ?", info.status, info.error,
           info.finished, info.seconds, ids[run.key])
  end
  function sink.abort(run)
    flush()
    db:run("UPDATE runs SET status = 'pending' WHERE id = ?", ids[run.key])
  end
  return sink
end

-- A sink (on an MPI rank other than 0) that sends each finished run,
-- with its metrics, to rank 0.
local function remote_sink()
  local sink, open = {}, {}
  function sink.start(run, info)
    open[run.key] = {key = run.key, index = run.index, start = info,
                     rows = {}}
  end
  function sink.rows(run, rows)
    local rec = open[run.key]
    for _, r in ipairs(rows) do rec.rows[#rec.rows + 1] = r end
  end
  function sink.finish(run, info)
    local rec = open[run.key]
    rec.finish = info
    open[run.key] = nil
    d2r.mpi.send(0, TAG_RUN, serialise(rec))
  end
  function sink.abort(run) open[run.key] = nil end
  return sink
end

-- ---- progress --------------------------------------------------------------

local function clock_text(s)
  if s ~= s or s == huge then return "--" end
  s = floor(s + 0.5)
  if s >= 3600 then
    return ("%d:%02d:%02d"):format(s // 3600, s % 3600 // 60, s % 60)
  end
  return ("%d:%02d"):format(s // 60, s % 60)
end

local function first_line(s)
  return (tostring(s or ""):match("^[^\n]*"))
end

-- Reports a sweep's progress on out: one redrawn status line on a
-- terminal ("bar"), one line per finished run otherwise ("lines"), or
-- nothing ("none").
local function new_progress(name, mode, todo, out)
  local p = {done = 0, failed = 0, running = 0, todo = todo,
             t0 = d2r.proc.clock(), last = -1, shown = false}
  out = out or io.stderr
  local function status_line()
    local el = d2r.proc.clock() - p.t0
    local fin = p.done + p.failed
    local eta = fin > 0 and el / fin * (p.todo - fin) or 0 / 0
    return ("%s: %d/%d runs finished, %d failed, %d running, %s "
            .. "elapsed, %s left"):format(name, fin, p.todo, p.failed,
            p.running, clock_text(el), clock_text(eta))
  end
  -- Writes a line above the status line (which is drawn again unless
  -- last is set).
  function p.say(line, last)
    if mode == "none" then return end
    if mode == "bar" and p.shown then out:write("\r\27[K") end
    out:write(line, "\n")
    p.shown = false
    if mode == "bar" and not last then p.tick(true) end
    out:flush()
  end
  function p.tick(force)
    if mode ~= "bar" then return end
    local now = d2r.proc.clock()
    if not force and now - p.last < 0.2 then return end
    p.last = now
    out:write("\r\27[K", status_line())
    out:flush()
    p.shown = true
  end
  function p.finished(run, info)
    if info.status == "done" then
      p.done = p.done + 1
    else
      p.failed = p.failed + 1
    end
    local fin = p.done + p.failed
    if info.status ~= "done" then
      p.say(("%s: [%d/%d] run %d (%s) failed: %s"):format(name, fin,
            p.todo, run.index, run.label, first_line(info.error)))
    elseif mode == "lines" then
      p.say(("%s: [%d/%d] run %d (%s) done in %.2fs"):format(name, fin,
            p.todo, run.index, run.label, info.seconds or 0))
    end
    p.tick(true)
  end
  function p.clear()
    if mode == "bar" and p.shown then
      out:write("\r\27[K")
      out:flush()
    end
    p.shown = false
  end
  function p.close()
    p.say(("%s: %d done, %d failed in %s"):format(name, p.done, p.failed,
          clock_text(d2r.proc.clock() - p.t0)), true)
  end
  return p
end

-- ---- executing runs --------------------------------------------------------

-- The commit checked out where the sweep runs, with "-dirty" when tracked
-- files differ from it; nil outside a repository.  One git process: its
-- status in porcelain v2 names the commit on a header line and lists
-- changed tracked files on the others.  git starts at once and is read
-- when the revision is first asked for (the returned function), so the
-- first worker starts meanwhile instead of after git's few milliseconds.
local function git_revision()
  local f = io.popen("git status --porcelain=v2 --branch "
                     .. "--untracked-files=no 2>/dev/null")
  local rev, read = nil, f == nil
  return function()
    if read then return rev end
    read = true
    local dirty = false
    for line in f:lines() do
      local oid = line:match("^# branch%.oid (%x+)$")
      if oid then
        rev = oid
      elseif line:sub(1, 1) ~= "#" then
        dirty = true
      end
    end
    f:close()
    if rev and dirty then rev = rev .. "-dirty" end
    return rev
  end
end

-- Reads what a worker sent and handles its complete messages in order:
-- on.start(a, i) when it begins run i of its list, rows for the run in
-- progress, on.finish(a) when that run has reported its outcome (in
-- a.result, a.err).
local function drain(a, sink, on)
  while true do
    local s = a.proc:read()
    if s == nil then a.eof = true end
    if s == nil or s == "" then break end
    a.buf = a.buf .. s
  end
  local batch = {}
  local function flush()
    if #batch > 0 and a.run then sink.rows(a.run, batch) end
    batch = {}
  end
  while #a.buf >= 4 do
    local n = sunpack("<I4", a.buf)
    if #a.buf < 4 + n then break end
    local ok, msg = pcall(deserialise, a.buf:sub(5, 4 + n))
    a.buf = a.buf:sub(5 + n)
    if not ok or type(msg) ~= "table" then
      a.result, a.err = "err", "malformed message from the worker"
    elseif msg.k == "start" and a.run == nil
           and a.batch[msg.i] and msg.i > a.pos then
      flush()
      on.start(a, msg.i)
    elseif msg.k == "m" then
      for _, r in ipairs(msg.rows) do batch[#batch + 1] = r end
    elseif (msg.k == "ok" or msg.k == "err") and a.run then
      flush()
      if msg.k == "ok" then
        a.result = a.result or "ok"
      else
        a.result, a.err = "err", msg.msg
      end
      on.finish(a)
    end
  end
  flush()
end

-- How a run ended, from what its worker sent and how the worker ended.
local function outcome(a, desc)
  if a.result == "ok" then return "done" end
  if a.result == "err" then return "failed", a.err end
  if a.timed_out then
    return "failed", ("timed out after %gs"):format(a.timeout)
  end
  return "failed", ("worker %s before finishing the run"):format(desc)
end

-- The work after which a worker stops taking runs from its list when
-- runs share processes (chunk "auto"), in seconds.  A new worker costs
-- the sweep about 10 ms (fork, exit, a first run slowed by fresh pages
-- and cold caches): the toy sweep of bench/toy_sweep.lua (100 runs of
-- 2.7 ms) took 311 ms with 0.25 s (two workers) and 301 with 1 s (one).
local AUTO_CHUNK_SECONDS = 1

-- Runs the list todo through sink, with workers forked processes (or
-- in this process when workers is 0).  env: revision (a function),
-- host, timeout, tick (seconds between checks), hook (called every
-- tick), progress.
local function execute(self, todo, sink, env, workers)
  local prog, host = env.progress, env.host
  self.start_state = engine_state()
  local function info_start(worker)
    return {started = d2r.proc.time(), host = host, worker = worker,
            revision = env.revision()}
  end
  if workers == 0 then
    for _, run in ipairs(todo) do
      local info = info_start(tostring(d2r.proc.getpid()))
      sink.start(run, info)
      prog.running = 1
      local ok, err = call_run(self, run, function(rows)
        sink.rows(run, rows)
      end, self.start_state)
      local now = d2r.proc.time()
      local fin = {status = ok and "done" or "failed", error = err,
                   finished = now, seconds = now - info.started}
      prog.running = 0
      sink.finish(run, fin)
      prog.finished(run, fin)
      if env.hook then env.hook() end
    end
    return
  end
  -- Each worker process runs up to `chunk` runs in turn (1: a process
  -- per run).  When a worker dies in the middle of its list, the run
  -- in progress fails with the cause and the runs it had not started go
  -- back to the front of the queue.
  local queue, head = {}, 1
  for i, run in ipairs(todo) do queue[i] = run end
  local active = {}
  -- Runs for the next worker process, with `free` places for workers
  -- this one included.  "auto": an even share of what is left among
  -- those places (so the workers end together), of which the worker runs
  -- as many as fit in AUTO_CHUNK_SECONDS of work (at least one), handing
  -- the others back.  Runs longer than that keep a process each; shorter
  -- ones share one instead of paying a process each.
  local function chunk_size(free)
    if env.chunk ~= "auto" then return env.chunk end
    return math.max(1, (#queue - head + 1 + free - 1) // free)
  end
  local budget = env.chunk == "auto" and AUTO_CHUNK_SECONDS or nil
  local function finish(a, status, err)
    local now = d2r.proc.time()
    local fin = {status = status, error = err, finished = now,
                 seconds = now - a.info.started}
    local run = a.run
    a.run, a.result, a.err = nil, nil, nil
    sink.finish(run, fin)
    prog.finished(run, fin)
  end
  local on = {
    start = function(a, i)
      a.pos, a.run = i, a.batch[i]
      a.info = info_start(a.pid)
      a.c0 = d2r.proc.clock()
      sink.start(a.run, a.info)
    end,
    finish = function(a)
      finish(a, outcome(a))
    end,
  }
  local function loop()
    while head <= #queue or #active > 0 do
      while #active < workers and head <= #queue do
        local batch, chunk = {}, chunk_size(workers - #active)
        while #batch < chunk and head <= #queue do
          batch[#batch + 1] = queue[head]
          head = head + 1
        end
        local p = d2r.proc.spawn(worker_main, self, batch, budget)
        active[#active + 1] = {proc = p, batch = batch, pos = 0,
                               pid = tostring(p:pid()), buf = "",
                               c0 = d2r.proc.clock()}
      end
      prog.running = #active
      prog.tick()
      local procs, tick = {}, env.tick
      for i, a in ipairs(active) do
        procs[i] = a.proc
        if a.eof then tick = 0.005 end   -- about to exit: look again soon
      end
      d2r.proc.poll(procs, tick)
      if env.hook then env.hook() end
      for i = #active, 1, -1 do
        local a = active[i]
        drain(a, sink, on)
        local kind, _, desc = a.proc:wait()
        if not kind and env.timeout and a.run
           and d2r.proc.clock() - a.c0 > env.timeout then
          a.proc:kill()
          a.timed_out, a.timeout = true, env.timeout
          kind, _, desc = a.proc:wait(true)
        end
        if kind then
          drain(a, sink, on)
          a.proc:close()
          if not a.run and a.pos == 0 then
            -- died before starting anything: its first run takes the
            -- failure (re-queuing it would retry forever)
            on.start(a, 1)
          end
          if a.run then finish(a, outcome(a, desc)) end
          -- the runs it did not start go back to the front of the queue
          for j = #a.batch, a.pos + 1, -1 do
            head = head - 1
            queue[head] = a.batch[j]
          end
          table.remove(active, i)
          prog.running = #active
        end
      end
    end
  end
  local ok, err = pcall(loop)
  if not ok then
    prog.clear()
    for _, a in ipairs(active) do
      a.proc:close()
      if a.run then pcall(sink.abort, a.run) end
    end
    error(err, 0)
  end
end

local function progress_mode(opt, quiet_default)
  if opt == nil or opt == "auto" then
    if quiet_default then return "none" end
    return d2r.proc.isatty(2) and "bar" or "lines"
  end
  if opt ~= "bar" and opt ~= "lines" and opt ~= "none" then
    error("sweep: progress must be \"auto\", \"bar\", \"lines\" or "
          .. "\"none\"", 0)
  end
  return opt
end

-- The shard of a Slurm array task: (index, count) from
-- SLURM_ARRAY_TASK_ID, _MIN, _STEP and _COUNT, or nil outside one.
-- getenv defaults to os.getenv.
function sweep.slurm_shard(getenv)
  getenv = getenv or os.getenv
  local id = tonumber(getenv("SLURM_ARRAY_TASK_ID"))
  local n = tonumber(getenv("SLURM_ARRAY_TASK_COUNT"))
  if not id or not n then return nil end
  local min = tonumber(getenv("SLURM_ARRAY_TASK_MIN")) or 0
  local step = tonumber(getenv("SLURM_ARRAY_TASK_STEP")) or 1
  return math.tointeger((id - min) // step), math.tointeger(n)
end

-- The store of one shard: "runs.sqlite" becomes "runs.shard2of8.sqlite".
function sweep.shard_path(path, index, n)
  local tag = ("shard%dof%d"):format(index, n)
  local stem, ext = path:match("^(.*)(%.[^./]*)$")
  if stem then return stem .. "." .. tag .. ext end
  return path .. "." .. tag
end

local function mpi_launched()
  return os.getenv("OMPI_COMM_WORLD_SIZE") or os.getenv("PMI_SIZE")
      or os.getenv("PMIX_RANK")
end

-- The most worker processes a sweep runs at once (d2r.proc.poll watches
-- at most this many).
local MAX_WORKERS = 256

local function default_workers(opts)
  if opts.workers ~= nil then
    if math.type(opts.workers) ~= "integer" or opts.workers < 0
       or opts.workers > MAX_WORKERS then
      error(("sweep: workers must be an integer from 0 to %d"):format(
            MAX_WORKERS), 0)
    end
    return opts.workers
  end
  local local_ranks = tonumber(os.getenv("OMPI_COMM_WORLD_LOCAL_SIZE"))
  local n = d2r.proc.ncpu() // math.max(1, local_ranks or 1)
  return math.max(1, math.min(n, MAX_WORKERS))
end

local function should_run(row, retry)
  return row.status == "pending" or row.status == "running"
         or (retry and row.status == "failed")
end

-- What execute needs besides the runs; git is asked for the revision
-- only when there are runs to do (`work`).
local function environment(self, opts, progress, work)
  local chunk = opts.chunk or "auto"
  if chunk ~= "auto" and (math.type(chunk) ~= "integer" or chunk < 1) then
    error("sweep: chunk must be \"auto\" or an integer >= 1 (runs per "
          .. "worker process)", 0)
  end
  local t = opts.timeout
  if t ~= nil and (type(t) ~= "number" or not (t > 0)) then
    error("sweep: timeout must be a positive number of seconds", 0)
  end
  local revision = opts.revision
  return {
    revision = (revision or not work) and function() return revision end
               or git_revision(),
    host = d2r.proc.hostname(), timeout = opts.timeout,
    tick = 0.25, progress = progress, chunk = chunk,
  }
end

local run_fields = {
  workers = true, timeout = true, retry_failed = true, progress = true,
  revision = true, shard = true, shared_store = true, mpi = true,
  chunk = true,
}

-- Merges the sweep's declared options with those given to run.
local function run_options(self, opts)
  local o = {}
  for k in pairs(run_fields) do o[k] = self.options[k] end
  for k, v in pairs(opts or {}) do
    if not run_fields[k] then
      error(("run: unknown option '%s'"):format(tostring(k)), 3)
    end
    o[k] = v
  end
  return o
end

local function summary(path, total, skipped, prog)
  return {store = path, total = total, skipped = skipped,
          todo = prog.todo, done = prog.done, failed = prog.failed}
end

-- Runs the sweep on this machine, or on one shard of it (index, count):
-- the runs i (0-based) with i % count == index.
local function run_local(self, opts, index, n, path)
  local db = open_store(path, self.name, self.swept)
  local ok, res = pcall(function()
    local mine = {}
    for i, run in ipairs(self.list) do
      if not n or (i - 1) % n == index then mine[#mine + 1] = run end
    end
    local rows = plan(db, mine)
    local ids, todo = {}, {}
    for _, run in ipairs(mine) do
      local row = rows[run.key]
      ids[run.key] = row.id
      if should_run(row, opts.retry_failed) then todo[#todo + 1] = run end
    end
    local mode = progress_mode(opts.progress)
    local prog = new_progress(self.name, mode, #todo)
    local env = environment(self, opts, prog, #todo > 0)
    local workers = default_workers(opts)
    prog.say(("%s: %d runs%s, %d to do, %d already finished, %s "
              .. "(store %s)"):format(self.name, #mine,
              n and (" in shard %d of %d"):format(index, n) or "", #todo,
              #mine - #todo, workers == 0 and "in this process"
              or (workers .. " workers"), path))
    execute(self, todo, store_sink(db, ids), env, workers)
    prog.close()
    return summary(path, #mine, #mine - #todo, prog)
  end)
  db:close()
  if not ok then error(res, 0) end
  return res
end

-- Runs the sweep across MPI ranks: rank 0 owns the store, finds the runs
-- to do and tells every rank; rank r takes those at positions i
-- (0-based) with i % size == r, and sends each finished run to rank 0.
local function run_mpi(self, opts, rank, size)
  local digest = sweep.hash(table.concat((function()
    local keys = {}
    for i, r in ipairs(self.list) do keys[i] = r.key end
    return keys
  end)(), "\n"))
  local db, rows, msg
  if rank == 0 then
    db = open_store(self.store, self.name, self.swept)
    rows = plan(db, self.list)
    local todo = {}
    for i, run in ipairs(self.list) do
      if should_run(rows[run.key], opts.retry_failed) then
        todo[#todo + 1] = i
      end
    end
    msg = serialise{digest = digest, todo = todo}
  end
  local plan_msg = deserialise(d2r.mpi.bcast(msg, 0))
  if plan_msg.digest ~= digest then
    error(("sweep: rank %d declares other runs than rank 0"):format(rank),
          0)
  end
  local todo, mine = plan_msg.todo, {}
  for j, i in ipairs(todo) do
    if (j - 1) % size == rank then mine[#mine + 1] = self.list[i] end
  end
  local mode = progress_mode(opts.progress, rank ~= 0)
  local prog = new_progress(rank == 0 and self.name
                            or ("%s[rank %d]"):format(self.name, rank),
                            mode, rank == 0 and #todo or #mine)
  local env = environment(self, opts, prog,
                          #(rank == 0 and todo or mine) > 0)
  env.host = ("%s rank %d"):format(env.host or "?", rank)
  local workers = default_workers(opts)
  if rank ~= 0 then
    execute(self, mine, remote_sink(), env, workers)
    d2r.mpi.send(0, TAG_DONE, serialise{done = prog.done,
                 failed = prog.failed})
    prog.close()
    return summary(nil, #mine, 0, prog)
  end
  local ids, by_key = {}, {}
  for _, run in ipairs(self.list) do
    ids[run.key] = rows[run.key].id
    by_key[run.key] = run
  end
  local sink = store_sink(db, ids)
  local finished_ranks = 0
  local function receive(s, tag)
    if tag == TAG_DONE then
      finished_ranks = finished_ranks + 1
      return
    end
    local rec = deserialise(s)
    local run = by_key[rec.key]
    sink.start(run, rec.start)
    if #rec.rows > 0 then sink.rows(run, rec.rows) end
    sink.finish(run, rec.finish)
    prog.finished(run, rec.finish)
  end
  env.tick = 0.05
  env.hook = function()
    while d2r.mpi.iprobe() do
      local s, _, tag = d2r.mpi.recv()
      receive(s, tag)
    end
  end
  local ok, err = pcall(function()
    prog.say(("%s: %d runs, %d to do on %d MPI ranks, %d already "
              .. "finished (store %s)"):format(self.name, #self.list,
              #todo, size, #self.list - #todo, self.store))
    execute(self, mine, sink, env, workers)
    while finished_ranks < size - 1 do
      local s, _, tag = d2r.mpi.recv()
      receive(s, tag)
    end
  end)
  db:close()
  if not ok then error(err, 0) end
  prog.close()
  return summary(self.store, #self.list, #self.list - #todo, prog)
end

-- sweep:run([opts]): runs every run not yet finished in the store and
-- returns {store, total, skipped, todo, done, failed}.  Options (also
-- accepted in the declaration): workers (default: one per core; 0 runs
-- in this process), timeout (seconds per run), retry_failed, progress
-- ("auto", "bar", "lines", "none"), revision (default: the git commit,
-- "-dirty" if changed), shard = {index, count}, shared_store (Slurm
-- shards write to the one store instead of one each), mpi (false:
-- ignore an MPI launch).
function Sweep:run(opts)
  opts = run_options(self, opts)
  if opts.shard then
    local index, n = opts.shard[1] or opts.shard.index,
                     opts.shard[2] or opts.shard.count
    if math.type(index) ~= "integer" or math.type(n) ~= "integer"
       or n < 1 or index < 0 or index >= n then
      error("run: shard must be {index, count} with 0 <= index < count", 2)
    end
    return run_local(self, opts, index, n, self.store)
  end
  if opts.mpi ~= false and mpi_launched() then
    if not d2r.mpi.available then
      local n = tonumber(os.getenv("OMPI_COMM_WORLD_SIZE")
                         or os.getenv("PMI_SIZE")) or 1
      if n > 1 then
        error(("run: started by mpirun with %d ranks, but d2r was built "
               .. "without MPI (every rank would run every run); rebuild "
               .. "with MPI or pass mpi = false"):format(n), 2)
      end
    else
      local rank, size = d2r.mpi.init()
      if size > 1 then return run_mpi(self, opts, rank, size) end
    end
  end
  local index, n = sweep.slurm_shard()
  if index then
    local path = opts.shared_store and self.store
                 or sweep.shard_path(self.store, index, n)
    return run_local(self, opts, index, n, path)
  end
  return run_local(self, opts, nil, nil, self.store)
end

-- ---- reading a store -------------------------------------------------------

local Results = new_type("Results")

-- d2r.sweep.open(path): a store, for reading its runs and metrics.
function sweep.open(path)
  local f = io.open(path, "r")
  if not f then error(("sweep: no store at '%s'"):format(path), 2) end
  f:close()
  local db, err = d2r.sqlite.open(path)
  if not db then error("sweep: " .. err, 2) end
  local self = setmetatable({db = db, path = path}, Results)
  local meta = {}
  local ok, rows = pcall(db.rows, db, "SELECT key, value FROM meta")
  if not ok then
    db:close()
    error(("sweep: '%s' is not a d2r store"):format(path), 2)
  end
  for _, r in ipairs(rows) do meta[r.key] = r.value end
  self.name = meta.name
  self.meta = meta
  return self
end

function Results:close()
  self.db:close()
end

-- A row's columns from its configuration (tables as JSON text).
local function flatten(row, config)
  local ok, cfg = pcall(sweep.decode, config)
  if not ok or type(cfg) ~= "table" then return end
  for k, v in pairs(cfg) do
    if not reserved[k] then
      row[k] = type(v) == "table" and sweep.encode(v) or v
    end
  end
end

local function matches(row, filter)
  for k, want in pairs(filter) do
    local v = row[k]
    if type(want) == "function" then
      if not want(v) then return false end
    elseif type(want) == "table" then
      local any = false
      for _, w in ipairs(want) do any = any or v == w end
      if not any then return false end
    elseif v ~= want then
      return false
    end
  end
  return true
end

local RUN_COLUMNS = "id AS run, rep, seed, status, error, revision, host, "
  .. "worker, attempts, started, finished, seconds, config"

-- The runs, one row each: run (its id), rep, seed, status, error,
-- timings, and the configuration's values as columns.  filter: column
-- = value, list of values, or predicate.
function Results:runs(filter)
  local out = {}
  for _, row in ipairs(self.db:rows("SELECT " .. RUN_COLUMNS
                                    .. " FROM runs ORDER BY id")) do
    flatten(row, row.config)
    row.config = nil
    if not filter or matches(row, filter) then out[#out + 1] = row end
  end
  return out
end

-- The configuration columns of the store: all of them, and the swept
-- ones (the sweep's list-valued grid entries when the store recorded
-- them, else every column whose value differs between runs; either way
-- only those that take more than one value).
function Results:columns()
  local values, names, swept = {}, {}, {}
  for _, row in ipairs(self.db:rows("SELECT config FROM runs")) do
    local ok, cfg = pcall(sweep.decode, row.config)
    if ok and type(cfg) == "table" then
      for k, v in pairs(cfg) do
        local text = value_text(v)
        if not values[k] then
          values[k] = {}
          names[#names + 1] = k
        end
        values[k][text] = true
      end
    end
  end
  table.sort(names)
  local ok, axes = pcall(sweep.decode, self.meta.axes or "")
  if not ok or type(axes) ~= "table" then axes = names end
  for _, k in ipairs(axes) do
    if values[k] and count(values[k]) > 1 then swept[#swept + 1] = k end
  end
  return names, swept
end

-- The metrics rows (run, epoch, split, name, value with the run's
-- columns).  Only finished runs count unless filter.status is given
-- ("any" takes every run).
function Results:metrics(filter)
  filter = copy(filter or {})
  if filter.status == nil then filter.status = "done" end
  if filter.status == "any" then filter.status = nil end
  local runs = {}
  for _, r in ipairs(self:runs()) do runs[r.run] = r end
  local out = {}
  local sql = "SELECT run, epoch, split, name, value FROM metrics "
              .. "ORDER BY run, epoch, rowid"
  for _, m in ipairs(self.db:rows(sql)) do
    local r = runs[m.run]
    -- SQLite keeps a NaN as NULL, and a logged metric is always a
    -- number: a NULL value is a NaN the run logged (nan = "keep").
    if m.value == nil then m.value = 0 / 0 end
    if r then
      for k, v in pairs(r) do
        if m[k] == nil and k ~= "error" then m[k] = v end
      end
      if matches(m, filter) then out[#out + 1] = m end
    end
  end
  return out
end

-- One row per run, split and metric name: the value it returned at the
-- end (epoch absent), or else the one at its last epoch.
function Results:final(filter)
  local best, order = {}, {}
  for _, m in ipairs(self:metrics(filter)) do
    local key = ("%d\0%s\0%s"):format(m.run, m.split or "", m.name)
    local b = best[key]
    if not b then
      order[#order + 1] = key
      best[key] = m
    elseif b.epoch ~= nil and (m.epoch == nil or m.epoch >= b.epoch) then
      best[key] = m
    end
  end
  local out = {}
  for i, key in ipairs(order) do out[i] = best[key] end
  return out
end

-- Counts of runs by status.
function Results:counts()
  local c = {total = 0, done = 0, failed = 0, pending = 0, running = 0}
  for _, r in ipairs(self.db:rows("SELECT status, count(*) AS n FROM runs "
                                  .. "GROUP BY status")) do
    c[r.status] = r.n
    c.total = c.total + r.n
  end
  return c
end

local function csv_rows(rows, columns)
  for _, row in ipairs(rows) do
    for _, k in ipairs(columns) do
      if row[k] == nil then row[k] = "" end
    end
  end
  return rows
end

-- Writes dir/runs.csv (one row per run) and dir/metrics.csv (one row per
-- metric, with its run's configuration); returns the two paths.  Each
-- row is one line (the store keeps errors' tracebacks whole).
function Results:export(dir)
  d2r.mkdir(dir)
  local names = self:columns()
  local rc = {"run"}
  for _, k in ipairs(names) do rc[#rc + 1] = k end
  for _, k in ipairs{"rep", "seed", "status", "error", "seconds",
                     "attempts", "revision", "host", "worker", "started",
                     "finished"} do
    rc[#rc + 1] = k
  end
  local mc = {"run"}
  for _, k in ipairs(names) do mc[#mc + 1] = k end
  for _, k in ipairs{"rep", "seed", "status", "epoch", "split", "name",
                     "value"} do
    mc[#mc + 1] = k
  end
  local rp, mp = dir .. "/runs.csv", dir .. "/metrics.csv"
  local runs = self:runs()
  for _, r in ipairs(runs) do
    -- One line per row: a traceback's lines are joined with " | ".
    if r.error then r.error = r.error:gsub("\n%s*", " | ") end
  end
  d2r.write_csv(rp, rc, csv_rows(runs, rc))
  d2r.write_csv(mp, mc, csv_rows(self:metrics{status = "any"}, mc))
  return rp, mp
end

-- d2r.sweep.export(path, dir): exports the store at path as CSV.
function sweep.export(path, dir)
  local r = sweep.open(path)
  local ok, a, b = pcall(r.export, r, dir)
  r:close()
  if not ok then error(a, 0) end
  return a, b
end

-- d2r.sweep.merge(dst, sources): copies the runs of the source stores
-- (shards of one sweep) into dst; a finished run replaces an unfinished
-- one, and a run finished in dst is kept.  Returns the number copied.
function sweep.merge(dst, sources)
  local name
  local inputs = {}
  for i, path in ipairs(sources) do
    inputs[i] = sweep.open(path)
    name = name or inputs[i].name
  end
  local axes = inputs[1] and inputs[1].meta.axes
  local db = open_store(dst, name or "sweep",
                        axes and pcall(sweep.decode, axes)
                        and sweep.decode(axes) or nil)
  local copied = 0
  local ok, err = pcall(function()
    for _, src in ipairs(inputs) do
      transaction(db, function()
        for _, r in ipairs(src.db:rows("SELECT * FROM runs")) do
          local cur = db:rows("SELECT id, status FROM runs WHERE key = ?",
                              r.key)[1]
          local take = not cur or (cur.status ~= "done" and
                       (r.status == "done" or cur.status == "pending"))
          if take then
            if cur then db:run("DELETE FROM runs WHERE id = ?", cur.id) end
            local _, id = db:run("INSERT INTO runs (key, config, rep, seed, "
              .. "status, error, revision, host, worker, attempts, started, "
              .. "finished, seconds) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
              .. "?, ?, ?)", r.key, r.config, r.rep, r.seed, r.status,
              r.error, r.revision, r.host, r.worker, r.attempts, r.started,
              r.finished, r.seconds)
            local ms = {}
            for _, m in ipairs(src.db:rows("SELECT epoch, split, name, value "
                               .. "FROM metrics WHERE run = ? ORDER BY rowid",
                               r.id)) do
              ms[#ms + 1] = {id, m.epoch, m.split, m.name, m.value}
            end
            db:run_many("INSERT INTO metrics (run, epoch, split, name, "
                        .. "value) VALUES (?, ?, ?, ?, ?)", ms)
            copied = copied + 1
          end
        end
      end)
    end
  end)
  for _, src in ipairs(inputs) do src:close() end
  db:close()
  if not ok then error(err, 0) end
  return copied
end

-- ---- subcommands -----------------------------------------------------------

d2r.commands = d2r.commands or {}

-- Registers d2r.commands[name]: f(args) runs when args hold at least n
-- arguments and ask for no help; its errors are printed as messages.
-- Each command returns true on success.
local function command(name, n, usage, f)
  d2r.commands[name] = function(args)
    if args[1] == "--help" or args[1] == "-h" then
      print("usage: d2r " .. usage)
      return true
    end
    if #args < n then
      io.stderr:write("usage: d2r ", usage, "\n")
      return false
    end
    local ok, res = pcall(f, args)
    if not ok then
      local msg = tostring(res):gsub("^d2r/[%w_]+%.lua:%d+: ", "")
      io.stderr:write("d2r ", name, ": ", msg, "\n")
      return false
    end
    return res
  end
end

-- d2r status STORE: counts of runs by status and the failed runs.
local function cmd_status(args)
  local r = sweep.open(args[1])
  local c = r:counts()
  print(("%s: experiment '%s', %d runs: %d done, %d failed, %d pending, "
         .. "%d running"):format(args[1], r.name or "?", c.total,
         c.done or 0, c.failed or 0, c.pending or 0, c.running or 0))
  for _, run in ipairs(r:runs{status = "failed"}) do
    print(("  run %d (rep %d, seed %d): %s"):format(run.run, run.rep,
          run.seed, first_line(run.error)))
  end
  r:close()
  return true
end

-- d2r export STORE DIR: runs.csv and metrics.csv in DIR.
local function cmd_export(args)
  local a, b = sweep.export(args[1], args[2])
  print(("wrote %s and %s"):format(a, b))
  return true
end

-- d2r merge DST SRC...: merges shard stores into one.
local function cmd_merge(args)
  local srcs = {}
  for i = 2, #args do srcs[#srcs + 1] = args[i] end
  print(("merged %d runs into %s"):format(sweep.merge(args[1], srcs),
        args[1]))
  return true
end

command("status", 1, "status STORE", cmd_status)
command("export", 2, "export STORE DIR", cmd_export)
command("merge", 2, "merge DST SRC...", cmd_merge)

local SUMMARY_USAGE = [[
summary STORE [--metric NAME] [--split NAME] [--by COL,COL]
                  [--plot PREFIX] [--samples N] [--seed N]
Prints, for each final metric (per split), a table grouped by the swept
configuration columns (or --by): n, mean, std, standard error, 95%
bootstrap interval of the mean and interquartile mean.  With --plot,
also draws learning curves and final-value plots to PREFIX-*.png/.svg.]]

-- d2r summary STORE [options]: summary tables and plots from a store.
local function cmd_summary(args)
  local rest = {}
  for i = 2, #args do rest[#rest + 1] = args[i] end
  local o, usage = d2r.options(rest, {metric = "", split = "", by = {},
                               plot = "", samples = 2000, seed = 1},
                               SUMMARY_USAGE)
  if not o then
    print("usage: d2r " .. usage)
    return true
  end
  local r = sweep.open(args[1])
  local ok, err = pcall(function()
    local c = r:counts()
    local _, swept = r:columns()
    local by = #o.by > 0 and o.by or swept
    print(("%s: experiment '%s', %d runs: %d done, %d failed, %d "
           .. "unfinished"):format(args[1], r.name or "?", c.total,
           c.done or 0, c.failed or 0,
           (c.pending or 0) + (c.running or 0)))
    local filter = {}
    if o.metric ~= "" then filter.name = o.metric end
    if o.split ~= "" then filter.split = o.split end
    local final = r:final(filter)
    local groups = d2r.stats.group(final, {"split", "name"})
    if #groups == 0 then print("no metrics from finished runs") end
    for _, g in ipairs(groups) do
      local s = d2r.stats.summarize(g.rows, {by = by, samples = o.samples,
                                    seed = o.seed})
      print()
      print(("%s / %s (final value per run)"):format(g.keys.split or "",
            g.keys.name))
      print(d2r.stats.format_summary(s, by))
      if o.plot ~= "" then
        local stem = ("%s-%s-%s"):format(o.plot, g.keys.split or "",
                                         g.keys.name)
        local res = d2r.plot.points(g.rows, {by = by, out = stem .. "-final",
          title = g.keys.name .. " (" .. (g.keys.split or "") .. ")",
          ylabel = g.keys.name, samples = o.samples, seed = o.seed})
        print(res.message)
        local curve = r:metrics{name = g.keys.name, split = g.keys.split,
                                epoch = function(e) return e ~= nil end}
        if #curve > 0 then
          res = d2r.plot.curves(curve, {by = by, out = stem .. "-curves",
            title = g.keys.name .. " (" .. (g.keys.split or "") .. ")",
            ylabel = g.keys.name, samples = o.samples, seed = o.seed})
          print(res.message)
        end
      end
    end
  end)
  r:close()
  if not ok then error(err, 0) end
  return true
end
command("summary", 1, SUMMARY_USAGE, cmd_summary)

-- ---- the module entry ----------------------------------------------------

d2r.sweep = setmetatable(sweep, {
  __call = function(_, spec) return new_sweep(spec) end,
})
