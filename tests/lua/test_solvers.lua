-- Tests of learnable rewards and the bilevel solvers (bindings/lua/
-- bilevel.lua).  The known answer: a free Gaussian policy N(m, s^2) with
-- the exact expected-reward inner objective (tests/engine/test_bilevel.c),
-- whose inner optimum is s^2 = lambda / (2 u) and whose outer optimum is
-- u* = lambda / (2 v), v the data's variance.  Checked: the implicit
-- solver reaches u*; the unrolled hypergradient matches finite
-- differences of the truncated problem and approaches the implicit one as
-- K grows; functional Adam matches d2r.adam; non-converged solves are
-- reported and acted on as asked; early stopping restores the best
-- reward; the PG problem, the plug-in solver and the CSV writer.
local check = require "check"
local T = d2r.tensor
local S = d2r.solvers

-- ---- learnable rewards --------------------------------------------------

local r = d2r.reward_param{kind = "scalar", init = 0.7}
check.near(r:U():item(), 0.7, 1e-12, "softplus scalar u")
check.eq(#r:parameters(), 1, "one phi")
check.ok(r:U():requires_grad(), "U is differentiable")
local yh, y = T{{{1, 2}, {0, 0}}}, T{{1, 1}}
check.tensor(r:reward(yh, y), {{-0.7, -1.4}}, 1e-12, "scalar reward")
check.tensor(r:onehot_reward(T{{0, 2}}, T{2}, 3), {{-1.4, 0}}, 1e-12,
             "one-hot reward: -2u when wrong")
local phi0 = math.log(math.exp(0.7) - 1)
local sig = 1 / (1 + math.exp(-phi0))
local g = d2r.grad(r:reward(yh, y):sum(), r:parameters())[1]
check.near(g:item(), -3 * sig, 1e-9, "d reward / d phi through softplus")
check.near(r:u_grad({2})[1], 2 / sig, 1e-9, "u_grad divides by softplus'")
local raw = d2r.reward_param{kind = "scalar", init = 0.3, softplus = false}
check.near(raw:parameters()[1]:item(), 0.3, 0, "phi = u without softplus")
check.eq(raw:u_grad({2})[1], 2, "u_grad without softplus")

local dg = d2r.reward_param{kind = "diagonal", n = 2, init = {0.5, 2}}
check.tensor(dg:U(), {0.5, 2}, 1e-12, "diagonal U")
local vals, names = dg:values()
check.eq(table.concat(names, ","), "u1,u2", "diagonal names")
check.near(vals[2], 2, 1e-12, "diagonal values")

local A = {{2, 0.6}, {0.6, 1}}
local fu = d2r.reward_param{kind = "full", n = 2, init = A}
check.tensor(fu:U(), A, 1e-12, "full U = L L^T round trip")
fu:parameters()[1]:copy_(T{{-3, 5}, {0.4, -2}})
local U = fu:U()
check.near(U[{1, 2}], U[{2, 1}], 1e-14, "full U symmetric")
local a, c = U[{1, 1}], U[{2, 2}]
check.ok(a > 0 and a * c - U[{1, 2}] ^ 2 > 0,
         "full U positive definite whatever phi")
check.tensor(fu:reward(T{{{1, 0}}}, T{{0, 0}}), {{-a}}, 1e-12,
             "full reward")
fu:set(1.5)
check.tensor(fu:U(), {{1.5, 0}, {0, 1.5}}, 1e-12, "full set from number")
check.raises("not positive definite", fu.set, fu, {{1, 2}, {2, 1}})
check.raises("has no matrix U", function()
  return d2r.reward_param{kind = "network", n = 2}:U()
end)
check.raises("unknown option 'size'", d2r.reward_param, {size = 2})
check.raises("kind must be", d2r.reward_param, {kind = "tri"})

local net = d2r.reward_param{kind = "network", n = 2, hidden = {8},
                             rng = d2r.rng(3)}
local rn = net:reward(T{{{1, 2}, {0, 0}, {3, 1}}}, T{{1, 1}})
check.eq(table.concat(rn:shape(), ","), "1,3", "network reward [B, G]")
check.ok(rn:max():item() <= 0, "network reward <= 0 (softplus output)")
local gn = d2r.grad(rn:sum(), net:parameters(), {allow_unused = true})
check.ok(gn[1]:abs():sum():item() > 0, "network reward differentiable")
local cn = d2r.reward_param{kind = "network", n = 3, input = "concat",
                            output = "linear", rng = d2r.rng(4)}
check.eq(table.concat(cn:onehot_reward(T{{0, 1}, {2, 2}}, T{1, 0}, 3)
                      :shape(), ","), "2,2", "network one-hot reward")

-- ---- the Gaussian problem with a known answer ----------------------------

local ys = T{1.2, -0.3, 2.5, 0.7, 1.9, -1.1, 0.4, 3.0, 1.0, 0.2}
local lambda = 0.8
local ybar = ys:mean():item()
local v = ((ys - ybar) ^ 2):mean():item()
local u_star = lambda / (2 * v)
-- Validation data with the same mean and a quarter of the variance: the
-- validation NLL is smallest at u = 4 u*.
local yv = (ys - ybar) * 0.5 + ybar

-- theta = {m, log s}; the inner loss is -(E r + lambda H) up to a
-- constant, the outer loss the NLL (up to a constant) of a split.
local function gaussian_problem(o)
  local P = {reward = d2r.reward_param{kind = "scalar", init = o.u0,
                                       softplus = o.softplus},
             train = ys, val = o.val or ys}
  P.theta = {T{0}:requires_grad(true), T{0}:requires_grad(true)}
  function P:init(mode)
    if mode ~= "warm" then
      self.theta[1]:fill_(0)
      self.theta[2]:fill_(0)
    end
    return self.theta
  end
  function P:inner_loss(th)
    local u = self.reward:U()
    local m, ls = th[1], th[2]
    return (u * (((m - ybar) ^ 2) + v + (ls * 2):exp())
            - ls * lambda):sum()
  end
  function P:outer_loss(th, split)
    local d = self[split or "train"]
    local m, ls = th[1], th[2]
    return (ls + ((d - m) ^ 2):mean() / ((ls * 2):exp() * 2)):sum()
  end
  return P
end

-- The implicit solver reaches u*.
local P = gaussian_problem{u0 = 1}
local sol = S.implicit{problem = P, preset = "accurate", outer_steps = 150,
                       inner_steps = 60, inner_lr = 0.05, outer_lr = 0.05,
                       inner_init = "warm"}
local res = sol:run()
check.eq(res.steps, 150, "ran every outer step")
check.near(res.reward[1], u_star, 2e-3, "implicit: learned u near u*")
local last = res.records[#res.records]
check.ok(last.solve.converged and last.solve.residual < 1e-6,
         "accurate preset: the solve converged")
check.eq(#last.inner_loss, 60, "inner curve recorded")
check.ok(last.hypergrad_norm < 1e-2, "hypergradient near zero at u*")

-- The unrolled hypergradient: equal to finite differences of the
-- truncated problem, and closer to the implicit one as K grows.
local u0 = 0.45
local analytic = -1 / (2 * u0) + v / lambda
local function unrolled(K, lr, opt)
  local Q = gaussian_problem{u0 = u0, softplus = false}
  local hg, final = S.unroll(Q, Q:init("reinit"),
                             {steps = K, optim = opt or "sgd", lr = lr,
                              clip = 0})
  return hg[1], final
end
local function truncated_loss(u, K, lr)
  local Q = gaussian_problem{u0 = u, softplus = false}
  local th = Q:init("reinit")
  S.inner_fit(Q, th, {steps = K, optim = "sgd", lr = lr, clip = 0})
  return S.value_of(Q, th, "train")
end
local h = 1e-5
local fd = (truncated_loss(u0 + h, 20, 0.1) - truncated_loss(u0 - h, 20, 0.1))
           / (2 * h)
check.near(unrolled(20, 0.1), fd, 1e-6, "unrolled = finite differences")
local errors = {}
for i, K in ipairs{10, 25, 50, 100, 200} do
  local Q = gaussian_problem{u0 = u0, softplus = false}
  local th = Q:init("reinit")
  S.inner_fit(Q, th, {steps = K, optim = "sgd", lr = 0.1, clip = 0})
  local hi, _, info = S.implicit_step(Q, th, {solver = "dense"})
  check.ok(info.converged, "dense solve converged at K = " .. K)
  errors[i] = math.abs(unrolled(K, 0.1) - hi[1])
  if i > 1 then
    check.ok(errors[i] < errors[i - 1],
             ("agreement improves with K (%g after %g)"):format(errors[i],
                                                               errors[i - 1]))
  end
end
check.ok(errors[#errors] < 1e-8, "unrolled = implicit at K = 200")
check.near(unrolled(200, 0.1), analytic, 1e-8,
           "both equal the analytic hypergradient")

-- Truncation: the full window equals no truncation; a short one differs.
local Q = gaussian_problem{u0 = u0, softplus = false}
local full = S.unroll(Q, Q:init("reinit"), {steps = 30, optim = "sgd",
                                            lr = 0.1, clip = 0})
local same = S.unroll(Q, Q:init("reinit"), {steps = 30, optim = "sgd",
                                            lr = 0.1, clip = 0,
                                            truncate = 30})
local short = S.unroll(Q, Q:init("reinit"), {steps = 30, optim = "sgd",
                                             lr = 0.1, clip = 0,
                                             truncate = 3})
check.near(same[1], full[1], 1e-14, "truncate = K is no truncation")
check.ok(math.abs(short[1] - full[1]) > 1e-3 and short[1] == short[1],
         "a short window gives a different, finite hypergradient")

-- Functional Adam (with clamping) follows d2r.adam step for step.
local _, fin = unrolled(40, 0.05, "adam")
local Qa = gaussian_problem{u0 = u0, softplus = false}
local tha = Qa:init("reinit")
S.inner_fit(Qa, tha, {steps = 40, optim = "adam", lr = 0.05, clip = 1})
local _, fin_c = (function()
  local Qc = gaussian_problem{u0 = u0, softplus = false}
  return S.unroll(Qc, Qc:init("reinit"), {steps = 40, optim = "adam",
                                          lr = 0.05, clip = 1})
end)()
check.tensor(fin_c[1], tha[1]:tolist(), 1e-12, "functional Adam: m")
check.tensor(fin_c[2], tha[2]:tolist(), 1e-12, "functional Adam: log s")
check.ok(fin[1]:item() == fin[1]:item(), "unclipped Adam finite")

-- The unrolled solver moves u toward u* as well.
local Pu = gaussian_problem{u0 = 1}
local ru = S.unrolled{problem = Pu, outer_steps = 150, inner_steps = 100,
                      inner_optim = "sgd", inner_lr = 0.2, outer_lr = 0.05,
                      inner_clip = 0}:run()
check.near(ru.reward[1], u_star, 0.02, "unrolled: learned u near u*")
check.ok(ru.records[1].solve == nil, "unrolled records no solve")
check.ok(ru.records[1].live_bytes > 0, "unrolled records graph bytes")

-- ---- non-converged solves are reported, never hidden --------------------

local function one_step(o)
  local Pn = gaussian_problem{u0 = 0.45, softplus = false}
  o.problem, o.outer_steps, o.inner_steps = Pn, 1, 5
  o.inner_lr, o.outer_lr = 0.05, 0.01
  local s = S.implicit(o)
  return s:step(), Pn
end
local rec, Pn = one_step{linsolve = {solver = "neumann", alpha = 0.01,
                                     max_iter = 2}}
check.ok(not rec.solve.converged, "truncated Neumann: not converged")
check.ok(rec.solve.residual > 1e-3, "its residual is reported")
check.eq(rec.solve.iterations, 2, "its iterations are reported")
check.ok(rec.hypergrad_norm > 0, "its hypergradient is not zeroed")
check.ok(rec.updated, "on_unconverged = \"use\" steps with it")
check.ok(math.abs(Pn.reward:values()[1] - 0.45) > 1e-4, "u moved")
rec, Pn = one_step{linsolve = {solver = "neumann", alpha = 0.01,
                               max_iter = 2}, on_unconverged = "skip"}
check.ok(not rec.updated and Pn.reward:values()[1] == 0.45,
         "on_unconverged = \"skip\" leaves u")
check.raises("did not converge", one_step,
             {linsolve = {solver = "cg", max_iter = 0, tol = 1e-12},
              on_unconverged = "error"})
rec = one_step{}
check.eq(rec.solve.iterations, 1, "paper preset: one CG iteration")
check.eq(rec.solve.solver, "cg", "paper preset: CG")

-- A non-finite hypergradient stops the run instead of poisoning u.
local Pnan = gaussian_problem{u0 = 0.45}
local inner_nan = Pnan.inner_loss
function Pnan:inner_loss(th)
  return inner_nan(self, th) * (self.reward:U() / 0 * 0 + 1)
end
check.raises("hypergradient is not finite", function()
  S.unrolled{problem = Pnan, outer_steps = 1, inner_steps = 3}:step()
end)

-- ---- early stopping restores the best reward -----------------------------

-- The validation NLL is smallest at 4 u*: while u travels from 2 to u*
-- it passes that optimum, after which the NLL grows.
local Pe = gaussian_problem{u0 = 2, val = yv}
local se = S.implicit{problem = Pe, preset = "accurate", outer_steps = 300,
                      inner_steps = 60, inner_lr = 0.05, outer_lr = 0.05,
                      inner_init = "warm", early_stop = {patience = 5}}
local re = se:run()
check.ok(re.stopped_early, "stopped early")
check.ok(re.steps < 300, "before the last outer step")
local best = re.records[re.best_step]
check.near(re.best_val, best.val_nll, 1e-12, "best value recorded")
check.near(re.reward[1], best.U[1], 1e-12, "reward rolled back to the best")
check.ok(math.abs(re.reward[1] - 4 * u_star) < 0.05,
         ("the best u %g is near the validation optimum %g"):format(
           re.reward[1], 4 * u_star))
for _, rr in ipairs(re.records) do
  check.ok(rr.val_nll >= best.val_nll, "no record beats the best")
end

-- A plateau schedule lowers the outer learning rate.
local sp = S.implicit{problem = gaussian_problem{u0 = 2, val = yv},
                      preset = "accurate", outer_steps = 60,
                      inner_steps = 60, inner_lr = 0.05, outer_lr = 0.05,
                      inner_init = "warm",
                      plateau = {patience = 2, factor = 0.5}}
local rp = sp:run()
check.ok(rp.records[#rp.records].lr < 0.05, "plateau lowered the lr")

-- ---- the PG problem, the plug-in solver, recording ------------------------

local rng = d2r.rng(7)
local X = rng:rand({60, 2}, -2, 2)
local Y = X + rng:randn({60, 2}) * 1.25
local Xv = rng:rand({40, 2}, -2, 2)
local data = {X = X, Y = Y}
local vdata = {X = Xv, Y = Xv + rng:randn({40, 2}) * 1.25}
local function policy(gen)
  return d2r.gaussian_policy{inputs = 2, out = 2, hidden = {},
                             log_std = "global", rng = gen}
end
local reward = d2r.reward_param{kind = "scalar", init = 1,
                                softplus = false}
local pg = S.pg_problem{policy = policy, reward = reward, train = data,
                        val = vdata, lambda = 1, G = 5}
local th = pg:init("reinit")
local l0 = pg:inner_loss(th, d2r.rng(1))
check.ok(l0:requires_grad(), "PG inner loss differentiable")
local gphi = d2r.grad(d2r.grad(l0, th, {create_graph = true})[1]:sum(),
                      reward:parameters())[1]
check.ok(gphi:abs():item() > 0, "the mixed derivative is not zero")
check.ok(S.value_of(pg, th, "val") > 0, "outer loss on val")
check.raises("no 'test' split", pg.outer_loss, pg, th, "test")

-- The score surrogate's Hessian is negative along the mean (rewards are
-- <= 0): it is not the Hessian of the expected objective, and one CG
-- iteration is far from solving it; the record says so.
local sc = S.implicit{problem = pg, outer_steps = 1, inner_steps = 5}
local rsc = sc:step()
check.ok(not rsc.solve.converged, "score surrogate: CG reports failure")
reward:set(1)   -- that step used its unconverged solve and moved u
-- The DiCE surrogate has the same gradient and a usable Hessian.
local pd = S.pg_problem{policy = policy, reward = reward, train = data,
                        val = vdata, lambda = 1, G = 5, estimator = "dice"}
local ths = pd:init("reinit")
local a1 = d2r.grad(pg:inner_loss(ths, d2r.rng(5)), ths)
local a2 = d2r.grad(pd:inner_loss(ths, d2r.rng(5)), ths)
for i = 1, #a1 do
  check.tensor(a2[i], a1[i]:tolist(), 1e-10, "DiCE gradient = score")
end

-- The pathwise loss scales the reward by 1/n like the per-dimension
-- entropy, so its optimum is the score surrogate's.
local pp = S.pg_problem{policy = policy, reward = reward, train = data,
                        lambda = 1, G = 5, estimator = "pathwise"}
local thp = pp:init("reinit")
local lp, sp = pp:inner_loss(thp, d2r.rng(9))
local dp = pp.policy:dist(data.X, thp)
local yr = dp:rsample(5, d2r.rng(9))
local rr = d2r.mahalanobis_reward(yr, data.Y, reward:U())
check.near(lp:item(), (-rr:mean() / 2 - dp:entropy():mean()):item(), 1e-10,
           "pathwise loss = -mean(r) / n - lambda mean(H)")
check.near(sp.reward_mean, rr:mean():item(), 1e-10,
           "pathwise records the raw reward")

local dir = os.tmpname()
os.remove(dir)
local fields = {run = "a"}
local sd = S.implicit{problem = pd, outer_steps = 3, inner_steps = 4,
                      csv = {outer = dir .. "/outer.csv",
                             inner = dir .. "/inner.csv",
                             fields = fields}}
local rd = sd:run()
for _, rr in ipairs(rd.records) do
  check.ok(rr.hypergrad[1] == rr.hypergrad[1], "finite hypergradient")
end
local rows = d2r.read_results(dir .. "/outer.csv")
check.eq(#rows, 3, "one outer row per step")
check.eq(rows[3].final, 1, "last row final")
check.eq(rows[1].run, "a", "fields written")
check.ok(rows[1].u == 1 and rows[2].u ~= 1, "u recorded, then moved")
check.eq(#d2r.read_results(dir .. "/inner.csv"), 12, "inner rows")
-- An interrupted run (no final row) is purged on resume.
local partial = S.implicit{problem = pd, outer_steps = 3, inner_steps = 4,
                           csv = {outer = dir .. "/outer.csv",
                                  inner = dir .. "/inner.csv",
                                  fields = {run = "b"}}}
partial:step()
local done = S.completed(dir .. "/outer.csv", {"run"}, dir .. "/inner.csv")
check.ok(done.a and not done.b, "completed runs found")
check.eq(#d2r.read_results(dir .. "/outer.csv"), 3, "partial rows purged")
check.eq(#d2r.read_results(dir .. "/inner.csv"), 12, "inner rows purged")
os.execute("rm -rf '" .. dir .. "'")

-- The plug-in solver: the closed form, in the same interface.
local rpl = S.plugin{problem = pg, inner_steps = 10}:run()
check.eq(rpl.steps, 1, "plug-in: one step")
check.near(rpl.reward[1], d2r.reward_isotropic(Y, 1):item(), 1e-12,
           "plug-in: u from the closed form")
check.ok(rpl.records[1].train_nll > 0 and rpl.records[1].hypergrad_norm
         ~= rpl.records[1].hypergrad_norm, "plug-in: NLL, no hypergradient")

check.raises("option 'problem' is required", S.implicit, {})
check.raises("unknown option 'steps'", S.implicit, {problem = pg,
                                                    steps = 1})
check.raises("preset must be", S.implicit, {problem = pg, preset = "fast"})
check.raises("early_stop needs a validation split", S.implicit,
             {problem = S.pg_problem{policy = policy, reward = reward,
                                     train = data},
              early_stop = true})
check.done("solvers")
