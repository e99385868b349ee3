-- Plumbing shared by the synthetic experiment scripts (moment_matching,
-- learned_distributions, full_covariance, ablations): their common
-- options, running a grid through d2r.sweep into <out>/runs.sqlite (one
-- worker process per core, runs stored as they end, an interrupted
-- experiment resumed by running it again) with a CSV export next to the
-- store, reading back the metrics of the runs planned now, and summary
-- helpers.  Not a script: `require "synthetic"` from a script in this
-- folder.
local d2r = require "d2r"

local M = {}

-- Options every script takes, merged under its own.
M.COMMON = {
  seeds = 10,
  seed = 0,
  out = "",
  quick = false,
  workers = -1,
  progress = "auto",
}

M.COMMON_USAGE = [[
  --seeds N       repeats of every configuration; repeat r of every
                  method shares its data, initialisation and noise
  --seed S        base seed of the sweep (0)
  --out DIR       output folder (results/NAME, results/NAME_quick with
                  --quick)
  --quick         a small smoke configuration (seconds, not minutes); it
                  overrides the options that set the experiment's size
  --workers N     worker processes (default: one per core; 0: in this
                  process)
  --progress M    auto, bar, lines or none]]

-- Parses arg against the script's defaults and the common ones; returns
-- nil after printing the usage for --help.  With --quick, the fields of
-- quick replace the options not given on the command line.
function M.options(name, defaults, usage, quick)
  local all = {}
  for k, v in pairs(M.COMMON) do all[k] = v end
  for k, v in pairs(defaults) do all[k] = v end
  local opts = d2r.script_options(name, all, usage .. "\n" ..
                                  M.COMMON_USAGE, quick)
  if opts then opts.name = name end
  return opts
end

-- Runs the grids of spec (grid or grids, run, order, filter) as the sweep
-- of the script: repeats = opts.seeds, and seeds shared by every
-- configuration of a repeat (paired comparisons).  Exports runs.csv and
-- metrics.csv into opts.out when it ends.  Returns the sweep and its
-- summary.
function M.sweep(opts, spec)
  d2r.mkdir(opts.out)
  local sw = d2r.sweep{
    name = opts.name, store = opts.out .. "/runs.sqlite",
    grid = spec.grid, grids = spec.grids, order = spec.order,
    filter = spec.filter, run = spec.run, repeats = opts.seeds,
    base_seed = opts.seed, seed_by = {}, nan = spec.nan,
  }
  local res = sw:run{workers = opts.workers >= 0 and opts.workers or nil,
                     progress = opts.progress}
  if res.failed > 0 then
    io.stderr:write(("%s: %d runs failed; `d2r status %s` lists them\n")
                    :format(opts.name, res.failed, res.store))
  end
  local runs_csv, metrics_csv = d2r.sweep.export(res.store, opts.out)
  M.files = {res.store, runs_csv, metrics_csv}
  return sw, res
end

local function same(a, b)
  if type(a) == "table" then a = d2r.sweep.encode(a) end
  if type(b) == "table" then b = d2r.sweep.encode(b) end
  if type(a) == "number" and type(b) == "number" then return a == b end
  return tostring(a) == tostring(b)
end

-- The metrics rows of the finished runs that sw plans now (the store may
-- hold runs of other settings too), each with its run's configuration
-- columns; filter as for Results:metrics.
function M.metrics(sw, filter)
  local store = d2r.sweep.open(sw.store)
  local by_rep = {}
  for _, run in ipairs(sw:runs()) do
    local k = run.rep .. ":" .. run.seed
    by_rep[k] = by_rep[k] or {}
    table.insert(by_rep[k], run.config)
  end
  local keep = {}
  for _, row in ipairs(store:runs{status = "done"}) do
    for _, cfg in ipairs(by_rep[row.rep .. ":" .. row.seed] or {}) do
      local match = true
      for k, v in pairs(cfg) do
        if not same(row[k], v) then
          match = false
          break
        end
      end
      if match then
        keep[row.run] = true
        break
      end
    end
  end
  local f = {}
  for k, v in pairs(filter or {}) do f[k] = v end
  f.run = function(id) return keep[id] == true end
  local rows = store:metrics(f)
  store:close()
  return rows
end

-- The rows of `rows` whose columns equal those of `where` (a value, a
-- list of values or a predicate each).
function M.select(rows, where)
  local out = {}
  for _, row in ipairs(rows) do
    local ok = true
    for k, want in pairs(where) do
      local v = row[k]
      if type(want) == "function" then
        ok = want(v)
      elseif type(want) == "table" then
        ok = false
        for _, w in ipairs(want) do ok = ok or same(v, w) end
      else
        ok = same(v, want)
      end
      if not ok then break end
    end
    if ok then out[#out + 1] = row end
  end
  return out
end

-- Summaries of column value over the rows grouped by the columns in by:
-- n, mean, std and a 95% bootstrap interval of the mean (lo, hi) with the
-- group's columns, as d2r.stats.summarize.
function M.summarize(rows, by)
  return d2r.stats.summarize(rows, {by = by, samples = 1000, seed = 1})
end

-- Appends the summaries of rows to out (a list of summary CSV rows), with
-- the fields of extra added to each.
function M.collect(out, rows, by, extra)
  for _, s in ipairs(M.summarize(rows, by)) do
    local r = {}
    for _, col in ipairs(by) do r[col] = s[col] end
    for k, v in pairs(extra or {}) do r[k] = v end
    r.n, r.mean, r.std, r.lo, r.hi = s.n, s.mean, s.std, s.lo, s.hi
    r.median = s.n > 0 and d2r.stats.median(s.values) or 0 / 0
    out[#out + 1] = r
  end
  return out
end

-- "mean +- std" of a summary (or "-" when it is missing).
function M.pm(s, digits)
  if not s or s.n == 0 then return "-" end
  local f = "%." .. (digits or 3) .. "f"
  return (f .. " +- " .. f):format(s.mean, s.std)
end

-- The summary of the values in rows (no grouping), or nil for none.
function M.one(rows)
  if #rows == 0 then return nil end
  return M.summarize(rows, {})[1]
end

-- Writes the summary CSV (columns in order; a missing cell is written
-- empty) and records it among the files to list.
function M.write_summary(opts, columns, rows)
  for _, r in ipairs(rows) do
    for _, c in ipairs(columns) do
      if r[c] == nil then r[c] = "" end
    end
  end
  local path = opts.out .. "/summary.csv"
  d2r.write_csv(path, columns, rows)
  M.files[#M.files + 1] = path
  return path
end

-- Keeps a plot's message for the closing lines; says once when gnuplot
-- was missing.
M.plots = {}
function M.plotted(res)
  M.plots[#M.plots + 1] = res
  return res
end

-- Prints what was written.
function M.report(opts)
  local drawn, data = {}, {}
  for _, res in ipairs(M.plots) do
    if res.drawn then
      for _, f in ipairs(res.files) do
        if f:match("%.png$") then drawn[#drawn + 1] = f end
      end
    else
      data[#data + 1] = res.message
    end
  end
  print()
  print("results: " .. table.concat(M.files or {}, ", "))
  if #drawn > 0 then
    print(("plots (PNG, with SVG beside each): %s"):format(
      table.concat(drawn, ", ")))
  end
  for _, msg in ipairs(data) do print(msg) end
end

-- Copies of the rows with column value replaced by its log10 (rows whose
-- value is not positive are left out): curves of errors that span
-- orders of magnitude, averaged over seeds on the log scale (a geometric
-- mean).
function M.log10_rows(rows)
  local out = {}
  for _, r in ipairs(rows) do
    if type(r.value) == "number" and r.value > 0 then
      local c = {}
      for k, v in pairs(r) do c[k] = v end
      c.value = math.log(r.value, 10)
      out[#out + 1] = c
    end
  end
  return out
end

-- x [B, k] with each row repeated r times in a row: [B r, k].
function M.repeat_rows(x, r)
  local b = x:dim(1)
  local idx = {}
  for i = 0, b * r - 1 do idx[#idx + 1] = i // r end
  return x:take_rows(d2r.tensor(idx))
end

-- The epochs at which a curve is summarised: those of marks up to last,
-- and last.
function M.checkpoints(marks, last)
  local out, seen = {}, {}
  for _, e in ipairs(marks) do
    if e <= last and not seen[e] then
      out[#out + 1] = e
      seen[e] = true
    end
  end
  if not seen[last] then out[#out + 1] = last end
  return out
end

-- A number as text for file names: 0.53 -> "0.53".
function M.tag(v)
  return (("%g"):format(v))
end

return M
