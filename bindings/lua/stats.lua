-- Statistics for experiment results, added to d2r.stats (whose mean and
-- std come from experiment.lua): standard error, quantiles, the
-- interquartile mean, seeded percentile-bootstrap confidence intervals,
-- the probability of improvement and Welch's t-test (t distribution from
-- GSL), and grouping rows by columns into summary tables.  Runs inside
-- the d2r module: `...` is the module table.
local d2r = ...
local stats = d2r.stats

local sqrt, floor = math.sqrt, math.floor
local NAN = 0 / 0

stats.tdist_cdf = d2r.tdist_cdf
stats.tdist_quantile = d2r.tdist_quantile

local function sorted(xs)
  local s = {}
  for i = 1, #xs do s[i] = xs[i] end
  table.sort(s)
  return s
end

-- Standard error of the mean: std / sqrt(n).
function stats.sem(xs)
  return stats.std(xs) / sqrt(#xs)
end

-- Sample variance (n - 1).
function stats.var(xs)
  return stats.std(xs) ^ 2
end

-- The p-quantile (0 <= p <= 1) with linear interpolation between order
-- statistics (position 1 + (n - 1) p, as R's default type 7).
function stats.quantile(xs, p)
  local n = #xs
  if n == 0 then return NAN end
  if p < 0 or p > 1 then
    error(("quantile: p must be in [0, 1], got %s"):format(p), 2)
  end
  local s = sorted(xs)
  local h = 1 + (n - 1) * p
  local lo = floor(h)
  if lo >= n then return s[n] end
  return s[lo] + (h - lo) * (s[lo + 1] - s[lo])
end

function stats.median(xs)
  return stats.quantile(xs, 0.5)
end

-- Interquartile mean: the mean of what is left after dropping the
-- floor(n / 4) smallest and the floor(n / 4) largest values (the 25%
-- trimmed mean used for reinforcement-learning results).
function stats.iqm(xs)
  local n = #xs
  if n == 0 then return NAN end
  local s, cut, sum = sorted(xs), n // 4, 0
  for i = cut + 1, n - cut do sum = sum + s[i] end
  return sum / (n - 2 * cut)
end

local named = {mean = "mean", median = "median", iqm = "iqm", std = "std"}

local function statistic(stat)
  if type(stat) == "function" then return stat end
  local f = named[stat or "mean"]
  if not f then
    error(("unknown statistic '%s' (mean, median, iqm, std or a "
           .. "function)"):format(tostring(stat)), 3)
  end
  return stats[f]
end

local function resample(r, xs, buf)
  local n = #xs
  for i = 1, n do buf[i] = xs[r:below(n) + 1] end
  return buf
end

-- A percentile-bootstrap confidence interval of a statistic of xs:
-- returns lo, hi.  Options: stat ("mean", "median", "iqm", "std" or a
-- function of a list; default "mean"), level (0.95), samples (2000),
-- seed (1): the same seed gives the same interval.
function stats.bootstrap_ci(xs, opts)
  opts = opts or {}
  local n = #xs
  if n == 0 then return NAN, NAN end
  local stat = statistic(opts.stat)
  local level, b = opts.level or 0.95, opts.samples or 2000
  if level <= 0 or level >= 1 then
    error("bootstrap_ci: level must be in (0, 1)", 2)
  end
  local r, est, buf = d2r.rng(opts.seed or 1), {}, {}
  for k = 1, b do est[k] = stat(resample(r, xs, buf)) end
  local a = (1 - level) / 2
  return stats.quantile(est, a), stats.quantile(est, 1 - a)
end

-- P(X > Y) + P(X = Y) / 2 over all pairs of the two samples (the
-- Mann-Whitney statistic divided by n m).
local function improvement(xs, ys, lower)
  local wins = 0
  for i = 1, #xs do
    local x = xs[i]
    for j = 1, #ys do
      local y = ys[j]
      if x == y then
        wins = wins + 0.5
      elseif (x > y) ~= lower then
        wins = wins + 1
      end
    end
  end
  return wins / (#xs * #ys)
end

-- The probability that a run of the first method beats a run of the
-- second (ties count half), with a bootstrap confidence interval that
-- resamples both: returns p, lo, hi.  Options: lower_is_better (for a
-- loss), level, samples, seed as for bootstrap_ci.
function stats.prob_improvement(xs, ys, opts)
  opts = opts or {}
  if #xs == 0 or #ys == 0 then return NAN, NAN, NAN end
  local lower = opts.lower_is_better and true or false
  local p = improvement(xs, ys, lower)
  local r, est, bx, by = d2r.rng(opts.seed or 1), {}, {}, {}
  for k = 1, opts.samples or 2000 do
    est[k] = improvement(resample(r, xs, bx), resample(r, ys, by), lower)
  end
  local a = (1 - (opts.level or 0.95)) / 2
  return p, stats.quantile(est, a), stats.quantile(est, 1 - a)
end

-- Welch's t-test of equal means for two samples with unequal variances:
-- returns t, the Welch-Satterthwaite degrees of freedom and the p-value.
-- opts.alternative is "two-sided" (default), "greater" (the first mean
-- is larger) or "less".
function stats.welch(xs, ys, opts)
  local alt = opts and opts.alternative or "two-sided"
  local n1, n2 = #xs, #ys
  if n1 < 2 or n2 < 2 then
    error("welch: each sample needs at least two values", 2)
  end
  local m1, m2 = stats.mean(xs), stats.mean(ys)
  local a, b = stats.var(xs) / n1, stats.var(ys) / n2
  local t = (m1 - m2) / sqrt(a + b)
  if a + b == 0 then
    local p = m1 == m2 and 1 or 0
    if alt == "greater" and m1 < m2 then p = 1 end
    if alt == "less" and m1 > m2 then p = 1 end
    return t, NAN, p
  end
  local df = (a + b) ^ 2 / (a ^ 2 / (n1 - 1) + b ^ 2 / (n2 - 1))
  local p
  if alt == "two-sided" then
    p = 2 * d2r.tdist_cdf(-math.abs(t), df)
  elseif alt == "greater" then
    p = d2r.tdist_cdf(t, df, true)
  elseif alt == "less" then
    p = d2r.tdist_cdf(t, df)
  else
    error(("welch: unknown alternative '%s'"):format(tostring(alt)), 2)
  end
  return t, df, p
end

-- Compares two samples: the difference of means, Welch's test and the
-- probability of improvement, in one table.
function stats.compare(xs, ys, opts)
  opts = opts or {}
  local out = {diff = stats.mean(xs) - stats.mean(ys)}
  if #xs >= 2 and #ys >= 2 then
    out.t, out.df, out.p = stats.welch(xs, ys, opts)
  end
  out.poi, out.poi_lo, out.poi_hi = stats.prob_improvement(xs, ys, opts)
  return out
end

-- ---- grouping ----------------------------------------------------------

local rank = {number = 1, string = 2, boolean = 3}

-- Orders values of a column: nil first, numbers by value, then strings.
local function before(a, b)
  if a == nil or b == nil then return a == nil and b ~= nil end
  local ta, tb = type(a), type(b)
  if ta ~= tb then return (rank[ta] or 4) < (rank[tb] or 4) end
  if ta == "number" or ta == "string" then return a < b end
  return tostring(a) < tostring(b)
end

local function group_key(row, by)
  local parts = {}
  for k, col in ipairs(by) do
    local v = row[col]
    parts[k] = type(v) .. ":" .. tostring(v)
  end
  return table.concat(parts, "\0")
end

-- Groups rows by the columns in by (a list of names, or one name): a
-- list of {keys = {column = value}, rows = {...}}, ordered by the values
-- of the columns in turn.
function stats.group(rows, by)
  if type(by) == "string" then by = {by} end
  by = by or {}
  local index, groups = {}, {}
  for _, row in ipairs(rows) do
    local key = group_key(row, by)
    local g = index[key]
    if not g then
      g = {keys = {}, rows = {}}
      for _, col in ipairs(by) do g.keys[col] = row[col] end
      index[key] = g
      groups[#groups + 1] = g
    end
    g.rows[#g.rows + 1] = row
  end
  table.sort(groups, function(x, y)
    for _, col in ipairs(by) do
      local a, b = x.keys[col], y.keys[col]
      if a ~= b then return before(a, b) end
    end
    return false
  end)
  return groups
end

-- Summarises the numbers in column value (default "value") of rows,
-- grouped by the columns in by: one row per group with the group's
-- columns and n, mean, std, sem, lo and hi (the bootstrap interval of
-- the mean), iqm, and nan (how many NaN values were left out).  Options:
-- by, value, level, samples, seed.
function stats.summarize(rows, opts)
  opts = opts or {}
  local col = opts.value or "value"
  local out = {}
  for _, g in ipairs(stats.group(rows, opts.by)) do
    local xs, nans = {}, 0
    for _, row in ipairs(g.rows) do
      local v = row[col]
      if type(v) == "number" and v == v then
        xs[#xs + 1] = v
      elseif type(v) == "number" then
        nans = nans + 1
      end
    end
    local s = {n = #xs, nan = nans, mean = stats.mean(xs),
               std = stats.std(xs),
               sem = #xs > 0 and stats.sem(xs) or NAN, iqm = stats.iqm(xs)}
    s.lo, s.hi = stats.bootstrap_ci(xs, opts)
    for k, v in pairs(g.keys) do s[k] = v end
    s.values = xs
    out[#out + 1] = s
  end
  return out
end

local function fmt(v, digits)
  if type(v) ~= "number" then return v == nil and "" or tostring(v) end
  if math.type(v) == "integer" then return ("%d"):format(v) end
  if v ~= v then return "nan" end
  return ("%." .. (digits or 4) .. "g"):format(v)
end

-- Formats a summary from stats.summarize as an aligned text table, the
-- group columns first; a column "nan" counts the NaN values left out,
-- when there were any.
function stats.format_summary(summary, by, digits)
  if type(by) == "string" then by = {by} end
  by = by or {}
  local level = "95% CI"
  local any_nan = false
  for _, s in ipairs(summary) do any_nan = any_nan or (s.nan or 0) > 0 end
  local headers = {}
  for _, col in ipairs(by) do headers[#headers + 1] = col end
  for _, h in ipairs{"n", "mean", "std", "sem", level, "iqm"} do
    headers[#headers + 1] = h
  end
  if any_nan then headers[#headers + 1] = "nan" end
  local rows = {}
  for _, s in ipairs(summary) do
    local row = {}
    for _, col in ipairs(by) do row[#row + 1] = fmt(s[col], digits) end
    row[#row + 1] = fmt(s.n)
    row[#row + 1] = fmt(s.mean, digits)
    row[#row + 1] = fmt(s.std, digits)
    row[#row + 1] = fmt(s.sem, digits)
    row[#row + 1] = ("[%s, %s]"):format(fmt(s.lo, digits), fmt(s.hi, digits))
    row[#row + 1] = fmt(s.iqm, digits)
    if any_nan then row[#row + 1] = fmt(s.nan or 0) end
    rows[#rows + 1] = row
  end
  return d2r.format_table(headers, rows)
end
