-- Tests of d2r.checkpoint_save / d2r.checkpoint_load: a run resumed from
-- a checkpoint continues bit for bit like an uninterrupted one; damaged
-- or mismatched files give nil and a message naming the file, and leave
-- the objects unchanged; misuse raises.
local check = require "check"
local T = d2r.tensor

local X = d2r.rng(7):randn(8, 4)
local Y = T{0, 2, 1, 0, 2, 1, 0, 2}

-- A linear categorical policy trained with the PG surrogate and Adam.
local function run(seed)
  local r = {model = d2r.linear(4, 3, d2r.rng(seed)), rng = d2r.rng(seed + 1)}
  r.optim = d2r.adam(r.model, 0.05)
  return r
end

local function step(r)
  local logits = r.model(X)
  local s = d2r.categorical_sample(r.rng, logits, 4)
  local logp = d2r.categorical_log_prob(logits, s)
  local reward = d2r.onehot_reward(s, Y, 3, 1)
  local loss = d2r.pg_surrogate(logp, reward,
                                d2r.categorical_entropy(logits), 0.01,
                                {baseline = "mean"})
  r.optim:zero_grad()
  loss:backward()
  r.optim:step()
end

local function steps(r, n)
  for _ = 1, n do step(r) end
end

-- Everything a run holds, as one string (exact bits).
local function state(r)
  local parts = {}
  for _, v in ipairs(r.model:flatten():tolist()) do
    parts[#parts + 1] = string.pack("<d", v)
  end
  for _, v in ipairs(r.optim:state():tolist()) do
    parts[#parts + 1] = string.pack("<d", v)
  end
  parts[#parts + 1] = string.pack("<d", r.optim:lr())
  parts[#parts + 1] = r.rng:state()
  return table.concat(parts)
end

local path = os.tmpname()

-- resume == uninterrupted
local a, b, c = run(1), run(1), run(50)
steps(a, 5)
steps(b, 5)
b.optim:lr(0.04)
a.optim:lr(0.04)
check.eq(d2r.checkpoint_save(path, {model = b.model, optim = b.optim,
                                    rng = b.rng, epoch = 5, step = 50,
                                    meta = "seed=1\0binary"}),
         true, "save")
local epoch, meta, stepno = d2r.checkpoint_load(path, {model = c.model,
                                                     optim = c.optim,
                                                     rng = c.rng})
check.eq(epoch, 5, "epoch")
check.eq(meta, "seed=1\0binary", "meta")
check.eq(stepno, 50, "step")
check.eq(state(c), state(b), "loaded state")
steps(a, 5)
steps(c, 5)
check.ok(state(c) == state(a), "resumed run is bit-identical")

-- a part only, a list of tensors as the model
local d = run(9)
check.eq(d2r.checkpoint_load(path, {model = d.model:parameters()}), 5,
         "model only")
check.eq(d.model:flatten():tolist()[1], b.model:flatten():tolist()[1],
         "model only values")
check.eq(d2r.checkpoint_save(path, {rng = a.rng}), true, "rng only")
local e, m2, s2 = d2r.checkpoint_load(path, {})
check.ok(e == 0 and m2 == "" and s2 == 0, "defaults")
check.eq(d2r.checkpoint_load(path), 0, "no parts: the file is checked")
local ok, msg = d2r.checkpoint_load(path, {model = d.model})
check.ok(ok == nil and msg:find("holds no model parameters", 1, true),
         "missing part: " .. tostring(msg))

-- damaged files: nil, message; nothing changes
check.eq(d2r.checkpoint_save(path, {model = b.model, optim = b.optim,
                                    rng = b.rng, epoch = 5}), true, "save")
local f = assert(io.open(path, "rb"))
local bytes = f:read("a")
f:close()
local function damaged(content, want)
  local g = assert(io.open(path, "wb"))
  g:write(content)
  g:close()
  local before = state(d)
  local r1, r2 = d2r.checkpoint_load(path, {model = d.model, optim = d.optim,
                                            rng = d.rng})
  check.eq(r1, nil, want)
  check.ok(r2:find(path, 1, true) and r2:find(want, 1, true),
           "message for " .. want .. ": " .. r2)
  check.ok(state(d) == before, "unchanged after " .. want)
end
damaged(bytes:sub(1, #bytes - 7), "truncated")
damaged(bytes:sub(1, 30), "truncated")
damaged("", "truncated")
damaged(bytes:sub(1, 100) .. string.char(bytes:byte(101) ~ 1) ..
        bytes:sub(102), "checksum")
damaged("D2RP" .. bytes:sub(5), "bad magic")
damaged(bytes .. "\0", "wrong length")

-- mismatched objects
check.eq(d2r.checkpoint_save(path, {model = b.model, optim = b.optim}),
         true, "save")
local other = d2r.linear(4, 2, d2r.rng(1))
local r1, r2 = d2r.checkpoint_load(path, {model = other})
check.ok(r1 == nil and r2:find("has shape [4, 3] in the file, expected " ..
                               "[4, 2]", 1, true), r2)
r1, r2 = d2r.checkpoint_load(path, {optim = d2r.sgd(d.model, 0.1)})
check.ok(r1 == nil and r2:find("the optimiser is adam in the file, sgd",
                               1, true), r2)
r1, r2 = d2r.checkpoint_load("/nonexistent/x.d2rc", {})
check.ok(r1 == nil and r2:find("cannot open", 1, true), r2)
r1, r2 = d2r.checkpoint_save("/nonexistent/x.d2rc", {})
check.ok(r1 == nil and r2:find("/nonexistent/x.d2rc", 1, true), r2)

-- misuse raises
check.raises("bad argument #1", d2r.checkpoint_save, nil, {})
check.raises("bad argument #2", d2r.checkpoint_save, path)
check.raises("unknown option 'modle'", d2r.checkpoint_save, path,
             {modle = b.model})
check.raises("field 'optim' must be a d2r.Optim", d2r.checkpoint_save,
             path, {optim = b.model})
check.raises("field 'rng' must be a d2r.Rng", d2r.checkpoint_load, path,
             {rng = 3})
check.raises("option 'epoch' must be an integer", d2r.checkpoint_save,
             path, {epoch = 1.5})
check.raises("field 'meta' must be a string", d2r.checkpoint_save, path,
             {meta = {}})
check.raises("epoch", d2r.checkpoint_load, path, {epoch = 1})
local closed = d2r.rng(1)
closed:close()
check.raises("has been closed", d2r.checkpoint_save, path, {rng = closed})

os.remove(path)
check.done("checkpoint")
