-- Tests of d2r.stats against values computed by hand or taken from
-- textbooks: standard error, quantiles, interquartile mean, bootstrap
-- intervals, probability of improvement, Welch's t-test, the t
-- distribution, and grouped summaries.
local check = require "check"
local stats = d2r.stats

-- Mean 5, sum of squared deviations 32: std = sqrt(32 / 7).
local xs = {2, 4, 4, 4, 5, 5, 7, 9}
check.near(stats.mean(xs), 5, 1e-12, "mean")
check.near(stats.std(xs), math.sqrt(32 / 7), 1e-12, "std")
check.near(stats.var(xs), 32 / 7, 1e-12, "var")
check.near(stats.sem(xs), math.sqrt(32 / 7) / math.sqrt(8), 1e-12, "sem")
check.near(stats.sem(xs), 0.7559289460184544, 1e-12, "sem value")

check.near(stats.quantile({1, 2, 3, 4}, 0.25), 1.75, 1e-12, "q25 type 7")
check.near(stats.quantile({4, 1, 3, 2}, 0.5), 2.5, 1e-12, "median even")
check.eq(stats.median{3, 1, 2}, 2, "median odd")
check.eq(stats.quantile({5, 1}, 0), 1, "q0 is the minimum")
check.eq(stats.quantile({5, 1}, 1), 5, "q1 is the maximum")
check.ok(stats.quantile({}, 0.5) ~= stats.quantile({}, 0.5), "empty: NaN")
check.raises("p must be in", stats.quantile, {1}, 2)

-- IQM: drop floor(n / 4) from each end.
check.near(stats.iqm{1, 2, 3, 4, 5, 6, 7, 100}, 4.5, 1e-12, "iqm n=8")
check.near(stats.iqm{50, 2, 3, 4, 1}, 3, 1e-12, "iqm n=5")
check.near(stats.iqm{1, 2, 9}, 4, 1e-12, "iqm n=3 keeps all")

-- Bootstrap intervals: seeded, inside the data's range, around the mean.
local lo, hi = stats.bootstrap_ci{3, 3, 3}
check.eq(lo, 3, "constant data: lo")
check.eq(hi, 3, "constant data: hi")
local a1, b1 = stats.bootstrap_ci(xs, {seed = 5})
local a2, b2 = stats.bootstrap_ci(xs, {seed = 5})
check.ok(a1 == a2 and b1 == b2, "same seed, same interval")
local a3, b3 = stats.bootstrap_ci(xs, {seed = 6})
check.ok(a3 ~= a1 or b3 ~= b1, "another seed, another interval")
check.ok(a1 >= 2 and b1 <= 9 and a1 < 5 and b1 > 5, "interval")
local ma, mb = stats.bootstrap_ci(xs, {stat = "median"})
check.ok(ma <= 5 and mb >= 4, "median interval")
check.raises("unknown statistic", stats.bootstrap_ci, xs, {stat = "mode"})
-- For a large normal sample the 95% interval of the mean is close to
-- mean +- 1.96 sd / sqrt(n).
local r, big = d2r.rng(11), {}
for i = 1, 400 do big[i] = r:normal(10, 2) end
local blo, bhi = stats.bootstrap_ci(big, {samples = 4000, seed = 3})
local half = 1.96 * stats.std(big) / math.sqrt(#big)
check.near((bhi - blo) / 2, half, 0.02, "bootstrap half-width")
check.near((bhi + blo) / 2, stats.mean(big), 0.01, "bootstrap centre")

-- Probability of improvement: x = {3, 4} beats y = {1, 3.5, 5} in 3 of
-- the 6 pairs; ties count half.
local p, plo, phi = stats.prob_improvement({3, 4}, {1, 3.5, 5})
check.near(p, 0.5, 1e-12, "3 of 6 pairs")
check.ok(plo <= p and p <= phi and plo >= 0 and phi <= 1, "poi interval")
check.eq(stats.prob_improvement({2, 3}, {1}), 1, "always better")
check.eq(stats.prob_improvement({2, 3}, {1}, {lower_is_better = true}), 0,
         "lower is better")
check.eq(stats.prob_improvement({1, 2}, {1, 2}), 0.5, "ties count half")

-- Student's t distribution (GSL): symmetric, and the textbook critical
-- value t(0.975, 10) = 2.228.
check.near(d2r.tdist_cdf(0, 5), 0.5, 1e-12, "cdf at 0")
check.near(d2r.tdist_cdf(2.228, 10), 0.975, 1e-4, "t table, 10 df")
check.near(d2r.tdist_cdf(2.228, 10, true), 0.025, 1e-4, "upper tail")
check.near(d2r.tdist_quantile(0.975, 10), 2.228139, 1e-6, "quantile")
check.near(stats.tdist_quantile(0.95, 1.5), -stats.tdist_quantile(0.05,
           1.5), 1e-12, "fractional df")
check.raises("degrees of freedom", d2r.tdist_cdf, 1, 0)
check.raises("probability", d2r.tdist_quantile, 1, 3)

-- Welch's test on the first worked example of Welch's t-test in the
-- textbook literature (two samples of 15): t = -2.46, df = 25.0,
-- p = 0.021; the finer digits were checked by numerical integration of
-- the t density.
local A1 = {27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6,
            23.1, 19.6, 19.0, 21.7, 21.4}
local A2 = {27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2,
            21.9, 22.1, 22.9, 20.5, 24.4}
local t, df, pv = stats.welch(A1, A2)
check.near(t, -2.46, 0.005, "Welch t (textbook)")
check.near(df, 25.0, 0.05, "Welch df (textbook)")
check.near(pv, 0.021, 0.0005, "Welch p (textbook)")
check.near(t, -2.455356398286, 1e-9, "Welch t")
check.near(df, 24.98852929023, 1e-9, "Welch df")
check.near(pv, 0.021378001, 1e-6, "Welch p")
local _, _, pless = stats.welch(A1, A2, {alternative = "less"})
local _, _, pgreat = stats.welch(A1, A2, {alternative = "greater"})
check.near(pless, pv / 2, 1e-12, "one-sided p")
check.near(pgreat, 1 - pv / 2, 1e-12, "other side")
local _, _, psame = stats.welch({1, 1}, {1, 1})
check.eq(psame, 1, "identical constant samples")
check.raises("at least two", stats.welch, {1}, {1, 2})
check.raises("unknown alternative", stats.welch, A1, A2,
             {alternative = "up"})

local cmp = stats.compare(A1, A2)
check.near(cmp.diff, stats.mean(A1) - stats.mean(A2), 1e-12, "diff")
check.near(cmp.p, pv, 1e-12, "compare carries Welch's p")
check.ok(cmp.poi < 0.5, "A1 mostly loses to A2")

-- Grouping and summaries.
local rows = {
  {method = "pg", lambda = 1, value = 3},
  {method = "nll", lambda = 1, value = 1},
  {method = "pg", lambda = 0.5, value = 5},
  {method = "nll", lambda = 1, value = 2},
  {method = "pg", lambda = 1, value = 4},
  {method = "nll", lambda = 1, value = 0 / 0},
}
local groups = stats.group(rows, {"method", "lambda"})
check.eq(#groups, 3, "three groups")
check.eq(groups[1].keys.method, "nll", "sorted by method")
check.eq(groups[2].keys.lambda, 0.5, "then by lambda, numerically")
check.eq(#groups[1].rows, 3, "rows of a group")
check.eq(#stats.group(rows, "method"), 2, "one column by name")
check.eq(#stats.group(rows), 1, "no columns: one group")

local sum = stats.summarize(rows, {by = {"method", "lambda"}})
check.eq(sum[1].n, 2, "NaN values are left out")
check.eq(sum[1].nan, 1, "and counted")
check.eq(sum[2].nan, 0, "no NaN, none counted")
check.near(sum[1].mean, 1.5, 1e-12, "group mean")
check.near(sum[1].std, math.sqrt(0.5), 1e-12, "group std")
check.near(sum[1].sem, 0.5, 1e-12, "group sem")
check.ok(sum[1].lo >= 1 and sum[1].hi <= 2, "group interval")
check.eq(sum[2].n, 1, "a single value")
check.eq(sum[2].std, 0, "has std 0")
check.eq(sum[3].method, "pg", "group columns are copied")
check.near(sum[3].iqm, 3.5, 1e-12, "group iqm")
local text = stats.format_summary(sum, {"method", "lambda"})
check.ok(text:find("method", 1, true) and text:find("95% CI", 1, true),
         "summary table headers")
check.ok(text:find("[1, 2]", 1, true), "interval cell")
check.ok(text:find("nan", 1, true), "a column counts the NaN left out")
check.ok(not stats.format_summary({sum[2]}, {"method", "lambda"})
         :find("nan", 1, true), "no NaN column when there was none")

check.done("stats")
