-- Tests of models and optimisers through the binding: forward passes
-- against hand-written ones, parameter lists, files, single optimiser
-- steps computed by hand, clipping, schedules, early stopping and a small
-- regression that must converge.
local check = require "check"
local T = d2r.tensor

local rng = d2r.rng(3)
local lin = d2r.linear(3, 2, rng)
check.eq(lin:kind(), "linear", "kind")
check.eq(select(2, lin:sizes()), 2, "sizes")
check.eq(lin:nparams(), 2, "W and b")
check.eq(lin:numel(), 8, "numel")
local W, b = table.unpack(lin:parameters())
check.ok(W:requires_grad() and b:requires_grad(), "parameters are leaves")
local x = T{{1, 2, 3}, {0, -1, 0.5}}
check.tensor(lin(x), (x:matmul(W) + b):tolist(), 1e-12, "linear forward")
check.tensor(lin:forward(x), lin(x):tolist(), 0, "forward == call")
check.ok(tostring(lin):find("d2r.Model%(linear, 3 %-> 2, 8 parameters%)"),
         "tostring")
check.eq(d2r.linear(3, 2, rng, false):nparams(), 1, "no bias")

local mlp = d2r.mlp(2, {4}, 1, rng, "tanh")
check.eq(mlp:nlayers(), 2, "nlayers")
check.eq(mlp:activation(), "tanh", "activation")
local p = mlp:parameters()
local xi = T{{0.5, -1}}
local want = (xi:matmul(p[1]) + p[2]):tanh():matmul(p[3]) + p[4]
check.tensor(mlp(xi), want:tolist(), 1e-12, "mlp forward")
check.tensor(d2r.activate(T{-1, 1}, "relu"), {0, 1}, 0, "activate")
check.tensor(d2r.linear_forward(T{{1, 1}}, T{{1}, {2}}, T{3}), {{6}}, 0,
             "linear_forward")

-- parameters share storage with the model
p[4]:fill_(100)
check.ok(mlp(xi)[1][1] > 50, "writing a parameter changes the model")

-- flat vectors
local flat = mlp:flatten()
check.eq(flat:numel(), mlp:numel(), "flatten")
mlp:assign_flat(d2r.zeros(mlp:numel()))
check.tensor(mlp(xi), {{0}}, 0, "assign_flat")
mlp:assign_flat(flat)
check.tensor(mlp:flatten(), flat:tolist(), 0, "round trip")
check.eq(d2r.params_numel(p), mlp:numel(), "params_numel of a list")
check.raises("assign_flat", function() mlp:assign_flat(d2r.zeros(2)) end)

-- functional call with other parameters
local other = {}
for i, t in ipairs(p) do
  other[i] = d2r.zeros_like(t)
end
check.tensor(mlp:call(other, xi), {{0}}, 0, "call with other params")
check.raises("1 parameter tensors given", function()
  mlp:call({p[1]}, xi)
end)

-- files: failures are nil, message
local path = os.tmpname()
check.eq(mlp:save(path), true, "save")
local copy = d2r.mlp(2, {4}, 1, d2r.rng(99), "tanh")
check.eq(copy:load(path), true, "load")
check.tensor(copy:flatten(), flat:tolist(), 0, "loaded values")
local read = assert(d2r.params_read(path))
check.eq(#read, 4, "params_read")
local ok, msg = lin:load(path)
check.eq(ok, nil, "loading a mismatched file gives nil")
check.ok(type(msg) == "string" and #msg > 0, "and a message")
ok, msg = d2r.params_read("/nonexistent/params.bin")
check.ok(ok == nil and msg:find("nonexistent"), "missing file")
os.remove(path)

-- gradients flow into parameters
local loss = mlp(xi):sum()
loss:backward()
check.ok(mlp:grad_flat():abs():sum():item() > 0, "grad_flat")
mlp:zero_grad()
check.tensor(mlp:grad_flat(), d2r.zeros(mlp:numel()):tolist(), 0,
             "zero_grad")

-- one SGD step by hand: loss = w^2, grad 2w, w = 1 - 0.1 * 2 = 0.8
local w = T({1}, {requires_grad = true})
local sgd = d2r.sgd({w}, 0.1)
check.eq(sgd:name(), "sgd", "name")
;(w * w):sum():backward()
sgd:step()
check.tensor(w, {0.8}, 1e-15, "sgd step")
sgd:zero_grad()
check.eq(w:grad(), nil, "optimiser zero_grad")
sgd:lr(0.5)
check.eq(sgd:lr(), 0.5, "set lr")

-- momentum: buf = g at the first step; second step buf = 0.9 buf + g
local m = T({1}, {requires_grad = true})
local mom = d2r.sgd({m}, {lr = 0.1, momentum = 0.9})
for _ = 1, 2 do
  mom:zero_grad()
  m:sum():backward()            -- gradient 1
  mom:step()
end
check.tensor(m, {1 - 0.1 - 0.1 * 1.9}, 1e-15, "momentum")
check.eq(mom:nbuffers(), 1, "one momentum buffer")
check.tensor(mom:buffer(1, 1), {1.9}, 1e-15, "buffer")
check.eq(mom:steps(1), 2, "steps")

-- Adam's first step moves each parameter by about lr
local a = T({1, -2}, {requires_grad = true})
local adam = d2r.adam({a}, {lr = 0.1, betas = {0.9, 0.999}})
check.eq(adam:name(), "adam", "adam")
;(a * a):sum():backward()
adam:step()
check.tensor(a, {0.9, -1.9}, 1e-6, "adam step")
local state = adam:state()
check.eq(state:numel(), 1 + 2 * 2, "state: steps then m and v")
adam:set_state(state)
check.eq(d2r.adamw({a}):name(), "adamw", "adamw")

-- clipping: gradient (3, 4) has norm 5
local c = T({0, 0}, {requires_grad = true})
;(c * T{3, 4}):sum():backward()
check.near(d2r.grad_norm({c}), 5, 1e-12, "grad_norm")
check.near(d2r.clip_grad_norm({c}, 1), 5, 1e-12, "norm before clipping")
check.tensor(c:grad(), {0.6, 0.8}, 1e-6, "clipped")
d2r.clip_grad_value({c}, 0.7)
check.tensor(c:grad(), {0.6, 0.7}, 1e-6, "clip_grad_value")
check.eq(d2r.grads_nonfinite({c}), 0, "grads_nonfinite")

-- plateau: patience 0, factor 0.5 halves lr after one bad epoch
local s = d2r.plateau{patience = 0, factor = 0.5}
check.eq(s:step(sgd, 1.0), false, "first epoch improves")
check.eq(s:step(sgd, 2.0), true, "a bad epoch lowers lr")
check.eq(sgd:lr(), 0.25, "halved")
check.eq(s:best(), 1.0, "best")
check.eq(s:epochs(), 2, "epochs")

-- early stopping with kept parameters
local e = d2r.early_stop{patience = 2, keep_best = true}
local q = T({5}, {requires_grad = true})
check.eq(e:update(1.0, 1, {q}), false, "improves")
q:fill_(7)
check.eq(e:update(2.0, 2, {q}), false, "one bad epoch")
check.eq(e:update(3.0, 3, {q}), true, "stop after patience")
check.ok(e:should_stop(), "should_stop")
local best, epoch = e:best()
check.eq(best, 1.0, "best value")
check.eq(epoch, 1, "best epoch")
check.tensor(e:best_params(), {5}, 0, "best parameters")
e:restore({q})
check.tensor(q, {5}, 0, "restore")
check.eq(d2r.early_stop():best_params(), nil, "nothing stored")

-- a small regression converges: y = 2 x + 1
local data = d2r.rng(5):rand({64, 1}, -1, 1)
local target = data * 2 + 1
local model = d2r.linear(1, 1, d2r.rng(6))
local opt = d2r.adam(model, 0.05)
local last
for _ = 1, 300 do
  opt:zero_grad()
  last = d2r.mse(model(data), target)
  last:backward()
  opt:step()
end
check.ok(last:item() < 1e-4, "regression converged: " .. last:item())
local W1, b1 = table.unpack(model:parameters())
check.near(W1:item(), 2, 1e-2, "slope")
check.near(b1:item(), 1, 1e-2, "intercept")

-- misuse raises
check.raises("option 'lr' is required", d2r.sgd, {w}, {momentum = 0.9})
check.raises("unknown option 'momentun'", d2r.sgd, {w},
             {lr = 0.1, momentun = 0.9})
check.raises("option 'lr' must be a number", d2r.adam, {w}, {lr = "x"})
check.raises("invalid value 'median' for option 'mode'", d2r.plateau,
             {mode = "median"})
check.raises("sgd", d2r.sgd, {w}, -1)
check.raises("model or list of tensors expected", d2r.adam, 5)
check.raises("entry 1 is a number", d2r.adam, {5})
check.raises("relu", d2r.mlp, 2, {4}, 1, rng, "nosuch")
check.raises("hidden sizes must be positive", d2r.mlp, 2, {0}, 1, rng)
check.raises("d2r.Rng expected", d2r.linear, 2, 2)
check.raises("forward", function() return lin(T{{1, 2}}) end)
check.raises("clip_grad_norm", function()
  local n = T({0}, {requires_grad = true})
  ;(n * (0 / 0)):sum():backward()
  d2r.clip_grad_norm({n}, 1)
end)

check.done("test_nn")
