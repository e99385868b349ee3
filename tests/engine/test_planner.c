/*
 * Tests of the sampling planners (planner.h): on toy models with known
 * optima (including the end of rollouts at done), through the true
 * Pendulum and CartPole simulators against a random policy, and their
 * determinism, configuration checks and error propagation.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "d2r/planner.h"

/* ---- toy models --------------------------------------------------------- */

/* x' = x + a; reward -(x' - 3)^2: from 0 the best first action is 1. */
static int drift_model(void *ctx, int64_t n, const double *obs,
                       const double *act, double *next, double *r,
                       double *done) {
  (void)ctx;
  for (int64_t i = 0; i < n; i++) {
    next[i] = obs[i] + act[i];
    r[i] = -(next[i] - 3) * (next[i] - 3);
    done[i] = 0;
  }
  return 0;
}

/* A positive action first ends the rollout with 10; any step after an
 * end would cost 100, so a planner that ignored done would avoid it. */
static int cliff_model(void *ctx, int64_t n, const double *obs,
                       const double *act, double *next, double *r,
                       double *done) {
  (void)ctx;
  for (int64_t i = 0; i < n; i++) {
    bool ended = obs[i] >= 1;
    bool jump = act[i] > 0 && !ended;
    next[i] = obs[i] + (jump ? 1 : 0);
    r[i] = ended ? -100 : jump ? 10 : -1;
    done[i] = jump ? 1 : 0;
  }
  return 0;
}

static int failing_model(void *ctx, int64_t n, const double *obs,
                         const double *act, double *next, double *r,
                         double *done) {
  (void)ctx, (void)n, (void)obs, (void)act, (void)next, (void)r,
      (void)done;
  d2r_fail("the model broke");
  return -1;
}

static d2r_planner *toy_planner(d2r_planner_kind kind, int horizon) {
  d2r_planner_config c = d2r_planner_defaults(kind);
  c.horizon = horizon;
  c.population = 200;
  c.iterations = kind == D2R_PLANNER_CEM ? 5 : 3;
  c.temperature = 0.1;
  double lo = -1, hi = 1;
  d2r_planner *p = d2r_planner_new(&c, 1, &lo, &hi);
  cr_assert_not_null(p, "%s", d2r_error());
  return p;
}

Test(env_planner, toy_optimum) {
  d2r_dynamics m = {1, 1, drift_model, NULL};
  for (int k = 0; k < 2; k++) {
    d2r_planner *p = toy_planner((d2r_planner_kind)k, 5);
    double x = 0, a;
    d2r_plan_info info;
    cr_assert_eq(d2r_planner_act(p, &m, &x, &a, &info), 0, "%s",
                 d2r_error());
    /* Full speed towards 3 is best: rewards -4, -1, 0, 0, 0. */
    cr_expect_gt(a, 0.8, "%s: first action %g",
                 d2r_planner_kind_name((d2r_planner_kind)k), a);
    cr_expect_gt(info.best_return, -6.0);
    cr_expect_leq(info.best_return, -5.0 + 1e-12);
    cr_expect_eq(info.model_rows, 200LL * 5 * (k == 0 ? 5 : 3));
    d2r_planner_free(p);
  }
}

Test(env_planner, rewards_stop_at_done) {
  d2r_dynamics m = {1, 1, cliff_model, NULL};
  for (int k = 0; k < 2; k++) {
    d2r_planner *p = toy_planner((d2r_planner_kind)k, 5);
    double x = 0, a;
    d2r_plan_info info;
    cr_assert_eq(d2r_planner_act(p, &m, &x, &a, &info), 0);
    cr_expect_gt(a, 0, "%s jumps first",
                 d2r_planner_kind_name((d2r_planner_kind)k));
    cr_expect_eq(info.best_return, 10.0);
    d2r_planner_free(p);
  }
}

Test(env_planner, errors) {
  d2r_planner_config c = d2r_planner_defaults(D2R_PLANNER_CEM);
  double lo = -1, hi = 1, inf = INFINITY;
  c.elites = 500;
  cr_expect_null(d2r_planner_new(&c, 1, &lo, &hi));
  cr_expect(strstr(d2r_error(), "elites must be in 1..population"));
  c = d2r_planner_defaults(D2R_PLANNER_MPPI);
  c.temperature = 0;
  cr_expect_null(d2r_planner_new(&c, 1, &lo, &hi));
  cr_expect(strstr(d2r_error(), "temperature"));
  c = d2r_planner_defaults(D2R_PLANNER_CEM);
  cr_expect_null(d2r_planner_new(&c, 1, &lo, &inf));
  cr_expect(strstr(d2r_error(), "finite box"));
  d2r_planner_kind kind;
  cr_expect_eq(d2r_planner_kind_parse("ilqr", &kind), -1);
  cr_expect(strstr(d2r_error(), "unknown kind 'ilqr'"));

  d2r_planner *p = d2r_planner_new(&c, 1, &lo, &hi);
  d2r_dynamics bad = {1, 1, failing_model, NULL};
  double x = 0, a;
  cr_expect_eq(d2r_planner_act(p, &bad, &x, &a, NULL), -1);
  cr_expect_str_eq(d2r_error(), "the model broke");
  d2r_dynamics wide = {1, 2, drift_model, NULL};
  cr_expect_eq(d2r_planner_act(p, &wide, &x, &a, NULL), -1);
  cr_expect(strstr(d2r_error(), "takes 2 action elements"));
  d2r_planner_free(p);
}

/* ---- through the true simulators ---------------------------------------- */

static double planned_return(const char *env_name, int steps,
                             d2r_planner_kind kind, int episodes,
                             double *random_mean) {
  d2r_env_param p[] = {{"max_steps", steps}};
  d2r_env *e = d2r_env_make(env_name, 1, p);
  cr_assert_not_null(e, "%s", d2r_error());
  d2r_planner_config c = d2r_planner_defaults(kind);
  d2r_planner *pl = d2r_planner_for_env(&c, e);
  d2r_dynamics m;
  cr_assert_eq(d2r_env_dynamics(e, &m), 0);
  double mean, rets[8];
  cr_assert_eq(d2r_planner_evaluate(pl, e, &m, episodes, 7, rets, &mean),
               0, "%s", d2r_error());
  cr_assert_eq(d2r_random_evaluate(e, episodes, 7, NULL, random_mean), 0);
  d2r_planner_free(pl);
  d2r_env_release(e);
  return mean;
}

Test(env_planner, cem_swings_the_pendulum_up) {
  /* Four episodes of 100 steps (5 s) with the default CEM (H 15, N 100,
   * 5 iterations).  Measured: CEM -122.7 (every episode between -125
   * and -119: swung up and held), random -530.9 (per episode). */
  double random, cem = planned_return("pendulum", 100, D2R_PLANNER_CEM, 4,
                                      &random);
  cr_expect_gt(cem, -200, "CEM return %g", cem);
  cr_expect_lt(random, -400, "random return %g", random);
  cr_expect_gt(cem - random, 300, "CEM %g vs random %g", cem, random);
}

Test(env_planner, mppi_swings_the_pendulum_up) {
  /* Measured: MPPI -123.4, random -530.9. */
  double random, mppi = planned_return("pendulum", 100, D2R_PLANNER_MPPI,
                                       4, &random);
  cr_expect_gt(mppi, -200, "MPPI return %g", mppi);
  cr_expect_gt(mppi - random, 300, "MPPI %g vs random %g", mppi, random);
}

Test(env_planner, cem_balances_the_cartpole) {
  /* Measured: 200 of 200 steps balanced; random pushes last 31.5 steps
   * on average. */
  double random, cem = planned_return("cartpole", 200, D2R_PLANNER_CEM, 2,
                                      &random);
  cr_expect_eq(cem, 200.0);
  cr_expect_lt(random, 60.0);
}

Test(env_planner, same_seed_same_actions) {
  d2r_env *e = d2r_env_make("reacher", 0, NULL);
  d2r_dynamics m;
  cr_assert_eq(d2r_env_dynamics(e, &m), 0);
  d2r_planner_config c = d2r_planner_defaults(D2R_PLANNER_CEM);
  c.seed = 11;
  d2r_planner *p1 = d2r_planner_for_env(&c, e);
  d2r_planner *p2 = d2r_planner_for_env(&c, e);
  double o[10], a1[2], a2[2];
  cr_assert_eq(d2r_env_reset_raw(e, 3, o), 0);
  for (int t = 0; t < 3; t++) {
    cr_assert_eq(d2r_planner_act(p1, &m, o, a1, NULL), 0);
    cr_assert_eq(d2r_planner_act(p2, &m, o, a2, NULL), 0);
    cr_expect(memcmp(a1, a2, sizeof a1) == 0);
  }
  d2r_planner_reset(p1, 12);
  d2r_planner_reset(p2, 13);
  cr_assert_eq(d2r_planner_act(p1, &m, o, a1, NULL), 0);
  cr_assert_eq(d2r_planner_act(p2, &m, o, a2, NULL), 0);
  cr_expect(memcmp(a1, a2, sizeof a1) != 0, "other seeds, other samples");
  d2r_planner_free(p1);
  d2r_planner_free(p2);
  d2r_env_release(e);
}

Test(env_planner, action_repeat_stays_aligned) {
  /* With repeat 3 and horizon 2 the first rollout looks 6 steps ahead,
   * the next (one env step later) 5, then 4, then 6 again. */
  d2r_dynamics m = {1, 1, drift_model, NULL};
  d2r_planner_config c = d2r_planner_defaults(D2R_PLANNER_CEM);
  c.horizon = 2;
  c.action_repeat = 3;
  c.population = 10;
  c.elites = 2;
  c.iterations = 1;
  double lo = -1, hi = 1, x = 0, a;
  d2r_planner *p = d2r_planner_new(&c, 1, &lo, &hi);
  d2r_plan_info info;
  int64_t want[4] = {60, 50, 40, 60};
  for (int t = 0; t < 4; t++) {
    cr_assert_eq(d2r_planner_act(p, &m, &x, &a, &info), 0);
    cr_expect_eq(info.model_rows, want[t], "decision %d: %lld rows", t,
                 (long long)info.model_rows);
  }
  d2r_planner_free(p);
}
