-- Tests of the experiment runner (d2r.sweep): canonical encoding and
-- stable seeds, grid declaration, runs in worker processes with failing
-- and crashing workers, the SQLite store with resumption after a kill,
-- shards and merging, CSV export, the subcommands, and plots.
local check = require "check"
local sweep = d2r.sweep

local tmp = os.tmpname()
os.remove(tmp)
tmp = tmp .. ".d2r-sweep"
d2r.mkdir(tmp)

-- ---- d2r.mkdir ---------------------------------------------------------------

-- Parents are made, doubled and trailing slashes are fine, an existing
-- directory is not an error; a file in the way, an empty path or a NUL
-- byte are, by name.
d2r.mkdir(tmp .. "/mk/a//b/")
d2r.mkdir(tmp .. "/mk/a/b")
d2r.mkdir("/")
local blocker = tmp .. "/mk/a/b/file"
assert(io.open(blocker, "w")):close()
check.ok(io.open(tmp .. "/mk/a/b/file", "r") ~= nil, "mkdir made the parents")
check.raises("cannot create directory '.*/file' %(making '.*/file/c/d'%): "
             .. "Not a directory", d2r.mkdir, blocker .. "/c/d")
check.raises("cannot create directory '.*/file': Not a directory",
             d2r.mkdir, blocker)
check.raises("empty path", d2r.mkdir, "")
check.raises("NUL byte", d2r.mkdir, "a\0b")
check.raises("string expected", d2r.mkdir, {})
os.remove(blocker)

-- ---- encoding and seeds --------------------------------------------------

check.eq(sweep.hash(""), 0xcbf29ce484222325, "fnv1a of ''")
check.eq(sweep.hash("a"), 0xaf63dc4c8601ec8c, "fnv1a of 'a'")
check.eq(sweep.hash("foobar"), 0x85944171f73967e8, "fnv1a of 'foobar'")

check.eq(sweep.encode{b = 1, a = {1, 2.5, "x"}, c = true},
         '{"a":[1,2.5,"x"],"b":1,"c":true}', "sorted keys")
check.eq(sweep.encode{0.1, 1.0, -3, 1e300, 2 ^ 60},
         "[0.1,1,-3,1e+300,1.152921504606847e+18]", "shortest numbers")
check.eq(sweep.encode('a"b\\c\n\1'), '"a\\"b\\\\c\\n\\u0001"', "escapes")
check.eq(sweep.encode{}, "[]", "empty table")
check.raises("not a finite number", sweep.encode, {x = 0 / 0})
check.raises("is a function", sweep.encode, {f = print})
check.raises("neither a list", sweep.encode, {1, x = 2})

local text = '{"a":[1,2.5,"x",null,false],"s":"\\u00e9\\n","n":-1e-3}'
local v = sweep.decode(text)
check.eq(v.a[1], 1, "decode integer")
check.eq(math.type(v.a[1]), "integer", "integers stay integers")
check.eq(v.a[2], 2.5, "decode float")
check.eq(v.a[5], false, "decode false")
check.eq(v.s, "\xc3\xa9\n", "decode escapes")
check.eq(v.n, -1e-3, "decode exponent")
check.raises("trailing text", sweep.decode, "[1] 2")
check.raises("unterminated", sweep.decode, '"abc')
local round = {x = {1, {y = "z"}}, w = 0.3}
check.eq(sweep.encode(sweep.decode(sweep.encode(round))),
         sweep.encode(round), "encode/decode round trip")

-- The seed is a function of base seed, configuration and repeat only;
-- this value was computed independently from the documented recipe.
local cfg = {method = "pg", lr = 0.001}
check.eq(sweep.seed(7, cfg, 2), 1691933915, "seed recipe")
check.eq(sweep.seed(7, {lr = 0.001, method = "pg"}, 2),
         sweep.seed(7, cfg, 2), "key order does not matter")
check.eq(sweep.seed(0, {a = 1.0}, 1), sweep.seed(0, {a = 1}, 1),
         "1 and 1.0 give the same seed")
check.ok(sweep.seed(8, cfg, 2) ~= sweep.seed(7, cfg, 2), "base matters")
check.ok(sweep.seed(7, cfg, 3) ~= sweep.seed(7, cfg, 2), "repeat matters")
for _, s in ipairs{sweep.seed(1, {}, 1), sweep.seed(2, {}, 5)} do
  check.ok(math.type(s) == "integer" and s >= 1 and s < 2 ^ 31,
           "seeds are in 1 .. 2^31 - 1")
end

-- ---- declaring a grid ----------------------------------------------------

local function noop() end
local s = sweep{
  name = "decl", store = tmp .. "/decl.sqlite", repeats = 2, base_seed = 3,
  grid = {
    method = {"nll", "pg"}, lambda = {0.1, 1, 10}, epochs = 5,
    lr = function(c) return c.method == "nll" and 0.01 or 0.001 end,
    hidden = {{32, 32}},
  },
  order = {"method"},
  filter = function(c) return not (c.method == "nll" and c.lambda == 10) end,
  run = noop,
}
local runs = s:runs()
check.eq(#runs, 2 * 5, "2 x 3 configurations less one, 2 repeats")
check.eq(runs[1].config.method, "nll", "order puts method first")
check.eq(runs[1].config.lambda, 0.1, "then the other axes by name")
check.eq(runs[3].config.method, "pg", "method varies slowest")
check.eq(runs[1].config.epochs, 5, "fixed value")
check.eq(runs[3].config.lr, 0.001, "derived value")
check.eq(runs[1].config.hidden[2], 32, "a one-item list fixes a list")
check.eq(runs[1].rep, 1, "repeats are the outer loop")
check.eq(runs[6].rep, 2, "second repeat")
check.eq(runs[6].config.method, runs[1].config.method, "same configs")
check.ok(runs[6].seed ~= runs[1].seed, "repeats get different seeds")
check.eq(runs[1].seed, sweep.seed(3, runs[1].config, 1), "seed of a run")
check.eq(runs[1].label, "method=nll hidden=[32,32] lambda=0.1 rep=1",
         "label of a run")
local again = sweep{name = "decl", repeats = 2, base_seed = 3, run = noop,
                    grid = {method = {"pg", "nll"}, lambda = {10, 1, 0.1},
                            epochs = 5, hidden = {{32, 32}},
                            lr = function(c)
                              return c.method == "nll" and 0.01 or 0.001
                            end}}
local seeds = {}
for _, r in ipairs(again:runs()) do seeds[r.key] = r.seed end
for _, r in ipairs(runs) do
  check.eq(seeds[r.key], r.seed, "same run, same seed, in any grid order")
end

local paired = sweep{run = noop, repeats = 2, seed_by = {},
                     grid = {method = {"a", "b"}}}
local pr = paired:runs()
check.eq(pr[1].seed, pr[2].seed, "seed_by = {}: methods share seeds")
check.ok(pr[1].seed ~= pr[3].seed, "but repeats do not")
local union = sweep{run = noop, grids = {{m = {"a"}, k = {1, 2}},
                                         {m = {"b"}}, {m = {"a"}, k = {2}}}}
check.eq(#union:runs(), 3, "grids are united, duplicates dropped")

check.raises("unknown field 'repeat'", sweep, {run = noop, ["repeat"] = 2})
check.raises("field 'run'", sweep, {grid = {}})
check.raises("'seed' is a column", sweep, {run = noop, grid = {seed = {1}}})
check.raises("config.x is not a finite", sweep,
             {run = noop, grid = {x = {1, 0 / 0}}})
check.raises("positive integer", sweep, {run = noop, repeats = 0})

-- ---- running: failures of every kind -------------------------------------

-- Pure arithmetic runs; some fail on purpose: a Lua error, a NaN loss, a
-- worker that exits, a worker that dies of SIGSEGV, and one that loops
-- past its time limit.  Under AddressSanitizer (the sanitized test run
-- sets ASAN_OPTIONS) a SIGSEGV becomes a sanitizer report, so the worker
-- dies of SIGKILL there instead.
local crash = os.getenv("ASAN_OPTIONS") and "KILL" or "SEGV"
local crash_number = crash == "KILL" and 9 or 11
local function toy(c, ctx)
  local r = ctx:rng()
  local w = 0
  for e = 1, c.epochs do
    w = w + c.lr * (1 - w) + 0.01 * r:uniform()
    local loss = (1 - w) ^ 2
    if c.fail == "nan" and e == 2 then loss = 0 / 0 end
    ctx:log{epoch = e, loss = loss, w = d2r.tensor(w)}
    ctx:log{epoch = e, split = "test", loss = loss * 1.1}
  end
  if c.fail == "error" then error("deliberate failure") end
  if c.fail == "exit" then os.exit(3) end
  if c.fail == "segv" then os.execute("kill -" .. crash .. " $PPID") end
  if c.fail == "hang" then
    while true do w = w + 1 end
  end
  return {split = "test", w = w}
end

local store = tmp .. "/toy.sqlite"
local grid = {
  lr = {0.1, 0.5}, epochs = 4,
  fail = {"none", "error", "nan", "exit", "segv", "hang"},
}
local toy_sweep = sweep{name = "toy", store = store, grid = grid,
                        repeats = 2, run = toy, timeout = 1}
local sum = toy_sweep:run{workers = 3, progress = "none"}
check.eq(sum.total, 24, "24 runs")
check.eq(sum.todo, 24, "all to do")
check.eq(sum.done, 4, "only the 'none' runs succeed")
check.eq(sum.failed, 20, "the others fail, and the sweep goes on")

local res = sweep.open(store)
check.eq(res.name, "toy", "experiment name")
local errors = {}
for _, r in ipairs(res:runs()) do
  check.ok(r.status == (r.fail == "none" and "done" or "failed"),
           "status of " .. r.fail)
  check.ok(r.attempts == 1 and r.seconds >= 0 and r.started > 0,
           "timings")
  errors[r.fail] = r.error
  local want = toy_sweep:runs()[r.run]
  check.eq(r.seed, want.seed, "stored seed")
end
check.eq(errors.none, nil, "no error for a finished run")
check.ok(errors.error:find("deliberate failure", 1, true), errors.error)
check.ok(errors.error:find("traceback", 1, true), "with a traceback")
check.ok(errors.nan:find("metric 'loss' is NaN at epoch 2", 1, true),
         errors.nan)
check.ok(errors.exit:find("exited with status 3", 1, true), errors.exit)
check.ok(errors.segv:find("killed by signal " .. crash_number, 1, true),
         errors.segv)
check.ok(errors.hang:find("timed out after 1s", 1, true), errors.hang)

-- Metrics are written as runs go: even a failed run keeps what it logged.
local count = {}
for _, m in ipairs(res:metrics{status = "any"}) do
  count[m.fail] = (count[m.fail] or 0) + 1
end
check.eq(count.none, 2 * 2 * (4 * 3 + 1), "3 metrics an epoch + 1 final")
check.eq(count.nan, 2 * 2 * 3, "the NaN run kept its first epoch")
check.eq(#res:metrics(), 2 * 2 * 13, "metrics() takes finished runs only")
local final = res:final{name = "w", split = "test"}
check.eq(#final, 4, "one final w per finished run")
local last = res:final{name = "loss", split = "train"}
check.eq(#last, 4, "final falls back on the last epoch")
check.eq(last[1].epoch, 4, "last epoch")
local c = res:counts()
check.eq(c.total, 24, "counts")
check.eq(c.done, 4, "counts done")
res:close()

-- The same sweep with chunks of 5 runs per worker process: every run
-- ends as before (a crash or timeout fails only the run in progress and
-- the worker's other runs go to new workers), with the same numbers.
local chunked_store = tmp .. "/toy_chunked.sqlite"
local chunked = sweep{name = "toy", store = chunked_store, grid = grid,
                      repeats = 2, run = toy, timeout = 1, chunk = 5}
local csum = chunked:run{workers = 2, progress = "none"}
check.eq(csum.done, 4, "chunked: the 'none' runs succeed")
check.eq(csum.failed, 20, "chunked: the others fail")
local cres = sweep.open(chunked_store)
for _, r in ipairs(cres:runs()) do
  check.ok(r.status == (r.fail == "none" and "done" or "failed"),
           "chunked status of " .. r.fail)
  if r.fail ~= "none" then
    local want = errors[r.fail]:match("^[^\n]*"):gsub("worker %d+", "")
    local got = r.error:match("^[^\n]*"):gsub("worker %d+", "")
    check.eq(got, want, "chunked error of " .. r.fail)
  end
end
local plain_w, chunked_w = {}, {}
local pres = sweep.open(store)
for _, m in ipairs(pres:final{name = "w", split = "test"}) do
  plain_w[m.lr .. "/" .. m.rep] = m.value
end
for _, m in ipairs(cres:final{name = "w", split = "test"}) do
  chunked_w[m.lr .. "/" .. m.rep] = m.value
end
for k, v in pairs(plain_w) do
  check.eq(chunked_w[k], v, "chunked run " .. k .. " gives the same w")
end
check.eq(#cres:metrics(), 2 * 2 * 13, "chunked: the same metrics")
pres:close()
cres:close()
check.raises('chunk must be "auto" or an integer >= 1', function()
  sweep{name = "bad", store = tmp .. "/bad.sqlite", grid = {a = 1},
        run = toy, chunk = 0}:run{workers = 1, progress = "none"}
end)
-- With nan = "keep" a NaN metric is stored (SQLite keeps it as NULL)
-- and read back as NaN, so a diverged run stays in the results.
do
  local path = tmp .. "/nan_keep.sqlite"
  sweep{name = "nan_keep", store = path, nan = "keep", grid = {a = 1},
        repeats = 3, run = function(_, ctx)
          return {acc = ctx.rep == 1 and 0 / 0 or 0.5}
        end}:run{workers = 1, progress = "none"}
  local st = sweep.open(path)
  local finals = st:final{name = "acc"}
  check.eq(#finals, 3, "every run's final value, NaN included")
  local nans = 0
  for _, row in ipairs(finals) do
    if row.value ~= row.value then nans = nans + 1 end
  end
  check.eq(nans, 1, "the NaN comes back as NaN")
  st:close()
end

-- More workers than the runner can watch, and timeouts that are not a
-- positive number (a string from the command line, zero, NaN), are
-- refused before anything runs.
check.raises("workers must be an integer from 0 to 256", function()
  sweep{name = "bad", store = tmp .. "/bad.sqlite", grid = {a = 1},
        run = toy}:run{workers = 257, progress = "none"}
end)
for _, t in ipairs{"600", 0, -1, 0 / 0} do
  check.raises("timeout must be a positive number", function()
    sweep{name = "bad", store = tmp .. "/bad.sqlite", grid = {a = 1},
          run = toy}:run{workers = 1, timeout = t, progress = "none"}
  end)
end
local bad = sweep.open(tmp .. "/bad.sqlite")
local bc = bad:counts()
check.eq(bc.pending, 1, "the refused sweeps ran nothing")
check.eq(bc.done + bc.failed + bc.running, 0,
         "counts names every status, 0 when none")
bad:close()

-- chunk "auto", the default: short runs share worker processes (a
-- worker takes runs from its list until it has worked 1 s), runs
-- longer than that keep a process each.
local function processes(path, want_runs)
  local st = sweep.open(path)
  local pids, n, runs = {}, 0, st:runs()
  for _, r in ipairs(runs) do
    check.eq(r.status, "done", path .. ": run done")
    if not pids[r.worker] then pids[r.worker], n = true, n + 1 end
  end
  check.eq(#runs, want_runs, path .. ": every run stored")
  st:close()
  return n
end
local short_path = tmp .. "/short.sqlite"
local xs = {}
for i = 1, 40 do xs[i] = i end
sweep{name = "short", store = short_path, grid = {x = xs},
      run = function(c) return {y = c.x * c.x} end}:run{workers = 1,
                                                         progress = "none"}
local short_procs = processes(short_path, 40)
check.ok(short_procs <= 2,
         "40 runs of a millisecond share a process (" .. short_procs
         .. " for 40 runs)")
local long_path = tmp .. "/long.sqlite"
local function slow(c)
  local t0 = d2r.proc.clock()
  while d2r.proc.clock() - t0 < 1.05 do end
  return {y = c.x}
end
sweep{name = "long", store = long_path, grid = {x = {1, 2}},
      run = slow}:run{workers = 1, progress = "none"}
check.eq(processes(long_path, 2), 2, "runs of 1.05 s keep a process each")

-- Runs that share a worker start alike: a run that switches gradient
-- recording off and fails leaves the next runs unharmed, and
-- math.random is seeded from each run's seed, so a run's numbers do not
-- depend on which runs went before it in its worker.
local function careless(c)
  if c.x % 10 == 0 then
    d2r.set_grad_enabled(false)
    error("careless run")
  end
  local w = d2r.tensor{1.5}:requires_grad(true)
  local g = d2r.grad((w * w):sum(), w)[1]
  return {g = g:item(), r = math.random()}
end
local function stored(path, chunk)
  sweep{name = "careless", store = path, grid = {x = xs},
        run = careless}:run{workers = 1, chunk = chunk, progress = "none"}
  local st = sweep.open(path)
  local c = st:counts()
  local out = {done = c.done, failed = c.failed, r = {}, n = 0}
  for _, row in ipairs(st:final{name = "r"}) do
    out.r[row.run], out.n = row.value, out.n + 1
  end
  st:close()
  return out
end
local shared = stored(tmp .. "/careless_auto.sqlite", "auto")
local alone = stored(tmp .. "/careless_one.sqlite", 1)
check.eq(shared.done, 36, "runs after a careless one in its worker succeed")
check.eq(shared.failed, 4, "only the careless runs fail")
check.eq(shared.n, 36, "every good run stored its draw")
for id, v in pairs(alone.r) do
  check.eq(shared.r[id], v, "math.random in run " .. id .. " as when alone")
end
check.ok(d2r.grad_enabled(), "the sweep leaves gradient recording on")

-- A run re-created from its row gives the stored numbers again.
local row = sweep.open(store):runs{fail = "none", lr = 0.5, rep = 2}[1]
local function mkey(m)
  return ("%s/%s/%s"):format(m.epoch, m.split, m.name)
end
local stored, nstored = {}, 0
local r2 = sweep.open(store)
for _, m in ipairs(r2:metrics{run = row.run}) do
  stored[mkey(m)] = m.value
  nstored = nstored + 1
end
r2:close()
local again_rows = toy_sweep:run_one(row.run)
check.eq(#again_rows, nstored, "re-created run logs as much")
for _, m in ipairs(again_rows) do
  check.eq(m.value, stored[mkey(m)], "re-created metric " .. mkey(m))
end
check.eq(toy_sweep:runs()[3].config.fail, "error", "grid order")
check.raises("deliberate failure", function()
  toy_sweep:run_one(toy_sweep:runs()[3])
end)

-- ---- resuming ------------------------------------------------------------

sum = toy_sweep:run{workers = 2, progress = "none"}
check.eq(sum.todo, 0, "a second run has nothing to do")
check.eq(sum.skipped, 24, "finished and failed runs are skipped")

-- A killed sweep leaves runs marked running (and a half-written one):
-- the next run redoes exactly those, and replaces their partial metrics.
local db = d2r.sqlite.open(store)
local ok_ids = db:rows("SELECT id FROM runs WHERE status = 'done' "
                       .. "ORDER BY id")
db:run("UPDATE runs SET status = 'running' WHERE id IN (?, ?)",
       ok_ids[1].id, ok_ids[2].id)
db:run("INSERT INTO metrics (run, epoch, split, name, value) VALUES "
       .. "(?, 99, 'train', 'partial', 1)", ok_ids[1].id)
local before = db:rows("SELECT count(*) AS n FROM metrics")[1].n
db:close()
sum = toy_sweep:run{workers = 2, progress = "none"}
check.eq(sum.todo, 2, "the two unfinished runs are redone")
check.eq(sum.done, 2, "and finish")
db = d2r.sqlite.open(store)
check.eq(db:rows("SELECT count(*) AS n FROM metrics")[1].n, before - 1,
         "the partial metrics were replaced")
check.eq(db:rows("SELECT attempts FROM runs WHERE id = ?",
                 ok_ids[1].id)[1].attempts, 2, "second attempt")
check.eq(db:rows("SELECT count(*) AS n FROM runs WHERE status = 'done'")
         [1].n, 4, "still four done")
db:close()

sum = toy_sweep:run{workers = 3, progress = "none", retry_failed = true}
check.eq(sum.todo, 20, "retry_failed redoes the failed runs")
check.eq(sum.failed, 20, "which fail again")

-- ---- shards and merging --------------------------------------------------

local function env(t) return function(k) return t[k] end end
local i, n = sweep.slurm_shard(env{SLURM_ARRAY_TASK_ID = "5",
                                   SLURM_ARRAY_TASK_MIN = "3",
                                   SLURM_ARRAY_TASK_COUNT = "4"})
check.eq(i, 2, "slurm shard index")
check.eq(n, 4, "slurm shard count")
check.eq(sweep.slurm_shard(env{}), nil, "no slurm, no shard")
check.eq(sweep.shard_path("a/b.sqlite", 1, 3), "a/b.shard1of3.sqlite",
         "shard store name")

local function square(c, ctx) return {y = c.x * c.x + ctx.rep} end
local sharded = sweep{name = "sq", store = tmp .. "/sq.sqlite",
                      grid = {x = {1, 2, 3, 4, 5}}, repeats = 2,
                      run = square, progress = "none"}
-- workers = 0 runs in this process.
local inline = sweep{name = "inline", store = tmp .. "/inline.sqlite",
                     grid = {x = {1, 2}}, run = square}
sum = inline:run{workers = 0, progress = "none"}
check.eq(sum.done, 2, "runs in this process")
local ir = sweep.open(tmp .. "/inline.sqlite")
check.eq(ir:runs()[1].worker, tostring(d2r.proc.getpid()), "this process")
ir:close()

local parts = {}
for k = 0, 2 do
  local spec = {name = "sq", grid = {x = {1, 2, 3, 4, 5}}, repeats = 2,
                run = square, progress = "none",
                store = sweep.shard_path(tmp .. "/sq.sqlite", k, 3)}
  local sh = sweep(spec):run{shard = {k, 3}, workers = 2}
  check.eq(sh.total, k == 0 and 4 or 3, "runs i with i % 3 == k")
  parts[#parts + 1] = spec.store
end
check.eq(sweep.merge(tmp .. "/sq.sqlite", parts), 10, "merged all runs")
check.eq(sweep.merge(tmp .. "/sq.sqlite", parts), 0, "merging is idempotent")
sum = sharded:run()
check.eq(sum.todo, 0, "the merged store is complete")
local merged = sweep.open(tmp .. "/sq.sqlite")
local ys = {}
for _, m in ipairs(merged:final{name = "y"}) do ys[#ys + 1] = m.value end
table.sort(ys)
check.eq(#ys, 10, "ten results")
check.eq(ys[1], 2.0, "1 + rep 1")
check.eq(ys[10], 27.0, "25 + rep 2")
local names, swept = merged:columns()
check.eq(table.concat(names, ","), "x", "config columns")
check.eq(table.concat(swept, ","), "x", "swept columns")
merged:close()

-- Slurm array tasks: each task runs its shard into its own store.
local exe, k = arg[-1], -2
while arg[k] do
  exe, k = arg[k], k - 1
end
local script = tmp .. "/slurm.lua"
local f = assert(io.open(script, "w"))
f:write(([[
local s = d2r.sweep{name = "sl", store = %q, grid = {x = {1, 2, 3}},
                    repeats = 3, run = function(c) return {y = c.x} end}
s:run{progress = "none"}
]]):format(tmp .. "/sl.sqlite"))
f:close()
for task = 4, 5 do
  local cmd = ("SLURM_ARRAY_TASK_ID=%d SLURM_ARRAY_TASK_MIN=4 "
               .. "SLURM_ARRAY_TASK_COUNT=2 '%s' '%s'"):format(task, exe,
               script)
  check.eq(os.execute(cmd), true, "slurm task " .. task)
end
local shard_stores = {sweep.shard_path(tmp .. "/sl.sqlite", 0, 2),
                      sweep.shard_path(tmp .. "/sl.sqlite", 1, 2)}
local sr = sweep.open(shard_stores[2])
check.eq(#sr:runs(), 4, "task 5 is shard 1 of 2: runs 2, 4, 6, 8")
sr:close()
check.eq(sweep.merge(tmp .. "/sl.sqlite", shard_stores), 9,
         "the two tasks made every run")

-- ---- export and subcommands ----------------------------------------------

local runs_csv, metrics_csv = sweep.export(store, tmp .. "/csv")
local rows, header = d2r.read_results(runs_csv)
check.eq(#rows, 24, "runs.csv has every run")
check.eq(table.concat(header, ","), "run,epochs,fail,lr,rep,seed,status,"
         .. "error,seconds,attempts,revision,host,worker,started,finished",
         "runs.csv columns")
local mrows, mheader = d2r.read_results(metrics_csv)
check.eq(table.concat(mheader, ","), "run,epochs,fail,lr,rep,seed,status,"
         .. "epoch,split,name,value", "metrics.csv columns")
local db2 = d2r.sqlite.open(store)
check.eq(#mrows, db2:rows("SELECT count(*) AS n FROM metrics")[1].n,
         "metrics.csv has every metric")
db2:close()
local seen_final = false
for _, m in ipairs(mrows) do
  if m.name == "w" and m.split == "test" then
    seen_final = m.epoch == "" and type(m.value) == "number"
  end
end
check.ok(seen_final, "final metrics have an empty epoch")

check.eq(d2r.commands.status{store}, true, "d2r status")
check.eq(d2r.commands.export{store, tmp .. "/csv2"}, true, "d2r export")
check.eq(d2r.commands.summary{store, "--metric", "w", "--plot",
                              tmp .. "/plots/toy"}, true, "d2r summary")
-- Misuse prints a message (on stderr) and returns false.
check.eq(d2r.commands.summary{tmp .. "/none.sqlite"}, false, "no store")
check.eq(d2r.commands.summary{store, "--bogus", "1"}, false, "bad option")
check.eq(d2r.commands.export{store}, false, "missing argument")
check.eq(d2r.commands.merge{"--help"}, true, "help")

-- ---- plots ---------------------------------------------------------------

local curve_rows = {}
for e = 1, 5 do
  for rep = 1, 3 do
    curve_rows[#curve_rows + 1] = {method = "a", epoch = e,
                                   value = e + rep * 0.1}
    curve_rows[#curve_rows + 1] = {method = "b", epoch = e,
                                   value = 2 * e - rep * 0.1}
  end
end
local have = os.execute("command -v gnuplot >/dev/null 2>&1") == true
local pr1 = d2r.plot.curves(curve_rows, {by = "method",
                                         out = tmp .. "/p/curves"})
check.ok(io.open(pr1.data) ~= nil and io.open(pr1.script) ~= nil,
         "data and script written")
if have then
  check.ok(pr1.drawn, pr1.message)
  for _, f in ipairs(pr1.files) do
    local fh = io.open(f, "rb")
    check.ok(fh and #fh:read("a") > 500, "picture " .. f)
  end
end
local dat = io.open(pr1.data):read("a")
check.ok(dat:find("# method=a", 1, true), "one block per curve")
check.ok(dat:find("\n1 1.2 1.1", 1, true), "mean at epoch 1 and band")
local pr2 = d2r.plot.points(curve_rows, {by = "method", band = "sem",
                                         out = tmp .. "/p/points",
                                         gnuplot = false})
check.eq(pr2.drawn, false, "without gnuplot nothing is drawn")
check.ok(pr2.message:find("gnuplot not found", 1, true), pr2.message)
check.ok(io.open(pr2.script):read("a"):find("yerrorbars", 1, true),
         "the script is there to run later")
check.raises("option 'out'", d2r.plot.curves, curve_rows, {})

os.execute("rm -rf '" .. tmp .. "'")
check.done("sweep")
