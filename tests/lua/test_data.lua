-- Tests of the data binding: CSV tables (and their expected failures as
-- nil, message), splits, the standardiser and minibatches.
local check = require "check"
local T = d2r.tensor

local iris = assert(d2r.read_csv("data/uci/iris.csv"))
check.eq(iris.rows, 150, "rows")
check.eq(iris.features, 4, "features")
check.eq(iris.classes, 3, "classes")
check.eq(iris.label, "label", "label column")
check.eq(iris.names[1], "sepal_length", "first feature name")
check.eq(#iris.names, 4, "names")
check.eq(table.concat(iris.X:shape(), ","), "150,4", "X shape")
check.eq(table.concat(iris.y:shape(), ","), "150", "y shape")
check.eq(iris.X[1][1], 5.1, "first value")
check.eq(iris.y[1], 0.0, "labels are 0-based")
check.eq(iris.y[150], 2.0, "last label")

local tmp = os.tmpname()
local function write(text)
  local f = assert(io.open(tmp, "w"))
  f:write(text)
  f:close()
end

write("a,b\n1,2\n3,4\n")
local t = assert(d2r.read_csv(tmp, {label = false}))
check.eq(t.y, nil, "no label column")
check.eq(t.features, 2, "both columns are features")
check.tensor(t.X, {{1, 2}, {3, 4}}, nil, "values")
t = assert(d2r.read_csv(tmp, {label = "b"}))
check.tensor(t.y, {2, 4}, nil, "another label column")

write("a,label\n1,0\n2,x\n")
local none, msg = d2r.read_csv(tmp)
check.eq(none, nil, "a malformed row gives nil")
check.ok(msg:find(":3: column 2"), "the message names line and column: "
         .. msg)
none, msg = d2r.read_csv("/nonexistent/file.csv")
check.eq(none, nil, "a missing file gives nil")
check.ok(msg:find("nonexistent"), "the message names the file")
check.raises("bad argument #1 to 'd2r.read_csv'", d2r.read_csv)
check.raises("label must be a column name or false", d2r.read_csv, tmp,
             {label = true})
os.remove(tmp)

-- splits
local rng = d2r.rng(0)
local train, val, test = d2r.protocol_split(iris.y, 0.2, 0.2, rng)
check.eq(train:numel() + val:numel() + test:numel(), 150, "a partition")
check.eq(test:numel(), 30, "20% test")
check.eq(val:numel(), 24, "20% of the rest")
local seen = {}
for _, part in ipairs{train, val, test} do
  for i = 1, part:numel() do
    local k = part[i]
    check.ok(not seen[k], "no index twice")
    seen[k] = true
  end
end
local yt = iris.y:take_rows(test)
for c = 0, 2 do
  check.eq(yt:eq(c):sum():item(), 10.0, "stratified test split")
end
local again = {d2r.protocol_split(iris.y, 0.2, 0.2, d2r.rng(0))}
check.tensor(again[3], test:tolist(), 0, "splits are fixed by the seed")

local rest, part = d2r.stratified_split(iris.y, d2r.arange(150), 0.5, rng)
check.eq(rest:numel() + part:numel(), 150, "stratified_split")
rest, part = d2r.random_split(d2r.arange(10), 0.3, rng)
check.eq(part:numel(), 3, "random_split")
check.raises("fraction must be in %(0, 1%)", d2r.random_split,
             d2r.arange(10), 1.5, rng)
check.raises("appears twice", d2r.stratified_split, iris.y, T{0, 0}, 0.5,
             rng)

-- the standardiser
local std = d2r.standardizer(iris.X:take_rows(train))
local z = std:apply(iris.X:take_rows(train))
check.tensor(z:mean(1), {0, 0, 0, 0}, 1e-12, "standardised means")
check.tensor(z:var(1, false, 0), {1, 1, 1, 1}, 1e-12, "standardised vars")
check.eq(table.concat(std:mean():shape(), ","), "4", "mean()")
check.ok(std:std():min():item() > 0, "std()")
check.raises("standardizer", d2r.standardizer, d2r.zeros(0, 2))

-- minibatches (batch numbers 1-based)
local order = d2r.batch_order(rng, 10)
check.eq(d2r.batch_count(10, 4), 3, "batch_count")
check.tensor(d2r.batch_index(order, 3, 4), {order[9], order[10]}, nil,
             "the last batch is smaller")
local rows = d2r.batch_rows(iris.X, order, 1, 4)
check.eq(table.concat(rows:shape(), ","), "4,4", "batch_rows")
check.tensor(rows[2], iris.X[order[2] + 1]:tolist(), 0, "batch rows")
check.raises("batch 4 out of range 1..3", d2r.batch_index, order, 4, 4)
check.raises("batch 0 out of range", d2r.batch_index, order, 0, 4)
check.raises("batch size must be positive", d2r.batch_count, 10, 0)

check.done("test_data")
