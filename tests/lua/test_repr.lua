-- Tests of how the REPL shows values (d2r.repr: tensors with aligned
-- columns, shape and dtype, summaries of long tensors, models, tables,
-- functions) and of d2r.time.
local check = require "check"

local repr = d2r.repr

check.eq(repr(d2r.tensor{{1, 2.5}, {-3, 4}}),
         "tensor([[ 1.0000,  2.5000],\n" ..
         "        [-3.0000,  4.0000]], shape=[2, 2], dtype=float64)",
         "a matrix, aligned, with shape and dtype")
check.eq(repr(d2r.tensor{1, 2, 3}),
         "tensor([1, 2, 3], shape=[3], dtype=float64)", "integers")
check.eq(repr(d2r.scalar(0.5)), "tensor(0.5000, shape=[], dtype=float64)",
         "a 0-d tensor")
check.eq(repr(d2r.zeros(0)), "tensor([], shape=[0], dtype=float64)",
         "an empty tensor")
check.eq(repr(d2r.tensor{1e-5, 1}),
         "tensor([1.0000e-05, 1.0000e+00], shape=[2], dtype=float64)",
         "a wide range of magnitudes in scientific notation")
check.eq(repr(d2r.tensor{0 / 0, 1 / 0, -1 / 0, 1.5}),
         "tensor([   nan,    inf,   -inf, 1.5000], shape=[4], " ..
         "dtype=float64)", "non-finite values")
check.eq(repr(d2r.arange(2000)),
         "tensor([   0,    1,    2, ..., 1997, 1998, 1999], shape=[2000], " ..
         "dtype=float64)", "a long vector is cut to its ends")
local big = repr(d2r.zeros(3, 50, 50))
check.ok(#big < 2000, "a large tensor prints as a summary: " .. #big)
check.ok(big:find("\n\n        [[", 1, true), "blocks of a 3-d tensor")
check.ok(big:find("shape=[3, 50, 50]", 1, true), "its shape")
local wide = repr(d2r.rng(1):randn(2, 40))
for line in wide:gmatch("[^\n]+") do
  check.ok(#line <= 80 or line:find("shape="), "lines are wrapped: " .. line)
end
local x = d2r.ones(2):requires_grad(true)
check.ok(repr(x):find("requires_grad=true", 1, true), "a leaf")
check.ok(repr(x * 2):find("grad_fn=", 1, true), "a result with history")
local closed = d2r.ones(2)
closed:close()
check.eq(repr(closed), "tensor(closed)", "a closed tensor")

local m = d2r.mlp(4, {8}, 3, d2r.rng(1))
check.eq(repr(m), "d2r.Model(mlp, 4 -> 3, 67 parameters)\n" ..
         "  layers 4 -> 8 -> 3, relu between layers\n" ..
         "  parameters [4, 8], [8], [8, 3], [3]", "a model")
check.eq(repr(d2r.adam(m)), tostring(d2r.adam(m)), "an optimiser")
check.eq(repr(d2r.rng(1)), "d2r.Rng(mt19937)", "a generator")
check.eq(repr(d2r.standardizer(d2r.ones(3, 2))),
         "d2r.Standardizer(2 features)", "a standardiser")
check.ok(repr(d2r.plateau{}):find("^d2r%.Plateau%("), "a schedule")
check.ok(repr(d2r.early_stop{}):find("^d2r%.EarlyStop%("), "early stop")

check.eq(repr({1, 2, x = "a", [10] = true}), '{1, 2, [10] = true, x = "a"}',
         "a table")
check.eq(repr({t = d2r.ones(3), m = d2r.ones(40, 4)}),
         "{m = tensor(shape=[40, 4]), t = tensor([1, 1, 1], shape=[3])}",
         "tensors in a table: few values, or the shape")
check.eq(repr({a = {b = {c = {d = 1}}}}), "{a = {b = {c = {...}}}}",
         "nesting is bounded")
local long = {}
for i = 1, 100 do long[i] = i end
check.ok(repr(long):find("... (76 more)", 1, true), "length is bounded")
local cyc = {}
cyc.self = cyc
check.ok(repr(cyc):find("<cycle>", 1, true), "cycles")
check.eq(repr(d2r.zeros), "function: d2r.zeros", "a d2r function by name")
check.eq(repr("text"), "text", "a string as it is")
check.eq(repr(nil), "nil", "nil")
check.eq(repr(3), "3", "a number")

local secs, a, b = d2r.time(function(p, q) return p + q, "x" end, 1, 2)
check.ok(type(secs) == "number" and secs >= 0, "time: seconds")
check.eq(a, 3, "time: the results follow")
check.eq(b, "x", "time: all of them")
secs = d2r.time(function() local s = 0 for i = 1, 2e6 do s = s + i end end)
check.ok(secs > 0, "time: a loop takes time")
check.raises("boom", d2r.time, function() error("boom") end)
check.raises("function expected", d2r.time, 1)

check.done("test_repr")
