-- Smoke test of scripts/mbrl.lua (the model-based RL experiment): it runs
-- with --quick into a temporary folder; summary.csv must list every
-- method with finite values (test RMSE, NLL and rollout error for the
-- learned models, closed-loop returns of CEM and MPPI for all, baselines
-- included), and every run must have finished.  A second run trains
-- ensembles of 2 (1 elite) and plans with MPPI alone.
local check = require "check"

local exe = arg and arg[-1] or "build/d2r"
local tmp = os.tmpname()
os.remove(tmp)
tmp = tmp .. ".d2r-mbrl"

local function quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

local function run(extra, out)
  local cmd = ("%s scripts/mbrl.lua --quick --out %s --progress none %s "
               .. "2>&1"):format(quote(exe), quote(out), extra)
  local p = io.popen(cmd)
  local text = p:read("a")
  check.ok(p:close(), "mbrl.lua --quick " .. extra .. " exits 0:\n" .. text)
  return text
end

local text = run("", tmp)
check.ok(text:find("pg_full", 1, true), "the table is printed")
check.ok(text:find("return MPPI", 1, true), "MPPI's column is printed")

local function finite(v)
  return type(v) == "number" and v == v and v ~= math.huge
         and v ~= -math.huge
end

local runs = d2r.read_results(tmp .. "/runs.csv")
check.ok(runs and #runs > 0, "runs.csv has rows")
for _, r in ipairs(runs) do
  check.eq(r.status, "done", ("run %d finished"):format(r.run))
end

local rows, header = d2r.read_results(tmp .. "/summary.csv")
check.ok(rows and #rows > 0, "summary.csv has rows")
local have = {}
for _, h in ipairs(header) do have[h] = true end
for _, c in ipairs{"env", "method", "metric", "n", "mean", "std"} do
  check.ok(have[c], "summary.csv has column " .. c)
end

local seen = {}
for _, r in ipairs(rows) do
  seen[r.method .. "/" .. r.metric] = true
  check.ok(finite(r.mean), ("%s %s mean is finite (%s)")
           :format(r.method, r.metric, tostring(r.mean)))
  check.ok(r.n >= 1, ("%s %s has values"):format(r.method, r.metric))
end
local learned = {"mse", "nll", "pg_identity", "pg_isotropic", "pg_full",
                 "pg_learned"}
for _, m in ipairs(learned) do
  for _, metric in ipairs{"rmse", "nll", "rollout_h1", "rollout_h10",
                          "return_cem", "return_mppi"} do
    check.ok(seen[m .. "/" .. metric], ("%s has %s"):format(m, metric))
  end
end
check.ok(seen["pg_learned/u"], "the learned u is reported")
check.ok(seen["random/return_random"], "random has a return")
check.ok(seen["simulator/return_cem"] and seen["simulator/return_mppi"],
         "the simulator has CEM and MPPI returns")
for _, m in ipairs{"random", "simulator"} do
  check.ok(not seen[m .. "/rmse"], m .. " has no model metrics")
end
os.execute("rm -rf " .. quote(tmp))

-- ensembles, MPPI only
text = run("--ensemble 2 --elites 1 --planners mppi", tmp)
check.ok(not text:find("return CEM", 1, true), "no CEM column")
rows = d2r.read_results(tmp .. "/summary.csv")
seen = {}
for _, r in ipairs(rows) do
  seen[r.method .. "/" .. r.metric] = true
  check.ok(finite(r.mean), ("ensemble: %s %s mean is finite")
           :format(r.method, r.metric))
end
check.ok(seen["mse/return_mppi"] and not seen["mse/return_cem"],
         "an MPPI return alone")
check.ok(seen["nll/rmse"], "the ensemble's elite is evaluated")
os.execute("rm -rf " .. quote(tmp))

-- bad options stop the script before any run, naming the problem
for _, case in ipairs{
  {"--planners CEM", "unknown planner 'CEM'"},
  {"--planners cem,cem", "listed twice"},
  {"--envs foo", "unknown environment 'foo'"},
  {"--ensemble 0", "--ensemble must be"},
  {"--ensemble 2 --elites 3", "--elites must be"},
  {"--behaviour foo", "unknown behaviour"},
} do
  local cmd = ("%s scripts/mbrl.lua --quick --out %s %s 2>&1")
              :format(quote(exe), quote(tmp), case[1])
  local p = io.popen(cmd)
  local out = p:read("a")
  check.ok(not p:close(), case[1] .. " fails")
  check.ok(out:find(case[2], 1, true), case[1] .. ": " .. out)
end
-- an explicit option wins over --quick's value
text = run("--envs acrobot --seeds 1", tmp)
check.ok(text:find("acrobot:", 1, true), "--quick --envs acrobot runs acrobot")
os.execute("rm -rf " .. quote(tmp))
check.done("test_mbrl")
