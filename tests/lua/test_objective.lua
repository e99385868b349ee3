-- Tests of distributions, rewards, losses, PG surrogates and closed-form
-- rewards through the binding, against values worked out by hand.
local check = require "check"
local T = d2r.tensor
local log, pi = math.log, math.pi

-- categorical from logits (0, log 3): probabilities 1/4, 3/4
local logits = T({{0, log(3)}}, {requires_grad = true})
check.tensor(d2r.categorical_probs(logits), {{0.25, 0.75}}, 1e-12,
             "probs")
check.tensor(d2r.categorical_log_prob(logits, T{{1, 0}}),
             {{log(0.75), log(0.25)}}, 1e-12, "log_prob")
check.tensor(d2r.categorical_entropy(logits),
             {-(0.25 * log(0.25) + 0.75 * log(0.75))}, 1e-12, "entropy")
local s = d2r.categorical_sample(d2r.rng(1), logits, 200)
check.eq(table.concat(s:shape(), ","), "1,200", "sample shape")
check.ok(s:ge(0):sum():item() == 200 and s:le(1):sum():item() == 200,
         "samples are 0-based classes")
check.tensor(d2r.categorical_sample(d2r.rng(1), logits, 200), s:tolist(),
             0, "sampling is fixed by the seed")
check.tensor(d2r.class_indices(T{0, 1}, 2), {0, 1}, 0, "class_indices")
check.raises("class_indices", d2r.class_indices, T{0, 2}, 2)
check.raises("categorical_log_prob", d2r.categorical_log_prob, logits,
             T{{2}})

-- diagonal Gaussian, mean 0, log_std 0, y = (1, 0)
local c = -0.5 * log(2 * pi)
local mean, ls = T{{0, 0}}, T{0, 0}
check.tensor(d2r.gaussian_log_prob(mean, ls, T{{1, 0}}),
             {{c - 0.5, c}}, 1e-12, "log_prob none")
check.tensor(d2r.gaussian_log_prob(mean, ls, T{{1, 0}}, "mean"),
             {c - 0.25}, 1e-12, "log_prob mean")
check.tensor(d2r.gaussian_log_prob(mean, ls, T{{1, 0}}, "sum"),
             {2 * c - 0.5}, 1e-12, "log_prob sum")
check.tensor(d2r.gaussian_entropy(T{0, log(2)}),
             {0.5 * log(2 * pi * math.exp(1)),
              0.5 * log(2 * pi * math.exp(1)) + log(2)}, 1e-12, "entropy")
check.raises("bad argument #4 to 'd2r.gaussian_log_prob' %(invalid " ..
             "option 'avg'%)", d2r.gaussian_log_prob, mean, ls, mean, "avg")
local g = d2r.gaussian_sample(d2r.rng(2), T{{0, 0}, {5, 5}}, T{0, 0}, 3)
check.eq(table.concat(g:shape(), ","), "2,3,2", "[B, G, n]")
local mu = T({{0, 0}}, {requires_grad = true})
local rs = d2r.gaussian_rsample(d2r.rng(2), mu, T{0, 0}, 4)
check.tensor(d2r.grad(rs:sum(), mu)[1], {{4, 4}}, 1e-12,
             "rsample is differentiable in the mean")
check.tensor(d2r.gaussian_sample(d2r.rng(2), mu, T{0, 0}, 4),
             rs:detach():tolist(), 1e-12, "rsample draws as sample does")

-- rewards
check.tensor(d2r.mahalanobis_reward(T{{1, 2}}, T{{0, 0}}, 2), {-10},
             1e-12, "isotropic U")
check.tensor(d2r.mahalanobis_reward(T{{1, 2}}, T{{0, 0}}, T{1, 3}),
             {-13}, 1e-12, "diagonal U")
check.tensor(d2r.mahalanobis_reward(T{{{1, 2}, {0, 0}}}, T{{0, 0}},
                                    d2r.eye(2)), {{-5, 0}}, 1e-12,
             "[B, G, n] against [B, n]")
check.tensor(d2r.onehot_reward(T{{0, 1}}, T{0}, 2, 1.5), {{0, -3}},
             1e-12, "one-hot reward, U = beta I")
check.raises("mahalanobis_reward", d2r.mahalanobis_reward, T{{1, 2}},
             T{{0, 0, 0}}, 1)

-- losses
check.tensor(d2r.cross_entropy(logits, T{1}), -log(0.75), 1e-12,
             "cross_entropy")
check.tensor(d2r.mse(T{1, 2}, T{0, 0}), 2.5, 1e-12, "mse")
check.tensor(d2r.gaussian_nll(mean, ls, T{{1, 0}}), -(c - 0.25), 1e-12,
             "gaussian_nll (mean over dims)")

-- transforms and surrogates
local r = T{{1, 3}}
check.tensor(d2r.pg_transform(r, {transform = "min_shift"}), {{0, 2}}, 0,
             "min_shift")
check.tensor(d2r.pg_transform(r, {transform = "normalize"}), {{0, 2}}, 0,
             "normalize is min_shift")
check.tensor(d2r.pg_transform(r, {transform = "rbf", gamma = 0.5}),
             {{math.exp(0.5), math.exp(1.5)}}, 1e-12, "rbf")
check.tensor(d2r.pg_transform(r, {baseline = "mean"}), {{-1, 1}}, 1e-12,
             "mean baseline")
check.tensor(d2r.pg_transform(r, {baseline = "loo"}), {{-2, 2}}, 1e-12,
             "leave-one-out baseline")
local lp = T({{-1, -2}}, {requires_grad = true})
local loss, stats = d2r.pg_surrogate(lp, r, nil, 0)
check.tensor(loss, (1 * 1 + 2 * 3) / 2, 1e-12, "surrogate")
check.near(stats.reward_mean, 2, 1e-12, "stats.reward_mean")
check.eq(stats.entropy_mean, nil, "no entropy given")
check.tensor(d2r.grad(loss, lp)[1], {{-0.5, -1.5}}, 1e-12,
             "d surrogate / d logp = -r / (B G)")
local h = T{0.5}
loss, stats = d2r.pg_surrogate(lp, r, h, 2, {transform = "min_shift"})
check.tensor(loss, (2 * 2) / 2 - 2 * 0.5, 1e-12, "with entropy")
check.near(stats.transformed_mean, 1, 1e-12, "transformed_mean")
check.near(stats.entropy_mean, 0.5, 1e-12, "entropy_mean")
loss = d2r.pathwise_surrogate(T{1, 3}, T{0.5}, 2)
check.tensor(loss, -2 - 1, 1e-12, "pathwise surrogate")
-- reward_grad keeps the reward's dependence on its parameters:
-- L = mean(-logp * u r) = (1 * 1 + 2 * 3) u / 2, dL/du = 3.5
local u = T(1):requires_grad(true)
loss = d2r.pg_surrogate(lp, r * u, nil, 0, {reward_grad = true})
check.tensor(d2r.grad(loss, u)[1], 3.5, 1e-12, "reward_grad")
loss = d2r.pg_surrogate(lp, r * u, nil, 0)
check.tensor(d2r.grad(loss, {lp, u}, {allow_unused = true})[2], 0, 0,
             "the reward is detached by default")
check.raises("unknown option 'transfrom'", d2r.pg_transform, r,
             {transfrom = "rbf"})
check.raises("invalid value 'x' for option 'baseline'", d2r.pg_transform,
             r, {baseline = "x"})
check.raises("pg_surrogate", d2r.pg_surrogate, lp, T{{1}}, nil, 0)

-- The surrogate from class counts: logits (0, log 3) against label 1,
-- U = 0.5: rewards -1 (class 0), 0 (class 1).  Counts (1, 3) are the
-- samples {0, 1, 1, 1}: with min-shift the transformed rewards are
-- (0, 1), L = (3 * -log 0.75) / 4, and the samples' surrogate agrees in
-- value, stats and gradient.
local cnt = T{{1, 3}}
local rc = d2r.onehot_reward_classes(T{1}, 2, 0.5)
check.tensor(rc, {{-1, 0}}, 0, "reward of every class")
local lc, sc = d2r.pg_surrogate_counts(logits:log_softmax(), rc, cnt,
                                       d2r.categorical_entropy(logits),
                                       0.1, {transform = "min_shift"})
local smp = T{{0, 1, 1, 1}}
local ls, ss = d2r.pg_surrogate(d2r.categorical_log_prob(logits, smp),
                                d2r.onehot_reward(smp, T{1}, 2, 0.5),
                                d2r.categorical_entropy(logits), 0.1,
                                {transform = "min_shift"})
local hval = -(0.25 * log(0.25) + 0.75 * log(0.75))
check.tensor(lc, 3 * -log(0.75) / 4 - 0.1 * hval, 1e-12, "counts surrogate")
check.tensor(lc, ls:item(), 1e-14, "counts and samples agree")
check.near(sc.reward_mean, ss.reward_mean, 1e-14, "counts reward_mean")
check.near(sc.transformed_mean, 0.75, 1e-14, "counts transformed_mean")
check.tensor(d2r.grad(lc, logits)[1], d2r.grad(ls, logits)[1]:tolist(),
             1e-14, "counts and samples: the same gradient")
local drawn = d2r.categorical_counts(d2r.rng(4), logits, 50)
check.eq(table.concat(drawn:shape(), ","), "1,2", "counts shape")
check.eq(drawn:sum():item(), 50, "counts sum to the draws")
check.tensor(d2r.categorical_counts(d2r.rng(4), logits, 50),
             drawn:tolist(), 0, "counts are fixed by the seed")
check.raises("same number of draws", d2r.pg_surrogate_counts,
             T{{0, 0}, {0, 0}}:log_softmax(), T{{-1, 0}, {0, -1}},
             T{{1, 3}, {2, 1}}, nil, 0)
check.raises("draw count must be positive", d2r.categorical_counts,
             d2r.rng(1), logits, 0)
-- A missing entropy with lambda set is reported as such, even after an
-- earlier failure was caught.
pcall(d2r.onehot_reward_classes, T{1}, 2, T{{1, 2, 3}})
check.raises("entropy is NULL but lambda is 1", d2r.pg_surrogate_counts,
             logits:log_softmax(), rc, cnt, nil, 1)
check.raises("entropy is NULL but lambda is 1", d2r.pg_surrogate,
             d2r.categorical_log_prob(logits, smp),
             d2r.onehot_reward(smp, T{1}, 2, 0.5), nil, 1)
check.raises("^[^:]*onehot_reward_classes: U must be",
             d2r.onehot_reward_classes, T{1}, 2, T{{1, 2, 3}})

-- closed forms: y rows (0, 0), (2, 2): Sigma = [[2, 2], [2, 2]]
local y = T{{0, 0}, {2, 2}}
check.tensor(d2r.covariance(y), {{2, 2}, {2, 2}}, 1e-12, "covariance")
check.tensor(d2r.reward_isotropic(y, 1), 0.25, 1e-12, "isotropic u*")
check.tensor(d2r.reward_diagonal(y, 1), {0.25, 0.25}, 1e-12,
             "diagonal u*")
check.near(d2r.reward_onehot_beta(T{0, 1, 0, 1}, 2, 1), 1.5, 1e-12,
           "one-hot beta*")
check.raises("reward_onehot_beta", d2r.reward_onehot_beta, T{1, 1}, 2, 1)
check.raises("reward_isotropic", d2r.reward_isotropic, T{{1, 1}, {1, 1}},
             1)

check.done("test_objective")
