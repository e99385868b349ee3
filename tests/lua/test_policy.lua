-- Tests of policies, the full-covariance Gaussian, the full plug-in
-- reward and d2r.theory through the binding: shapes, reductions, bounds,
-- closed forms, errors, and a short PG run with U* that must reach the
-- data's moments.
local check = require "check"
local T = d2r.tensor
local log, pi, exp = math.log, math.pi, math.exp
local HALF_LOG_2PIE = 0.5 * log(2 * pi * exp(1))

local function shape(t)
  return table.concat(t:shape(), ",")
end

-- diagonal Gaussian, log-std head
local rng = d2r.rng(1)
local p = d2r.gaussian_policy{inputs = 3, out = 2, hidden = {8},
                              activation = "tanh", rng = rng}
check.eq(p:kind(), "gaussian", "kind")
check.eq(select(2, p:sizes()), 2, "sizes")
check.eq(p:nparams(), 4, "W0, b0, W1, b1")
check.eq(p:numel(), 3 * 8 + 8 + 8 * 4 + 4, "numel")
check.ok(tostring(p):find("d2r.Policy%(gaussian, 3 %-> 2"), "tostring")
local x = rng:randn({4, 3})
local mean, ls = p:forward(x)
check.eq(shape(mean), "4,2", "mean [B, n]")
check.eq(shape(ls), "4,2", "log_std [B, n]")
check.tensor(p(x), mean:tolist(), 0, "call == forward")
local y = p:sample(x, 5)
check.eq(shape(y), "4,5,2", "samples [B, G, n]")
check.ok(not y:requires_grad(), "sample carries no history")
check.ok(p:rsample(x, 5):requires_grad(), "rsample does")
check.tensor(p:sample(x, 3, d2r.rng(9)), p:sample(x, 3, d2r.rng(9)):tolist(),
             0, "a given generator fixes the draws")
local lp = p:log_prob(x, y)
check.eq(shape(lp), "4,5", "log_prob [B, G]")
check.tensor(lp, (p:log_prob(x, y, "sum") / 2):tolist(), 1e-12,
             "the default reduction is the per-dimension mean")
check.eq(shape(p:log_prob(x, y, "none")), "4,5,2", "none keeps dims")
check.tensor(p:entropy(x), (ls:mean(2) + HALF_LOG_2PIE):tolist(), 1e-12,
             "entropy")
check.tensor(p:mean(x), mean:tolist(), 0, "mean")
check.eq(shape(p:covariance(x)), "4,2,2", "covariance [B, n, n]")

-- one forward pass for several uses
local d = p:dist(x)
check.eq(d:kind(), "gaussian", "dist kind")
check.tensor(d:log_prob(y), lp:tolist(), 1e-12, "dist log_prob")
check.tensor(d:entropy("sum"), p:entropy(x, "sum"):tolist(), 1e-12,
             "dist entropy")
check.eq(shape(d:sample(2)), "4,2,2", "dist sample")
local dm = d:params()
check.tensor(dm, mean:tolist(), 0, "dist params")
-- other parameter tensors (here: the policy's own, scaled)
local scaled = {}
for i, t in ipairs(p:parameters()) do
  scaled[i] = t * 2
end
check.ok(p:dist(x, scaled):log_prob(y):requires_grad(),
         "dist with other parameters")

-- global log-std and soft bounds
local g = d2r.gaussian_policy{inputs = 2, out = 2, hidden = {},
                              log_std = "global", log_std_init = -1,
                              rng = rng}
check.eq(g:nparams(), 3, "W, b, log_std")
check.tensor(select(2, g:forward(T{{1, 2}, {3, 4}})), {{-1, -1}, {-1, -1}},
             0, "one log-std for every input")
local b = d2r.gaussian_policy{inputs = 2, out = 2, hidden = {},
                              bounds = {min = -1, max = 0.5, learn = true},
                              rng = rng}
check.eq(b:nparams(), 4, "W, b, lo, hi")
local lo, hi = b:bounds()
check.tensor(lo, {-1, -1}, 0, "lo")
check.tensor(hi, {0.5, 0.5}, 0, "hi")
check.near(b:bounds_penalty():item(), 3, 1e-12, "bounds_penalty")
check.eq(p:bounds(), nil, "no bounds")
-- raw log-std 10 (zero weights, bias 10) is pulled in
local bp = b:parameters()
bp[1]:fill_(0)
bp[2]:fill_(10)
local sp = function(v) return log(1 + exp(v)) end
local want = -1 + sp(0.5 - sp(0.5 - 10) + 1)
check.tensor(select(2, b:forward(T{{1, 1}})), {{want, want}}, 1e-12,
             "bounds take effect")

-- full covariance
local f = d2r.full_gaussian_policy{inputs = 2, out = 3, hidden = {8},
                                   rng = rng}
local xf = rng:randn({2, 2})
local fm, L = f:forward(xf)
check.eq(shape(L), "2,3,3", "chol [B, n, n]")
check.eq(L[1][1][2], 0, "lower triangular")
local yf = f:sample(xf, 4)
check.tensor(f:log_prob(xf, yf), d2r.mvn_log_prob(fm, L, yf, "mean")
             :tolist(), 1e-12, "full log_prob")
check.tensor(f:covariance(xf), L:matmul(L:transpose(2, 3)):tolist(),
             1e-12, "covariance L L^T")
check.raises("factor over dimensions", f.log_prob, f, xf, yf, "none")
-- log N(y; 0, I) and the entropy of N(0, I) in 2 dimensions
check.tensor(d2r.mvn_log_prob(T{{0, 0}}, d2r.eye(2), T{{1, 0}}),
             {-log(2 * pi) - 0.5}, 1e-12, "mvn_log_prob")
check.near(d2r.mvn_entropy(d2r.eye(2)):item(), 2 * HALF_LOG_2PIE, 1e-12,
           "mvn_entropy")
check.eq(shape(d2r.mvn_sample(rng, T{{0, 0}}, d2r.eye(2), 3)), "1,3,2",
         "mvn_sample")

-- categorical
local c = d2r.categorical_policy{inputs = 3, out = 4, hidden = {8},
                                 rng = rng}
local logits = c:forward(x)
check.eq(shape(logits), "4,4", "logits")
local s = c:sample(x, 6)
check.eq(shape(s), "4,6", "class draws")
local labels = T{0, 3, 1, 2}
check.tensor(c:log_prob(x, labels),
             d2r.categorical_log_prob(logits, labels:reshape(4, 1))
             :reshape(4):tolist(), 1e-12, "log_prob of labels")
check.tensor(c:entropy(x), d2r.categorical_entropy(logits):tolist(),
             1e-12, "categorical entropy")
check.raises("reparameterised", c.rsample, c, x, 2)

-- errors
check.raises("option 'rng' is required", d2r.gaussian_policy,
             {inputs = 2, out = 1})
check.raises("unknown option 'outs'", d2r.gaussian_policy,
             {inputs = 2, outs = 1, rng = rng})
check.raises("give one of", d2r.gaussian_policy,
             {["in"] = 2, inputs = 2, out = 1, rng = rng})
check.raises("unknown name 'gelu'", d2r.gaussian_policy,
             {inputs = 2, out = 1, activation = "gelu", rng = rng})
check.raises("invalid value 'fixed'", d2r.gaussian_policy,
             {inputs = 2, out = 1, log_std = "fixed", rng = rng})
check.raises("min < max", d2r.gaussian_policy,
             {inputs = 2, out = 1, bounds = {min = 1, max = 0}, rng = rng})
check.raises("x must be %[B, 3%]", p.forward, p, T{{1, 2}})
local closed = d2r.gaussian_policy{inputs = 1, out = 1, rng = rng}
closed:close()
check.raises("closed", closed.forward, closed, T{{1}})

-- the full plug-in reward
local U, cond = d2r.reward_full(T{{1, 0}, {0, 2}, {2, 1}, {3, 3}}, 0.5)
check.ok(cond > 1 and cond < 100, "condition estimate")
check.tensor(U:matmul(d2r.covariance(T{{1, 0}, {0, 2}, {2, 1}, {3, 3}})),
             {{0.25, 0}, {0, 0.25}}, 1e-12, "U Sigma = lambda / 2 I")
check.raises("singular", d2r.reward_full, T{{1, 2, 3}, {2, 0, 1}}, 1)
check.ok(d2r.reward_full(T{{1, 2, 3}, {2, 0, 1}}, 1, {ridge = 0.1}),
         "a ridge makes it invertible")
check.raises("unknown option", d2r.reward_full, T{{1}, {2}}, 1,
             {rigde = 1})

-- theory
local th = d2r.theory
local Sig = T{{1.3, 0.4}, {0.4, 0.9}}
local mu = T{1, -1}
local Us = th.optimal_reward(Sig, 0.6)
check.tensor(th.inner_cov(Us, 0.6), Sig:tolist(), 1e-12, "S*(U*) = Sigma")
local f0 = th.outer_objective(Us, Sig, 0.6):item()
check.near(f0, th.entropy(Sig):item(), 1e-12, "min F = H(q)")
check.ok(th.outer_objective(Us * 1.1, Sig, 0.6):item() > f0 and
         th.outer_objective(Us * 0.9, Sig, 0.6):item() > f0,
         "F is smallest at U*")
check.near(th.outer_objective(Us, Sig, 0.6, "mean"):item(), f0 / 2, 1e-12,
           "per-dimension F")
local m, S = T{0, 0}, T{{1, 0}, {0, 2}}
check.near(th.kl(mu, Sig, mu, Sig):item(), 0, 1e-12, "KL(p || p)")
check.near(th.cross_entropy(mu, Sig, m, S):item(),
           th.entropy(Sig):item() + th.kl(mu, Sig, m, S):item(), 1e-12,
           "CE = H + KL")
-- E r_I at y = m: -tr(S)
check.near(th.expected_reward(m, S, m, d2r.eye(2)):item(), -3, 1e-12,
           "expected_reward")
check.near(th.expected_reward_data(m, S, mu, Sig, d2r.eye(2)):item(),
           -2 - 3 - 2.2, 1e-12, "expected_reward_data")
check.near(th.inner_objective(m, S, mu, Sig, d2r.eye(2), 0.6):item(),
           -7.2 + 0.6 * th.entropy(S):item(), 1e-12, "inner_objective")

-- PG with U* moves a global-log-std policy to the data's moments: one
-- input, 100 targets with stds 0.5 and 1.5, G = 5, lambda 0.5, Adam
-- 0.03 for 300 steps then 0.003 for 300; tolerance 10% on each std.
local r = d2r.rng(5)
local Y = r:randn({100, 2}) * T{0.5, 1.5} + T{2, -1}
local lam = 0.5
local Ud = d2r.reward_diagonal(Y, lam)
local pol = d2r.gaussian_policy{inputs = 1, out = 2, hidden = {},
                                log_std = "global", rng = r}
local opt = d2r.adam(pol:parameters(), {lr = 0.03})
local X = d2r.ones(100, 1)
for step = 1, 600 do
  if step == 301 then opt:lr(0.003) end
  local dist = pol:dist(X)
  local yh = dist:sample(5)
  local loss = d2r.pg_surrogate(dist:log_prob(yh),
                                d2r.mahalanobis_reward(yh, Y, Ud),
                                dist:entropy(), lam)
  opt:zero_grad()
  loss:backward()
  opt:step()
end
local pm, pls = pol:forward(T{{1}})
local cy = d2r.covariance(Y)
for j = 1, 2 do
  check.near(pm[1][j], Y:mean(1)[j], 0.1, "PG mean " .. j)
  local ratio = exp(pls[1][j]) / math.sqrt(cy[j][j])
  check.ok(math.abs(ratio - 1) < 0.1, "PG std " .. j .. " ratio " ..
           ratio)
end

-- A loop that only asks for distributions makes no tensor userdata, but
-- each distribution holds a forward graph: the collector must still be
-- told, or dead graphs pile up (they did, 20 KB a call, without bound).
do
  local p = d2r.gaussian_policy{inputs = 2, out = 2, hidden = {64, 64},
                                rng = d2r.rng(7)}
  local x = d2r.rng(8):rand({10, 2})
  collectgarbage()
  local base = d2r.live_bytes()
  local most = 0
  for _ = 1, 3000 do
    local dist = p:dist(x)
    most = math.max(most, d2r.live_bytes() - base)
  end
  check.ok(most < 8 * 2 ^ 20, ("distributions alone keep at most %.1f "
                               .. "MiB alive"):format(most / 2 ^ 20))
end

check.done("policy")
