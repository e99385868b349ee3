-- Tests of d2r.Rng: determinism by seed, clones and saved states, the
-- ranges and shapes of draws, and argument errors.
local check = require "check"

local r1, r2 = d2r.rng(7), d2r.rng(7)
check.eq(r1:uniform(), r2:uniform(), "same seed, same draws")
check.tensor(r1:randn(3), r2:randn(3):tolist(), 0, "same tensors")
local c = r1:clone()
check.eq(c:normal(), r1:normal(), "a clone continues the same stream")
local st = r1:state()
local a = r1:rand(4)
r1:set_state(st)
check.tensor(r1:rand(4), a:tolist(), 0, "set_state rewinds")
check.eq(r1:seed(7), r1, "seed returns the generator")
check.eq(r1:uniform(), d2r.rng(7):uniform(), "reseeding restarts")
check.ok(d2r.rng(1):uniform() ~= d2r.rng(2):uniform(), "seeds differ")

local r = d2r.rng(123)
for _ = 1, 100 do
  local u = r:uniform(2, 3)
  check.ok(u >= 2 and u < 3, "uniform in [lo, hi)")
  local k = r:below(5)
  check.ok(math.type(k) == "integer" and k >= 0 and k < 5, "below")
end
check.eq(table.concat(r:rand(2, 3):shape(), ","), "2,3", "rand shape")
check.eq(table.concat(r:randn{4}:shape(), ","), "4", "randn shape")
local big = r:randn({20000}, 3, 2)
check.near(big:mean():item(), 3, 0.05, "randn mean")
check.near(big:var():sqrt():item(), 2, 0.05, "randn std")
local uni = r:rand({1000}, -1, 1)
check.ok(uni:min():item() >= -1 and uni:max():item() < 1, "rand range")

local perm = r:permutation(10)
local seen = {}
for i = 1, 10 do
  seen[perm[i]] = true
end
for k = 0, 9 do
  check.ok(seen[k], "permutation holds 0..n-1")
end

local draws = r:categorical(d2r.tensor{{0, 1, 0}, {0.5, 0, 0.5}}, 50)
check.eq(table.concat(draws:shape(), ","), "2,50", "categorical shape")
check.eq(draws[1]:eq(1):sum():item(), 50.0, "a certain class")
check.eq(draws[2]:eq(1):sum():item(), 0.0, "an impossible class")
check.ok(r:next_seed() ~= r:next_seed(), "next_seed")

check.raises("number has no integer representation", d2r.rng, 1.5)
check.raises("bad argument #1 to 'd2r.rng'", d2r.rng)
check.raises("bound must be positive", function() r:below(0) end)
check.raises("d2r.Rng expected", r.uniform, {})
check.raises("set_state", function() r:set_state("short") end)
check.raises("categorical", function()
  r:categorical(d2r.tensor{1, 2}, 1)
end)
do
  local g <close> = d2r.rng(1)
  g:close()
  check.raises("generator has been closed", function() g:uniform() end)
end

check.done("test_rng")
