-- Tests of MPI sharding: the same sweep under `mpirun -np 2` on this
-- machine (loopback and shared memory only) splits its runs between the
-- two ranks, and rank 0 gathers every result into its store through MPI
-- messages; a second launch resumes.  The test runs itself under mpirun
-- with the argument --rank (each rank then runs the sweep and stops).
-- Skipped, with a message, when d2r was built without MPI or mpirun is
-- missing.
local check = require "check"

local function sweep_of(store)
  return d2r.sweep{
    name = "mpi", store = store,
    grid = {x = {1, 2, 3, 4, 5}, kind = {"ok", "bad"}},
    repeats = 2,
    run = function(c, ctx)
      for e = 1, 3 do ctx:log{epoch = e, y = c.x * e + ctx.rep} end
      if c.kind == "bad" and c.x == 5 then error("bad run " .. ctx.rep) end
      return {rank = tonumber(os.getenv("OMPI_COMM_WORLD_RANK")) or -1}
    end,
  }
end

if arg[1] == "--rank" then
  sweep_of(arg[2]):run{progress = "none", workers = 1}
  return
end

local function skip(why)
  print("test_mpi: skipped: " .. why)
  check.done("mpi")
end

if not d2r.mpi.available then
  return skip("d2r was built without MPI (install libopenmpi-dev and "
              .. "openmpi-bin, then reconfigure)")
end
if os.execute("command -v mpirun >/dev/null 2>&1") ~= true then
  return skip("mpirun not found (apt-get install openmpi-bin)")
end

local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local exe = arg[-1]
local tmp = os.tmpname()
os.remove(tmp)
tmp = tmp .. ".d2r-mpi"
d2r.mkdir(tmp)
local store = tmp .. "/mpi.sqlite"

-- Only this machine: shared memory between the ranks, loopback for the
-- launcher.  The ranks do not check for leaks: OpenMPI keeps memory to
-- the end of the process by design.
local root = io.popen("id -u"):read("l") == "0"
local asan = os.getenv("ASAN_OPTIONS")
local cmd = table.concat({
  "ASAN_OPTIONS=" .. q((asan and asan .. ":" or "") .. "detect_leaks=0"),
  "timeout 300 mpirun -np 2 --oversubscribe",
  root and "--allow-run-as-root" or "",
  "--mca btl self,vader --mca oob_tcp_if_include lo",
  q(exe), q(arg[0]), "--rank", q(store),
  ">", q(tmp .. "/log"), "2>&1",
}, " ")

local function launch()
  local ok = os.execute(cmd)
  if ok ~= true then
    local f = io.open(tmp .. "/log")
    error("mpirun failed:\n" .. (f and f:read("a") or "(no log)"))
  end
end

launch()
local planned = sweep_of(store):runs()
local res = d2r.sweep.open(store)
local runs = res:runs()
check.eq(#runs, 20, "every run is in rank 0's store")
local ranks, by_status, done_on = {}, {}, {}
for _, r in ipairs(runs) do
  local want = planned[r.run]
  check.eq(r.seed, want.seed, "seed as planned")
  check.eq(r.x, want.config.x, "config as planned")
  by_status[r.status] = (by_status[r.status] or 0) + 1
  local rank = r.host:match("rank (%d+)$")
  check.ok(rank ~= nil, "host names the rank: " .. r.host)
  ranks[rank] = (ranks[rank] or 0) + 1
  if r.status == "done" then
    done_on[rank + 0.0] = (done_on[rank + 0.0] or 0) + 1
  end
  if r.status == "failed" then
    check.ok(r.error:find("bad run", 1, true), "error crossed MPI")
  end
  check.eq(r.attempts, 1, "one attempt")
end
check.eq(by_status.done, 18, "done runs")
check.eq(by_status.failed, 2, "failed runs")
check.eq(ranks["0"], 10, "rank 0 took half")
check.eq(ranks["1"], 10, "rank 1 took the other half")
local from = {}
for _, m in ipairs(res:final{name = "rank"}) do
  from[m.value] = (from[m.value] or 0) + 1
  check.ok(m.host:find("rank " .. math.tointeger(m.value), 1, true),
           "the metric came from the rank that ran it")
end
check.eq(from[0.0], done_on[0.0], "rank 0's results are stored")
check.eq(from[1.0], done_on[1.0], "rank 1's results reached rank 0")
local ys = res:metrics{name = "y", status = "any"}
check.eq(#ys, 20 * 3, "every epoch of every run")
res:close()

-- Resume: two runs marked unfinished are redone, nothing else.
local db = d2r.sqlite.open(store)
db:run("UPDATE runs SET status = 'running' WHERE id IN (3, 4)")
db:close()
launch()
res = d2r.sweep.open(store)
local attempts = 0
for _, r in ipairs(res:runs()) do
  attempts = attempts + r.attempts
  check.ok(r.status ~= "running" and r.status ~= "pending", "finished")
end
check.eq(attempts, 22, "only the two unfinished runs ran again")
res:close()

os.execute("rm -rf " .. q(tmp))
check.done("mpi")
