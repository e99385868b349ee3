-- Plumbing shared by the bilevel-solver scripts (implicit_synthetic,
-- implicit_full, implicit_classification, unrolled_vs_implicit): option
-- parsing with --quick, the synthetic regression data of METHOD.md
-- (experiments 1 and 3), policy constructors, plot rows and reporting,
-- and process memory readings.  Not a script: `require
-- "implicit_common"` from a script in this folder.
local d2r = require "d2r"

local M = {}

-- A list option given as strings ("64,64") as numbers; "none" or an
-- empty list is {}.
function M.numbers(list)
  local out = {}
  for _, v in ipairs(list) do
    if v ~= "none" and v ~= "" then
      out[#out + 1] = assert(tonumber(v), "not a number: " .. tostring(v))
    end
  end
  return out
end

-- Repeats each row of X [N, d] k times -> [N k, d].
local function repeat_rows(X, k)
  local n, d = X:dim(1), X:dim(2)
  return X:reshape(n, 1, d):expand(n, k, d):contiguous():reshape(n * k, d)
end

-- The synthetic regression of METHOD.md: x ~ U[-5, 5]^2, k targets per
-- input y = x + loc + L eps (L L^T the noise covariance: sigma I by
-- default, or o.chol, a table of rows).  loc is o.loc, plus a draw from
-- U(-loc_range, loc_range) per coordinate when o.loc_range > 0.  Returns
-- {train =, val =, test =, loc =} with X, Y of N k rows each; the seed
-- fixes everything.
function M.synthetic(seed, o)
  local rng = d2r.rng(seed)
  local n = 2
  local loc = d2r.full({n}, o.loc or 0)
  if (o.loc_range or 0) > 0 then
    loc = loc + rng:rand({n}, -o.loc_range, o.loc_range)
  end
  local L = o.chol and d2r.tensor(o.chol) or d2r.eye(n) * o.sigma
  local function split(inputs)
    local X = repeat_rows(rng:rand({inputs, n}, -5, 5), o.targets)
    local eps = rng:randn({inputs * o.targets, n})
    return {X = X, Y = X + loc + eps:matmul(L:t())}
  end
  return {train = split(o.inputs), val = split(o.val_inputs),
          test = split(o.val_inputs), loc = loc:tolist()}
end

-- A policy constructor for d2r.solvers.pg_problem: a diagonal Gaussian
-- with one global log-std ("diag"), or a full-covariance Gaussian
-- ("full"), on an MLP with the hidden sizes (none: linear).
function M.policy(kind, hidden, inputs, out)
  return function(rng)
    if kind == "full" then
      return d2r.full_gaussian_policy{inputs = inputs, out = out,
                                      hidden = hidden, rng = rng}
    end
    return d2r.gaussian_policy{inputs = inputs, out = out, hidden = hidden,
                               log_std = "global", rng = rng}
  end
end

-- The key of a row over the columns names (d2r.solvers.run_key).
M.key = d2r.solvers.run_key

-- Prints what a plot call did, and collects the PNG files.
M.drawn = {}
function M.plotted(res)
  if res.drawn then
    for _, f in ipairs(res.files) do
      if f:match("%.png$") then M.drawn[#M.drawn + 1] = f end
    end
  else
    print(res.message)
  end
end

-- The minimum of ys over xs (sorted), refined by the parabola through
-- the three grid points around it; returns the x and the value there.
function M.argmin(xs, ys)
  local best = 1
  for i = 2, #ys do
    if ys[i] < ys[best] then best = i end
  end
  if best == 1 or best == #ys then return xs[best], ys[best] end
  local x0, x1, x2 = xs[best - 1], xs[best], xs[best + 1]
  local y0, y1, y2 = ys[best - 1], ys[best], ys[best + 1]
  local d = (x0 - x1) * (x0 - x2) * (x1 - x2)
  local a = (x2 * (y1 - y0) + x1 * (y0 - y2) + x0 * (y2 - y1)) / d
  local b = (x2 ^ 2 * (y0 - y1) + x1 ^ 2 * (y2 - y0) + x0 ^ 2 * (y1 - y2))
            / d
  if not (a > 0) then return x1, y1 end
  local c = y1 - a * x1 * x1 - b * x1
  return -b / (2 * a), c - b * b / (4 * a)
end

-- ---- process memory -----------------------------------------------------

-- A field of /proc/self/status in kB (nil where there is none).
local function status_kb(field)
  local f = io.open("/proc/self/status", "r")
  if not f then return nil end
  for line in f:lines() do
    local v = line:match("^" .. field .. ":%s+(%d+)")
    if v then
      f:close()
      return tonumber(v)
    end
  end
  f:close()
  return nil
end

-- The peak resident set size (kB) since the last reset_peak.
function M.peak_rss_kb() return status_kb("VmHWM") end

-- Resets the peak to the current RSS (Linux's clear_refs); false where
-- that is not possible, and the peak then counts from the start.
function M.reset_peak()
  local f = io.open("/proc/self/clear_refs", "w")
  if not f then return false end
  local ok = f:write("5")
  f:close()
  return ok ~= nil
end

return M
