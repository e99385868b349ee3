-- Tests of the tensor binding: construction, printing, indexing,
-- arithmetic and broadcasting, reductions, views, and the error cases
-- (each caught with pcall, the interpreter surviving).
local check = require "check"
local T = d2r.tensor

-- ---- construction -----------------------------------------------------

check.eq(require "d2r", d2r, "global d2r is the module")
check.tensor(T{{1, 2}, {3, 4}}, {{1, 2}, {3, 4}})
check.tensor(T(2.5), 2.5)
check.eq(T(2.5):dim(), 0, "a number gives a 0-d tensor")
check.tensor(T{}, {})
check.tensor(d2r.zeros(2, 3), {{0, 0, 0}, {0, 0, 0}})
check.tensor(d2r.zeros{2, 3}, {{0, 0, 0}, {0, 0, 0}})
check.tensor(d2r.ones{3}, {1, 1, 1})
check.tensor(d2r.full({2}, 7), {7, 7})
check.tensor(d2r.eye(2), {{1, 0}, {0, 1}})
check.tensor(d2r.arange(4), {0, 1, 2, 3})
check.tensor(d2r.arange(1, 2, 0.25), {1, 1.25, 1.5, 1.75})
check.tensor(d2r.scalar(3), 3)
check.tensor(d2r.zeros_like(T{1, 2}), {0, 0})
check.tensor(d2r.ones_like(T{{1, 2}}), {{1, 1}})
check.ok(d2r.is_tensor(T{1}) and not d2r.is_tensor({1}), "is_tensor")

local a = T{1, 2}
local b = T(a)
b[1] = 10
check.eq(a[1], 1.0, "d2r.tensor(t) copies")
check.ok(T({1}, {requires_grad = true}):requires_grad(), "option")

-- ---- introspection and printing ----------------------------------------

local m = d2r.arange(12):reshape(3, 4)
check.eq(table.concat(m:shape(), ","), "3,4", "shape")
check.eq(m:dim(), 2, "dim()")
check.eq(m:dim(1), 3, "dim(1)")
check.eq(m:dim(-1), 4, "dim(-1)")
check.eq(m:numel(), 12, "numel")
check.eq(#m, 3, "#t is the first dimension")
check.eq(T{5}:item(), 5.0, "item")
check.eq(tostring(T{{1, 2}, {3, 4}}),
         "tensor([[1, 2],\n        [3, 4]], shape=[2, 2])", "tostring")
check.eq(tostring(T(0.5)), "tensor(0.5, shape=[])", "tostring 0-d")
check.eq(tostring(d2r.arange(2000)),
         "tensor([0, 1, 2, ..., 1997, 1998, 1999], shape=[2000])",
         "long tensors are summarised")
check.ok(tostring(T({1}, {requires_grad = true})):find("requires_grad"),
         "tostring shows requires_grad")
check.eq(m:tolist()[3][4], 11.0, "tolist")
check.eq(T(4):tolist(), 4.0, "tolist of 0-d")

-- ---- indexing (1-based positions) ----------------------------------------

local v = T{10, 20, 30}
check.eq(v[1], 10.0, "v[1]")
check.eq(v[3], 30.0, "v[3]")
check.eq(v[-1], 30.0, "v[-1] is the last")
check.tensor(m[2], {4, 5, 6, 7}, nil, "row view")
check.tensor(m[-1], {8, 9, 10, 11}, nil, "last row")
check.eq(m[2][3], 6.0, "m[2][3]")
check.eq(m[{2, 3}], 6.0, "m[{2, 3}]")
check.tensor(m[{3}], {8, 9, 10, 11}, nil, "m[{3}]")

local w = d2r.zeros(2, 3)
w[{1, 2}] = 5
check.tensor(w, {{0, 5, 0}, {0, 0, 0}}, nil, "element assignment")
w[2] = 7
check.tensor(w, {{0, 5, 0}, {7, 7, 7}}, nil, "row fill")
w[1] = T{1, 2, 3}
check.tensor(w, {{1, 2, 3}, {7, 7, 7}}, nil, "row copy")
w[2] = {4, 5, 6}
check.tensor(w, {{1, 2, 3}, {4, 5, 6}}, nil, "row from a table")
local row = w[2]
row[1] = 40
check.eq(w[2][1], 40.0, "a row view shares storage")

-- ---- views ---------------------------------------------------------------

check.tensor(m:slice(2, 2, 3), {{1, 2}, {5, 6}, {9, 10}}, nil, "slice")
check.tensor(m:slice(1, -2), {{4, 5, 6, 7}, {8, 9, 10, 11}}, nil,
             "slice to the end")
check.tensor(d2r.arange(6):slice(1, 1, 6, 2), {0, 2, 4}, nil, "step")
check.eq(d2r.arange(3):slice(1, 2, 1):numel(), 0, "empty slice")
check.tensor(m:t():slice(1, 1, 1), {{0, 4, 8}}, nil, "t()")
check.tensor(m:transpose(1, 2)[4], {3, 7, 11}, nil, "transpose")
check.tensor(T{1, 2}:unsqueeze(1), {{1, 2}}, nil, "unsqueeze(1)")
check.tensor(T{1, 2}:unsqueeze(-1), {{1}, {2}}, nil, "unsqueeze(-1)")
check.tensor(T{{{1, 2}}}:squeeze(), {1, 2}, nil, "squeeze()")
check.tensor(T{{1, 2}}:squeeze(1), {1, 2}, nil, "squeeze(1)")
check.tensor(T{1, 2}:expand(2, 2), {{1, 2}, {1, 2}}, nil, "expand")
check.tensor(m:reshape(-1, 6)[2], {6, 7, 8, 9, 10, 11}, nil, "reshape -1")
check.tensor(m:flatten():slice(1, 11), {10, 11}, nil, "flatten")
check.ok(m:t():contiguous():is_contiguous(), "contiguous")
check.tensor(d2r.cat({T{1}, T{2, 3}}), {1, 2, 3}, nil, "cat")
check.tensor(d2r.cat({T{{1}}, T{{2}}}, 2), {{1, 2}}, nil, "cat axis 2")
check.tensor(d2r.stack({T{1, 2}, T{3, 4}}), {{1, 2}, {3, 4}}, nil,
             "stack")

-- ---- index values are 0-based ---------------------------------------------

check.tensor(m:take_rows(T{2, 0}), {{8, 9, 10, 11}, {0, 1, 2, 3}}, nil,
             "take_rows")
check.tensor(m:take_rows{1}, {{4, 5, 6, 7}}, nil, "take_rows from table")
check.tensor(d2r.one_hot(T{0, 2}, 3), {{1, 0, 0}, {0, 0, 1}}, nil,
             "one_hot")
check.tensor(T{{1, 2}, {3, 4}}:gather(2, T{{1}, {0}}), {{2}, {3}}, nil,
             "gather")
check.tensor(d2r.index_add_rows(3, T{0, 2, 0}, T{{1}, {2}, {3}}),
             {{4}, {0}, {2}}, nil, "index_add_rows")
check.tensor(d2r.scatter_add({2, 2}, 2, T{{1}, {0}}, T{{5}, {6}}),
             {{0, 5}, {6, 0}}, nil, "scatter_add")

-- ---- arithmetic and broadcasting ----------------------------------------

local x = T{{1, 2}, {3, 4}}
check.tensor(x + 1, {{2, 3}, {4, 5}}, nil, "t + n")
check.tensor(1 + x, {{2, 3}, {4, 5}}, nil, "n + t")
check.tensor(x - 1, {{0, 1}, {2, 3}}, nil, "t - n")
check.tensor(10 - x, {{9, 8}, {7, 6}}, nil, "n - t")
check.tensor(x * 2, {{2, 4}, {6, 8}}, nil, "t * n")
check.tensor(2 * x, {{2, 4}, {6, 8}}, nil, "n * t")
check.tensor(x / 2, {{0.5, 1}, {1.5, 2}}, nil, "t / n")
check.tensor(12 / x, {{12, 6}, {4, 3}}, nil, "n / t")
check.tensor(x ^ 2, {{1, 4}, {9, 16}}, nil, "t ^ n")
check.tensor(2 ^ x, {{2, 4}, {8, 16}}, nil, "n ^ t")
check.tensor(-x, {{-1, -2}, {-3, -4}}, nil, "-t")
check.tensor(x + x, {{2, 4}, {6, 8}}, nil, "t + t")
check.tensor(x * x - x / x, {{0, 3}, {8, 15}}, nil, "t * t - t / t")
check.tensor(x + T{10, 20}, {{11, 22}, {13, 24}}, nil, "[2,2] + [2]")
check.tensor(T{{1}, {2}} * T{{1, 10, 100}}, {{1, 10, 100}, {2, 20, 200}},
             nil, "[2,1] * [1,3]")
check.tensor(x + {1, 2}, {{2, 4}, {4, 6}}, nil, "t + table")
check.tensor(x:maximum(2.5), {{2.5, 2.5}, {3, 4}}, nil, "maximum")
check.tensor(x:minimum(T{2, 2}), {{1, 2}, {2, 2}}, nil, "minimum")
check.tensor(x:pow(0.5):square(), {{1, 2}, {3, 4}}, 1e-12, "pow")
check.tensor(T{0}:exp(), {1}, nil, "exp")
check.tensor(d2r.exp(T{0, 1}):log(), {0, 1}, 1e-15, "log")
check.tensor(T{-1, 0, 2}:relu(), {0, 0, 2}, nil, "relu")
do
  local r = T{-1, 0 / 0, 2}:relu()
  check.ok(r[2] ~= r[2] and r[1] == 0 and r[3] == 2,
           "relu lets a NaN through")
end
check.tensor(T{-2, 3}:abs(), {2, 3}, nil, "abs")
check.tensor(T{-2, 0, 3}:sign(), {-1, 0, 1}, nil, "sign")
check.tensor(T{0}:sigmoid(), {0.5}, nil, "sigmoid")
check.tensor(T{0}:softplus(), {math.log(2)}, 1e-15, "softplus")
check.tensor(T{0}:tanh():add(T{0}:sin()):add(T{0}:cos()), {1}, nil,
             "tanh, sin, cos")
check.tensor(T{4}:sqrt(), {2}, nil, "sqrt")
check.tensor(T{0}:log1p(), {0}, nil, "log1p")
check.tensor(T{-5, 0.5, 5}:clamp(-1, 1), {-1, 0.5, 1}, nil, "clamp")
check.tensor(T{-5, 5}:clamp(nil, 1), {-5, 1}, nil, "clamp above")
check.tensor(x:eq(T{1, 0}), {{1, 0}, {0, 0}}, nil, "eq")
check.tensor(x:ne(2), {{1, 0}, {1, 1}}, nil, "ne")
check.tensor(x:lt(2), {{1, 0}, {0, 0}}, nil, "lt")
check.tensor(x:le(2), {{1, 1}, {0, 0}}, nil, "le")
check.tensor(x:gt(3), {{0, 0}, {0, 1}}, nil, "gt")
check.tensor(x:ge(3), {{0, 0}, {1, 1}}, nil, "ge")
check.tensor(d2r.where(x:gt(2), x, 0), {{0, 0}, {3, 4}}, nil, "where")
check.eq(T{1, 0 / 0, 1 / 0, 2}:count_nonfinite(), 2, "count_nonfinite")
check.tensor(x:matmul(T{1, 1}), {3, 7}, nil, "matrix @ vector")
check.tensor(x:mm(d2r.eye(2)), {{1, 2}, {3, 4}}, nil, "mm")
check.tensor(d2r.matmul(T{{1, 2, 3}}, T{{1}, {1}, {1}}), {{6}}, nil,
             "d2r.matmul")
check.ok(d2r.allclose(x, {{1, 2}, {3, 4 + 1e-12}}), "allclose")
check.ok(not d2r.allclose(x, {{1, 2}, {3, 5}}), "not allclose")

-- in-place updates return the tensor
local y = d2r.zeros(2)
check.eq(y:fill_(3), y, "fill_ returns self")
check.tensor(y, {3, 3})
check.tensor(y:axpy_(2, T{1, 2}), {5, 7}, nil, "axpy_")
check.tensor(y:scale_(0.5), {2.5, 3.5}, nil, "scale_")
check.tensor(y:copy_(T{9, 8}), {9, 8}, nil, "copy_")

-- ---- reductions (axes 1-based) --------------------------------------------

check.tensor(x:sum(), 10, nil, "sum")
check.tensor(x:sum(1), {4, 6}, nil, "sum(1)")
check.tensor(x:sum(2), {3, 7}, nil, "sum(2)")
check.tensor(x:sum(-1, true), {{3}, {7}}, nil, "sum keepdim")
check.tensor(x:sum(nil, true), {{10}}, nil, "sum all keepdim")
check.tensor(x:mean(), 2.5, nil, "mean")
check.tensor(x:mean(1), {2, 3}, nil, "mean(1)")
check.tensor(x:max(), 4, nil, "max")
check.tensor(x:max(1), {3, 4}, nil, "max(1)")
check.tensor(x:min(2), {1, 3}, nil, "min(2)")
check.tensor(T{{1, 5, 2}, {7, 0, 1}}:argmax(2), {1, 0}, nil, "argmax")
check.tensor(T{1, 5, 2}:argmax(), 1, nil, "argmax all")
check.tensor(T{0, 0}:logsumexp(), math.log(2), 1e-15, "logsumexp")
check.tensor(T{1, 2, 3, 4}:var(), 5 / 3, 1e-15, "var unbiased")
check.tensor(T{1, 2, 3, 4}:var(1, false, 0), 1.25, 1e-15, "var pop")
check.tensor(T{{0, 0}}:softmax(), {{0.5, 0.5}}, nil, "softmax")
check.tensor(T{{0, 0}}:log_softmax(2), {{-math.log(2), -math.log(2)}},
             1e-15, "log_softmax")
check.tensor(T{{1, 2}, {3, 4}}:sum_to(1, 2), {{4, 6}}, nil, "sum_to")

-- ---- errors: the interpreter survives each -----------------------------

check.raises("shapes %[2, 2%] and %[3%]", function()
  return x + d2r.zeros(3)
end)
check.raises("matmul: .*%[2, 2%].*%[3, 1%]", function()
  return x:matmul(d2r.zeros(3, 1))
end)
check.raises("row %[2%] has 1 elements, expected 2", T, {{1, 2}, {3}})
check.raises("element %[2%]%[2%] is a string, expected a number", T,
             {{1, 2}, {3, "4"}})
check.raises("element %[2%] is a table, expected a number", T,
             {1, {2}})
check.raises("element %[2%] is a number, expected a table", T,
             {{1}, 2})
check.raises("index 3 out of range for dimension 1 of size 2",
             function() return x[3] end)
check.raises("index %-3 out of range", function() return x[-3] end)
check.raises("index 5 out of range for dimension 2", function()
  return x[{1, 5}]
end)
check.raises("out of range", function() x[{3, 1}] = 1 end)
check.raises("must be an integer", function() return x[1.5] end)
check.raises("cannot index a 0%-d tensor", function() return T(1)[1] end)
check.raises("cannot set field 'foo'", function() x.foo = 1 end)
check.raises("bad argument #1 to 'd2r.zeros' %(number expected, got string%)",
             d2r.zeros, "a")
check.raises("non%-negative", d2r.zeros, -1)
check.raises("tensor, number or table expected, got string", function()
  return x + "1"
end)
check.raises("tensor, number or table expected, got boolean", function()
  return x:add(true)
end)
check.raises("d2r.Tensor expected, got number", d2r.Tensor.numel, 5)
check.raises("axis 3 out of range for a 2%-d tensor", function()
  return x:sum(3)
end)
check.raises("item: tensor of shape %[2, 2%] has 4 elements", function()
  return x:item()
end)
check.raises("reshape", function() return x:reshape(3) end)
check.raises("slice bound out of range", function()
  return x:slice(1, 1, 4)
end)
check.raises("step must be positive", function()
  return x:slice(1, 1, 2, 0)
end)
check.raises("one_hot", d2r.one_hot, T{0, 5}, 3)
check.raises("take_rows", function() return x:take_rows(T{7}) end)
check.raises("attempt to get the length of a 0%-d tensor", function()
  return #T(1)
end)
check.raises("attempt to call a nil value %(method 'nosuch'%)",
             function() return x:nosuch() end)
check.raises("empty list of tensors", d2r.cat, {})
check.raises("entry 2 is a number, not a tensor", d2r.cat, {x, 1})
do
  local c <close> = T{1, 2}
  c:close()
  check.raises("tensor has been closed", function() return c + 1 end)
  check.eq(tostring(c), "tensor(closed)", "closed tensor prints")
end
check.tensor(x, {{1, 2}, {3, 4}}, nil, "x survives the errors")

check.done("test_tensor")
