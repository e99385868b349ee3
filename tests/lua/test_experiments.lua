-- Smoke tests of the synthetic experiment scripts (moment_matching,
-- learned_distributions, full_covariance, ablations): each runs with
-- --quick into a temporary folder; its result CSVs must exist with the
-- expected columns, every run must have finished, every number must be
-- finite, and its figures must be drawn (or, without gnuplot, their data
-- and scripts written).  A second run of one script must resume: nothing
-- is redone.
local check = require "check"

local exe = arg and arg[-1] or "build/d2r"
local tmp = os.tmpname()
os.remove(tmp)
tmp = tmp .. ".d2r-experiments"
d2r.mkdir(tmp)

local function quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

local function has_gnuplot()
  return os.execute("command -v gnuplot >/dev/null 2>&1") == true
end
local drawn = has_gnuplot()

-- Runs a script with --quick; returns its output (stdout and stderr).
local function run(script, out)
  local cmd = ("%s scripts/%s.lua --quick --out %s --progress none 2>&1")
              :format(quote(exe), script, quote(out))
  local p = io.popen(cmd)
  local text = p:read("a")
  local ok = p:close()
  check.ok(ok, script .. " exits 0:\n" .. text)
  return text
end

local function exists(path)
  local f = io.open(path, "rb")
  if not f then return false end
  local size = f:seek("end")
  f:close()
  return size > 0
end

local function finite(v)
  return type(v) == "number" and v == v and v ~= math.huge
         and v ~= -math.huge
end

local function has_columns(header, want, what)
  local have = {}
  for _, h in ipairs(header) do have[h] = true end
  for _, c in ipairs(want) do
    check.ok(have[c], ("%s has column %s"):format(what, c))
  end
end

-- The checks common to every script; returns the metric rows.
local function check_outputs(script, out, summary_cols, names, figures)
  local runs, rh = d2r.read_results(out .. "/runs.csv")
  check.ok(runs and #runs > 0, script .. ": runs.csv has rows")
  has_columns(rh, {"run", "method", "rep", "seed", "status"},
              script .. " runs.csv")
  for _, r in ipairs(runs) do
    check.eq(r.status, "done", ("%s: run %d finished"):format(script,
                                                             r.run))
  end
  local metrics, mh = d2r.read_results(out .. "/metrics.csv")
  check.ok(metrics and #metrics > 0, script .. ": metrics.csv has rows")
  has_columns(mh, {"run", "method", "epoch", "split", "name", "value"},
              script .. " metrics.csv")
  local seen = {}
  for _, m in ipairs(metrics) do
    check.ok(finite(m.value), ("%s: metric %s of run %d is finite (%s)")
             :format(script, m.name, m.run, tostring(m.value)))
    seen[m.name] = true
  end
  for _, n in ipairs(names) do
    check.ok(seen[n], ("%s: metric %s recorded"):format(script, n))
  end
  local summary, sh = d2r.read_results(out .. "/summary.csv")
  check.ok(summary and #summary > 0, script .. ": summary.csv has rows")
  check.eq(table.concat(sh, ","), table.concat(summary_cols, ","),
           script .. ": summary.csv columns")
  for _, s in ipairs(summary) do
    for _, c in ipairs{"n", "mean", "std", "lo", "hi", "median"} do
      if s[c] ~= nil then
        check.ok(finite(s[c]), ("%s: summary %s of %s is finite")
                 :format(script, c, tostring(s.metric)))
      end
    end
  end
  for _, f in ipairs(figures) do
    local stem = out .. "/" .. f
    if drawn then
      check.ok(exists(stem .. ".png"), stem .. ".png drawn")
      check.ok(exists(stem .. ".svg"), stem .. ".svg drawn")
    else
      check.ok(exists(stem .. ".dat") and exists(stem .. ".gp"),
               stem .. " data and script written")
    end
  end
  return metrics
end

local t0 = os.time()

-- moment matching
local out = tmp .. "/moment_matching"
local text = run("moment_matching", out)
check.ok(text:find("Test set after 8 updates", 1, true), text)
check_outputs("moment_matching", out, {"method", "lambda", "split",
              "metric", "epoch", "n", "mean", "std", "lo", "hi", "median"},
              {"nll", "kl", "mean_err", "cov_err", "var_ratio", "nll_true"},
              {"val_kl_lambda0.95", "val_mean_err_lambda0.95",
               "val_cov_err_lambda0.95", "test_kl"})
local before = d2r.read_results(out .. "/runs.csv")
run("moment_matching", out)
local after = d2r.read_results(out .. "/runs.csv")
check.eq(#after, #before, "resuming adds no run")
for i, r in ipairs(after) do
  check.eq(r.finished, before[i].finished, "resuming redoes no run")
end

-- learned distributions
out = tmp .. "/learned_distributions"
text = run("learned_distributions", out)
check.ok(text:find("predicted var", 1, true), text)
check_outputs("learned_distributions", out, {"method", "lambda", "metric",
              "n", "mean", "std", "lo", "hi", "median"},
              {"nll", "kl", "mean_err", "cov_err", "var", "var_pred"},
              {"samples_lambda1", "kl_lambda1", "final_kl"})
local pts, ph = d2r.read_results(out .. "/samples/pg_ustar_lambda1_rep1.csv")
check.eq(table.concat(ph or {}, ","), "series,epoch,x,y", "samples file")
local draws = 0
for _, p in ipairs(pts) do
  check.ok(finite(p.x) and finite(p.y), "finite draws")
  if p.series == "policy" then draws = draws + 1 end
end
check.eq(draws, 3 * 50, "50 draws at each of 3 snapshots")

-- full covariance
out = tmp .. "/full_covariance"
text = run("full_covariance", out)
check.ok(text:find("||S - Sigma||_F", 1, true), text)
check_outputs("full_covariance", out, {"dim", "method", "metric", "n",
              "mean", "std", "lo", "hi", "median"},
              {"ce", "kl", "mean_err", "cov_err", "cov_err_sample",
               "ref_cov_err"},
              {"kl_dim2", "cov_err_dim2", "final_cov_err", "final_kl"})

-- ablations
out = tmp .. "/ablations"
text = run("ablations", out)
check.ok(text:find("reference ordering", 1, true), text)
check_outputs("ablations", out, {"horizon", "variant", "method",
              "estimator", "gamma", "group", "metric", "n", "mean", "std",
              "lo", "hi", "median"},
              {"nll", "nll_true", "mean_err", "cov_err", "var_ratio",
               "var_ratio_sample", "diverged"},
              {"headline_nll", "group_nll_toy", "group_nll_long",
               "group_var_ratio_long", "estimator_nll",
               "estimator_var_ratio"})

os.execute("rm -rf " .. quote(tmp))
print(("experiments: %d s"):format(os.time() - t0))
check.done("experiments")
