/*
 * Tests of the environments (env.h, envs.c): the physics against
 * conservation laws and hand-computed steps, the wrapper's bookkeeping
 * (bounds, clipping, truncation, reset and step order), determinism from
 * a seed, the refusal of bad actions and constants, the batched predict
 * against step, and episodes run by an agent.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "d2r/env.h"

#define PI 3.14159265358979323846

static d2r_env *make(const char *name, int n, const d2r_env_param *p) {
  d2r_env *e = d2r_env_make(name, n, p);
  cr_assert_not_null(e, "%s: %s", name, d2r_error());
  return e;
}

/* One predicted step from obs under action a (both borrowed). */
static void predict1(d2r_env *e, const double *obs, const double *a,
                     double *next, double *r, double *done) {
  cr_assert_eq(d2r_env_predict_raw(e, 1, obs, a, next, r, done), 0, "%s",
               d2r_error());
}

static void expect_msg(const char *want) {
  cr_expect(strstr(d2r_error(), want) != NULL, "message '%s' lacks '%s'",
            d2r_error(), want);
}

/* ---- the catalogue ------------------------------------------------------ */

Test(env, builtins_have_their_published_shapes) {
  static const struct {
    const char *name;
    int64_t obs, act, steps;
    double act_hi;
  } want[] = {
    {"pendulum", 3, 1, 200, 2.0}, {"mountain_car", 2, 1, 999, 1.0},
    {"cartpole", 4, 1, 500, 1.0}, {"acrobot", 6, 1, 500, 1.0},
    {"reacher", 10, 2, 50, 1.0},
  };
  const char *const *names = d2r_env_builtin_names();
  for (int i = 0; i < 5; i++) {
    cr_assert_str_eq(names[i], want[i].name);
    d2r_env *e = make(want[i].name, 0, NULL);
    cr_expect_str_eq(d2r_env_name(e), want[i].name);
    cr_expect_eq(d2r_env_obs_dim(e), want[i].obs);
    cr_expect_eq(d2r_env_act_dim(e), want[i].act);
    cr_expect_eq(d2r_env_max_steps(e), want[i].steps);
    cr_expect_eq(d2r_env_act_high(e)[0], want[i].act_hi);
    cr_expect_eq(d2r_env_act_low(e)[0], -want[i].act_hi);
    cr_expect(d2r_env_act_bounded(e));
    cr_expect(d2r_env_has_predict(e) && d2r_env_has_reward(e));
    cr_expect_eq(d2r_env_elapsed(e), -1);
    d2r_env_release(e);
  }
  cr_expect_null(names[5]);
}

Test(env, constants_are_named_and_checked) {
  d2r_env_param p[] = {{"g", 9.81}, {"max_steps", 7}};
  d2r_env *e = make("pendulum", 2, p);
  int n;
  const char *const *keys;
  const double *values;
  cr_assert_eq(d2r_env_constants(e, &n, &keys, &values), 0);
  cr_expect_eq(n, 7);
  cr_expect_str_eq(keys[3], "g");
  cr_expect_eq(values[3], 9.81);
  cr_expect_eq(d2r_env_max_steps(e), 7);
  d2r_env_release(e);

  cr_expect_null(d2r_env_make("pendulm", 0, NULL));
  expect_msg("unknown environment 'pendulm'");
  expect_msg("cartpole");
  d2r_env_param bad[] = {{"gravity", 1.0}};
  cr_expect_null(d2r_env_make("pendulum", 1, bad));
  expect_msg("unknown constant 'gravity'");
  expect_msg("max_torque");
  d2r_env_param neg[] = {{"dt", -0.1}};
  cr_expect_null(d2r_env_make("pendulum", 1, neg));
  expect_msg("'dt' must be positive");
  d2r_env_param frac[] = {{"max_steps", 2.5}};
  cr_expect_null(d2r_env_make("cartpole", 1, frac));
  expect_msg("whole number");
  d2r_env_param nan[] = {{"power", NAN}};
  cr_expect_null(d2r_env_make("mountain_car", 1, nan));
  expect_msg("finite");
  d2r_env_param walls[] = {{"min_position", 1.0}};
  cr_expect_null(d2r_env_make("mountain_car", 1, walls));
  expect_msg("below max_position");
}

/* ---- Pendulum: a symplectic integrator conserves a modified energy ------ */

/*
 * With m = l = 1, the energy is H = (1/6) thd^2 + (g/2) cos th (inertia
 * m l^2 / 3 about the hinge, the centre of mass l/2 above it at th = 0).
 * Semi-implicit Euler does not conserve H: its error oscillates with an
 * amplitude of first order in h, bounded by (h/2) max |H_p H_q|, without
 * drift.  It conserves to second order the modified energy
 * H~ = H - (h/2) H_p H_q (backward error analysis; Hairer, Lubich and
 * Wanner, Geometric Numerical Integration, IX.1), here with
 * H_p = thd and H_q = -(g/2) sin th.
 */
static void pendulum_energy(double dt, double th0, int steps,
                            double *max_h, double *max_mod,
                            double *bound, double *late_h) {
  d2r_env_param p[] = {{"dt", dt}};
  d2r_env *e = make("pendulum", 1, p);
  double g = 10.0, o[3] = {cos(th0), sin(th0), 0.0}, a = 0.0, n[3], r, d;
  double h0 = 0, m0 = 0;
  *max_h = *max_mod = *bound = *late_h = 0;
  for (int t = 0; t <= steps; t++) {
    double thd = o[2], hp_hq = thd * (-0.5 * g * o[1]);
    double h = thd * thd / 6.0 + 0.5 * g * o[0];
    double mod = h - 0.5 * dt * hp_hq;
    if (t == 0) {
      h0 = h;
      m0 = mod;
    }
    *max_h = fmax(*max_h, fabs(h - h0));
    *max_mod = fmax(*max_mod, fabs(mod - m0));
    *bound = fmax(*bound, 0.5 * dt * fabs(hp_hq));
    if (t >= steps * 4 / 5) *late_h = fmax(*late_h, fabs(h - h0));
    predict1(e, o, &a, n, &r, &d);
    cr_assert(fabs(n[2]) < 8.0, "the velocity clip must not act");
    memcpy(o, n, sizeof o);
  }
  d2r_env_release(e);
}

Test(env, pendulum_conserves_energy_to_its_integrators_order) {
  double mh, mm, bound, late;
  /* From rest at horizontal: about 5 swings in 200 steps of 0.05 s. */
  pendulum_energy(0.05, PI / 2, 200, &mh, &mm, &bound, &late);
  /* Measured: |dH| <= 0.453, bound 0.68; |dH~| <= 0.016. */
  cr_expect_leq(mh, bound * 1.01, "H error %g over its bound %g", mh,
                bound);
  cr_expect_leq(mm, 0.02, "modified energy error %g", mm);
  cr_expect_leq(mm, mh / 20, "H~ must be conserved far better than H");
  /* No drift: the last fifth errs no more than the whole run. */
  cr_expect_leq(late, mh * 1.0001);
  /* First order: ten times smaller steps, about ten times smaller error
   * over the same 10 s. */
  double mh2, mm2, bound2, late2;
  pendulum_energy(0.005, PI / 2, 2000, &mh2, &mm2, &bound2, &late2);
  cr_expect(mh / mh2 > 8 && mh / mh2 < 12, "ratio %g", mh / mh2);
}

Test(env, pendulum_hand_computed_step) {
  d2r_env *e = make("pendulum", 0, NULL);
  /* th = pi/2, thd = 0, u = 1: thd' = (3*10/2 * 1 + 3 * 1) * 0.05 = 0.9,
   * th' = pi/2 + 0.9 * 0.05; cost (pi/2)^2 + 0 + 0.001 * 1^2. */
  double o[3] = {0.0, 1.0, 0.0}, a = 1.0, n[3], r, d;
  predict1(e, o, &a, n, &r, &d);
  double th = atan2(1.0, 0.0) + 0.045;
  cr_expect_float_eq(n[0], cos(th), 1e-15);
  cr_expect_float_eq(n[1], sin(th), 1e-15);
  cr_expect_float_eq(n[2], 0.9, 1e-15);
  cr_expect_float_eq(r, -(PI * PI / 4 + 0.001), 1e-14);
  cr_expect_eq(d, 0.0);
  /* An action beyond the box is clipped to max_torque = 2 first. */
  double big = 50.0, n2[3], two = 2.0, n3[3], r2, r3;
  predict1(e, o, &big, n2, &r2, &d);
  predict1(e, o, &two, n3, &r3, &d);
  cr_expect(memcmp(n2, n3, sizeof n2) == 0 && r2 == r3);
  /* Speed is clipped at 8 rad/s. */
  double fast[3] = {0.0, 1.0, 7.9};
  predict1(e, fast, &two, n, &r, &d);
  cr_expect_eq(n[2], 8.0);
  d2r_env_release(e);
}

/* ---- Acrobot: RK4 conserves energy to fourth order ---------------------- */

/* Total energy of the acrobot with the standard constants: kinetic
 * 0.5 qd^T D qd with D = [[d1, d2], [d2, m2 lc2^2 + I2]], potential from
 * the heights of the centres of mass below the pivot. */
static double acrobot_energy(const double *o) {
  double c1 = o[0], s1 = o[1], c2 = o[2], s2 = o[3], v1 = o[4], v2 = o[5];
  double g = 9.8;
  double d1 = 0.25 + (1 + 0.25 + c2) + 2.0, d2 = (0.25 + 0.5 * c2) + 1.0;
  double d3 = 0.25 + 1.0;
  double kin = 0.5 * (d1 * v1 * v1 + 2 * d2 * v1 * v2 + d3 * v2 * v2);
  double pot = -g * 0.5 * c1 - g * (c1 + 0.5 * (c1 * c2 - s1 * s2));
  return kin + pot;
}

static double acrobot_drift(double dt, int steps) {
  d2r_env_param p[] = {{"dt", dt}};
  d2r_env *e = make("acrobot", 1, p);
  double o[6] = {cos(1.0), sin(1.0), cos(-0.5), sin(-0.5), 0, 0};
  double a = 0.0, n[6], r, d, e0 = acrobot_energy(o), worst = 0;
  for (int t = 0; t < steps; t++) {
    predict1(e, o, &a, n, &r, &d);
    memcpy(o, n, sizeof o);
    worst = fmax(worst, fabs(acrobot_energy(o) - e0));
  }
  d2r_env_release(e);
  return worst;
}

Test(env, acrobot_conserves_energy_to_fourth_order) {
  /* Released from th1 = 1, th2 = -0.5 (E0 = -12.24 J) without torque,
   * for 2 s.  Measured: 0.0139 J at dt = 0.2 (0.11% of |E0|), 1.6e-5 J
   * at dt = 0.05; RK4's global error shrinks as h^4 (256 times). */
  double coarse = acrobot_drift(0.2, 10), fine = acrobot_drift(0.05, 40);
  cr_expect_leq(coarse, 0.02, "energy error %g J", coarse);
  cr_expect_geq(coarse / fine, 200, "convergence ratio %g",
                coarse / fine);
}

Test(env, acrobot_terminates_above_the_line) {
  d2r_env *e = make("acrobot", 0, NULL);
  /* Straight up (th1 = pi, th2 = 0): the tip is 2 above the pivot. */
  double up[6] = {-1.0, 0.0, 1.0, 0.0, 0.0, 0.0}, a = 0, n[6], r, d;
  predict1(e, up, &a, n, &r, &d);
  cr_expect_eq(d, 1.0);
  cr_expect_eq(r, 0.0);
  double down[6] = {1.0, 0.0, 1.0, 0.0, 0.0, 0.0};
  predict1(e, down, &a, n, &r, &d);
  cr_expect_eq(d, 0.0);
  cr_expect_eq(r, -1.0);
  /* Hanging at rest stays at rest (up to cos(-pi/2) = 6e-17 in the
   * published form of the gravity terms). */
  for (int i = 0; i < 6; i++) cr_expect_float_eq(n[i], down[i], 1e-14);
  d2r_env_release(e);
}

/* ---- Reacher: kinetic energy, conserved or dissipated ------------------- */

static double reacher_energy(const double *o) {
  double m = 0.1, l1 = 0.1, l2 = 0.11, j = 0.001;
  double lc1 = l1 / 2, lc2 = l2 / 2, i1 = m * l1 * l1 / 12;
  double i2 = m * l2 * l2 / 12, c2 = o[1], v1 = o[6], v2 = o[7];
  double a11 = m * lc1 * lc1 + i1 + m * (l1 * l1 + lc2 * lc2 +
                                         2 * l1 * lc2 * c2) + i2 + j;
  double a12 = m * (lc2 * lc2 + l1 * lc2 * c2) + i2;
  double a22 = m * lc2 * lc2 + i2 + j;
  return 0.5 * (a11 * v1 * v1 + 2 * a12 * v1 * v2 + a22 * v2 * v2);
}

Test(env, reacher_energy) {
  double q1 = 0.3, q2 = 1.0;
  double start[10] = {cos(q1), cos(q2), sin(q1), sin(q2), 0.1, 0.05,
                      2.0, -3.0, 0, 0};
  double a[2] = {0, 0}, n[10], r, d, o[10];
  for (int damped = 0; damped < 2; damped++) {
    d2r_env_param p[] = {{"damping", 0.0}};
    d2r_env *e = make("reacher", damped ? 0 : 1, p);
    memcpy(o, start, sizeof o);
    double e0 = reacher_energy(o), prev = e0, worst = 0;
    for (int t = 0; t < 50; t++) {
      predict1(e, o, a, n, &r, &d);
      memcpy(o, n, sizeof o);
      double en = reacher_energy(o);
      worst = fmax(worst, fabs(en - e0));
      if (damped)
        cr_expect_lt(en, prev, "damping must dissipate (step %d)", t);
      prev = en;
      /* The target does not move; the last two entries are the tip. */
      cr_expect_eq(o[4], 0.1);
      double tx = 0.1 * o[0] + 0.11 * (o[0] * o[1] - o[2] * o[3]);
      cr_expect_float_eq(o[8], tx - 0.1, 1e-15);
    }
    if (!damped)  /* measured 3.2e-12 J of 8.8e-3 J */
      cr_expect_leq(worst, 1e-9 * e0, "energy error %g", worst);
    else  /* measured: 98.6% dissipated in 1 s */
      cr_expect_lt(prev, 0.05 * e0);
    d2r_env_release(e);
  }
}

Test(env, reacher_reward_is_distance_and_control) {
  d2r_env *e = make("reacher", 0, NULL);
  /* Arm along x: tip at (0.21, 0); target (0, 0.2). */
  double o[10] = {1, 1, 0, 0, 0.0, 0.2, 0, 0, 0.21, -0.2};
  double a[2] = {0.5, -1.0}, n[10], r, d;
  predict1(e, o, a, n, &r, &d);
  cr_expect_float_eq(r, -hypot(0.21, 0.2) - 1.25, 1e-15);
  cr_expect_eq(d, 0.0);
  d2r_env_release(e);
}

/* ---- CartPole and MountainCar: hand-computed steps ---------------------- */

Test(env, cartpole_two_euler_steps) {
  d2r_env *e = make("cartpole", 0, NULL);
  /* From rest upright, a = 1 (force 10 N), M = 1.1, pml = 0.05:
   *   temp = 10 / 1.1 = 100/11,
   *   thdd = -(100/11) / (0.5 (4/3 - 0.1/1.1)) = -600/41,
   *   xdd  = 100/11 + 0.05 (600/41) / 1.1 = 4400/451.
   * Euler moves positions with the old velocities: after one step
   * (0, 0.02 * 4400/451, 0, -0.02 * 600/41); th is still 0, so the
   * accelerations repeat and the second step gives
   * (0.02 * 88/451, 176/451, -0.02 * 12/41, -24/41). */
  double o[4] = {0, 0, 0, 0}, a = 1.0, n[4], r, d;
  predict1(e, o, &a, n, &r, &d);
  double want1[4] = {0, 88.0 / 451, 0, -12.0 / 41};
  for (int i = 0; i < 4; i++)
    cr_expect_float_eq(n[i], want1[i], 1e-15, "step 1, %d: %.17g", i,
                       n[i]);
  cr_expect_eq(r, 1.0);
  cr_expect_eq(d, 0.0);
  memcpy(o, n, sizeof o);
  predict1(e, o, &a, n, &r, &d);
  double want2[4] = {0.02 * 88 / 451, 176.0 / 451, -0.02 * 12 / 41,
                     -24.0 / 41};
  for (int i = 0; i < 4; i++)
    cr_expect_float_eq(n[i], want2[i], 1e-15, "step 2, %d: %.17g", i,
                       n[i]);
  /* Past 12 degrees the episode terminates, still earning 1. */
  double tilted[4] = {0, 0, 0.2094, 1.0};
  predict1(e, tilted, &a, n, &r, &d);
  cr_expect_eq(d, 1.0);
  cr_expect_eq(r, 1.0);
  double off[4] = {2.39, 1.0, 0, 0};
  predict1(e, off, &a, n, &r, &d);
  cr_expect_eq(d, 1.0);
  d2r_env_release(e);
}

Test(env, mountain_car_clamps_and_goal) {
  d2r_env *e = make("mountain_car", 0, NULL);
  double n[2], r, d;
  /* v = 0.07 + 0.0015 - 0.0025 cos(-1.5) = 0.07132 is clamped to 0.07. */
  double fast[2] = {-0.5, 0.07}, one = 1.0;
  predict1(e, fast, &one, n, &r, &d);
  cr_expect_eq(n[1], 0.07);
  cr_expect_float_eq(n[0], -0.43, 1e-15);
  cr_expect_float_eq(r, -0.1, 1e-15);
  cr_expect_eq(d, 0.0);
  /* Into the left wall: position clipped to -1.2, velocity zeroed. */
  double wall[2] = {-1.19, -0.05}, left = -1.0;
  predict1(e, wall, &left, n, &r, &d);
  cr_expect_eq(n[0], -1.2);
  cr_expect_eq(n[1], 0.0);
  /* Over the goal: v = 0.05 + 0.00075 - 0.0025 cos(1.32), x = 0.44 + v. */
  double near[2] = {0.44, 0.05}, half = 0.5;
  predict1(e, near, &half, n, &r, &d);
  double v = 0.05 + 0.5 * 0.0015 - 0.0025 * cos(3 * 0.44);
  cr_expect_float_eq(n[1], v, 1e-16);
  cr_expect_float_eq(n[0], 0.44 + v, 1e-16);
  cr_expect_eq(d, 1.0);
  cr_expect_float_eq(r, 100.0 - 0.1 * 0.25, 1e-13);
  d2r_env_release(e);
}

/* ---- the wrapper -------------------------------------------------------- */

Test(env, truncation_at_the_episode_limit) {
  d2r_env_param p[] = {{"max_steps", 3}};
  d2r_env *e = make("pendulum", 1, p);
  double o[3], a = 0.0;
  d2r_step_info info;
  cr_expect_eq(d2r_env_step_raw(e, &a, o, &info), -1);
  expect_msg("step before reset");
  cr_assert_eq(d2r_env_reset_raw(e, 1, o), 0);
  for (int t = 1; t <= 3; t++) {
    cr_assert_eq(d2r_env_step_raw(e, &a, o, &info), 0, "%s", d2r_error());
    cr_expect_eq(info.elapsed, t);
    cr_expect_eq(info.truncated, t == 3);
    cr_expect(!info.terminated);
  }
  cr_expect(d2r_env_done(e));
  cr_expect_eq(d2r_env_step_raw(e, &a, o, &info), -1);
  expect_msg("after the episode ended");
  cr_assert_eq(d2r_env_reset_raw(e, 2, o), 0);
  cr_expect_eq(d2r_env_elapsed(e), 0);
  cr_expect_eq(d2r_env_step_raw(e, &a, o, &info), 0);
  d2r_env_release(e);
}

Test(env, termination_ends_the_episode) {
  d2r_env *e = make("cartpole", 0, NULL);
  double o[4], a = 1.0;
  d2r_step_info info = {0};
  cr_assert_eq(d2r_env_reset_raw(e, 3, o), 0);
  int t = 0;
  while (!info.terminated && t < 500) {
    cr_assert_eq(d2r_env_step_raw(e, &a, o, &info), 0);
    t++;
  }
  /* Pushing right all the time topples the pole within a second. */
  cr_expect(info.terminated && t < 50, "t = %d", t);
  cr_expect(!info.truncated);
  cr_expect_eq(d2r_env_step_raw(e, &a, o, &info), -1);
  d2r_env_release(e);
}

Test(env, same_seed_same_episode) {
  for (int k = 0; d2r_env_builtin_names()[k]; k++) {
    const char *name = d2r_env_builtin_names()[k];
    d2r_env *e1 = make(name, 0, NULL), *e2 = make(name, 0, NULL);
    int64_t no = d2r_env_obs_dim(e1), na = d2r_env_act_dim(e1);
    double o1[10], o2[10], o3[10], a[2];
    d2r_step_info i1, i2;
    cr_assert_eq(d2r_env_reset_raw(e1, 42, o1), 0);
    cr_assert_eq(d2r_env_reset_raw(e2, 42, o2), 0);
    cr_expect(memcmp(o1, o2, (size_t)no * sizeof(double)) == 0, "%s",
              name);
    for (int t = 0; t < 20; t++) {
      for (int j = 0; j < na; j++) a[j] = sin(t + j);
      cr_assert_eq(d2r_env_step_raw(e1, a, o1, &i1), 0);
      cr_assert_eq(d2r_env_step_raw(e2, a, o2, &i2), 0);
      cr_expect(memcmp(o1, o2, (size_t)no * sizeof(double)) == 0);
      cr_expect_eq(i1.reward, i2.reward);
      if (i1.terminated) break;
    }
    cr_assert_eq(d2r_env_reset_raw(e2, 43, o3), 0);
    cr_assert_eq(d2r_env_reset_raw(e1, 42, o1), 0);
    cr_expect(memcmp(o1, o3, (size_t)no * sizeof(double)) != 0,
              "%s: another seed, another start", name);
    d2r_env_release(e1);
    d2r_env_release(e2);
  }
}

Test(env, starts_and_steps_stay_in_the_box) {
  for (int k = 0; d2r_env_builtin_names()[k]; k++) {
    d2r_env *e = make(d2r_env_builtin_names()[k], 0, NULL);
    const double *lo = d2r_env_obs_low(e), *hi = d2r_env_obs_high(e);
    int64_t no = d2r_env_obs_dim(e), na = d2r_env_act_dim(e);
    double o[10], a[2];
    d2r_step_info info;
    for (uint64_t seed = 0; seed < 20; seed++) {
      cr_assert_eq(d2r_env_reset_raw(e, seed, o), 0);
      for (int t = 0; t < 30; t++) {
        for (int i = 0; i < no; i++)
          cr_expect(o[i] >= lo[i] && o[i] <= hi[i], "%s: obs %d = %g",
                    d2r_env_name(e), i, o[i]);
        for (int j = 0; j < na; j++) a[j] = 3.0 * cos(seed + t * j);
        cr_assert_eq(d2r_env_step_raw(e, a, o, &info), 0);
        if (info.terminated || info.truncated) break;
      }
    }
    d2r_env_release(e);
  }
}

Test(env, predict_matches_step) {
  for (int k = 0; d2r_env_builtin_names()[k]; k++) {
    d2r_env *e = make(d2r_env_builtin_names()[k], 0, NULL);
    int64_t no = d2r_env_obs_dim(e), na = d2r_env_act_dim(e);
    double o[10], n[10], p[10], a[2], r, d, rr, dd;
    d2r_step_info info;
    cr_assert_eq(d2r_env_reset_raw(e, 5, o), 0);
    for (int t = 0; t < 10; t++) {
      for (int j = 0; j < na; j++) a[j] = 0.7 * sin(3 * t + j);
      predict1(e, o, a, p, &r, &d);
      cr_assert_eq(d2r_env_step_raw(e, a, n, &info), 0);
      for (int i = 0; i < no; i++)
        cr_expect_float_eq(p[i], n[i], 1e-12, "%s obs %d",
                           d2r_env_name(e), i);
      cr_expect_float_eq(r, info.reward, 1e-12);
      cr_expect_eq(d, info.terminated ? 1.0 : 0.0);
      cr_assert_eq(d2r_env_reward_raw(e, 1, o, a, n, &rr, &dd), 0);
      cr_expect_float_eq(rr, info.reward, 1e-12);
      cr_expect_eq(dd, d);
      if (info.terminated) break;
      memcpy(o, n, sizeof o);
    }
    d2r_env_release(e);
  }
}

Test(env, bad_actions_are_refused) {
  d2r_env *e = make("reacher", 0, NULL);
  d2r_tensor *obs = d2r_env_reset(e, 0);
  cr_assert_not_null(obs);
  cr_expect_eq(d2r_dim(obs, 0), 10);
  double three[3] = {0, 0, 0}, nan2[2] = {0.1, NAN}, inf2[2] = {INFINITY,
                                                                0};
  d2r_tensor *wrong = d2r_vector(3, three);
  cr_expect_null(d2r_env_step(e, wrong, NULL));
  expect_msg("must have 2 elements, got shape [3]");
  d2r_tensor *bad = d2r_vector(2, nan2);
  cr_expect_null(d2r_env_step(e, bad, NULL));
  expect_msg("action element 1 is nan");
  d2r_tensor *inf = d2r_vector(2, inf2);
  cr_expect_null(d2r_env_step(e, inf, NULL));
  expect_msg("action element 0 is inf");
  /* A refused action leaves the episode where it was. */
  cr_expect_eq(d2r_env_elapsed(e), 0);
  d2r_tensor *ok = d2r_vector(2, three);
  d2r_step_info info;
  d2r_tensor *next = d2r_env_step(e, ok, &info);
  cr_expect_not_null(next, "%s", d2r_error());
  cr_expect_eq(info.elapsed, 1);
  /* A batch with a NaN names its row. */
  double obs2[20], act2[4] = {0, 0, 0, NAN}, nx[20], r[2], d[2];
  memcpy(obs2, d2r_data(obs), 10 * sizeof(double));
  memcpy(obs2 + 10, d2r_data(obs), 10 * sizeof(double));
  cr_expect_eq(d2r_env_predict_raw(e, 2, obs2, act2, nx, r, d), -1);
  expect_msg("action 1 of row 1 is nan");
  cr_expect_null(d2r_env_step(e, NULL, NULL));
  d2r_release(obs);
  d2r_release(wrong);
  d2r_release(bad);
  d2r_release(inf);
  d2r_release(ok);
  d2r_release(next);
  d2r_env_release(e);
}

Test(env, tensor_batches) {
  d2r_env *e = make("pendulum", 0, NULL);
  double o[6] = {1, 0, 0, 0, 1, 0}, a[2] = {0, 1};
  d2r_tensor *obs = d2r_matrix(2, 3, o), *act = d2r_matrix(2, 1, a);
  d2r_tensor *next, *r, *d;
  cr_assert_eq(d2r_env_predict(e, obs, act, &next, &r, &d), 0, "%s",
               d2r_error());
  cr_expect_eq(d2r_dim(next, 0), 2);
  cr_expect_eq(d2r_dim(next, 1), 3);
  cr_expect_eq(d2r_dim(r, 0), 2);
  /* Upright at rest with no torque: reward 0 and no motion. */
  cr_expect_eq(d2r_data(r)[0], 0.0);
  cr_expect_eq(d2r_data(next)[2], 0.0);
  d2r_tensor *r2, *d2;
  cr_assert_eq(d2r_env_reward(e, obs, act, next, &r2, &d2), 0);
  cr_expect_eq(d2r_data(r2)[1], d2r_data(r)[1]);
  d2r_tensor *wrong = d2r_matrix(3, 1, (double[]){0, 0, 0});
  d2r_tensor *n2, *r3;
  cr_expect_eq(d2r_env_predict(e, obs, wrong, &n2, &r3, NULL), -1);
  expect_msg("actions must be [2, 1], got [3, 1]");
  cr_expect_null(n2);
  d2r_release(obs);
  d2r_release(act);
  d2r_release(next);
  d2r_release(r);
  d2r_release(d);
  d2r_release(r2);
  d2r_release(d2);
  d2r_release(wrong);
  d2r_env_release(e);
}

/* ---- environments written elsewhere ------------------------------------- */

/* A 1-d walk x' = x + a whose observation turns NaN past x = 3. */
typedef struct walk {
  double x;
  int freed;
} walk;

static int walk_reset(void *impl, uint64_t seed, double *obs) {
  walk *w = impl;
  w->x = (double)(seed % 3);
  obs[0] = w->x;
  return 0;
}

static int walk_step(void *impl, const double *a, double *obs, double *r,
                     bool *term) {
  walk *w = impl;
  w->x += a[0];
  obs[0] = w->x > 3 ? NAN : w->x;
  *r = -fabs(w->x);
  *term = false;
  return 0;
}

static void walk_free(void *impl) { ((walk *)impl)->freed = 1; }

static const d2r_env_ops walk_ops = {"walk", walk_reset, walk_step, NULL,
                                     NULL, walk_free};

Test(env, custom_environment) {
  static walk w;
  double lo = -10, hi = 10, alo = -1, ahi = 1;
  d2r_env_spec spec = {"walk", 1, 1, &lo, &hi, &alo, &ahi, 100};
  d2r_env *e = d2r_env_new(&walk_ops, &w, &spec);
  cr_assert_not_null(e, "%s", d2r_error());
  cr_expect_str_eq(d2r_env_kind(e), "walk");
  double o, a = 5.0;  /* clipped to 1 */
  d2r_step_info info;
  cr_assert_eq(d2r_env_reset_raw(e, 4, &o), 0);
  cr_expect_eq(o, 1.0);
  cr_assert_eq(d2r_env_step_raw(e, &a, &o, &info), 0);
  cr_expect_eq(o, 2.0);
  cr_assert_eq(d2r_env_step_raw(e, &a, &o, &info), 0);
  cr_expect_eq(d2r_env_step_raw(e, &a, &o, &info), -1);
  expect_msg("non-finite observation");
  d2r_dynamics dyn;
  cr_expect_eq(d2r_env_dynamics(e, &dyn), -1);
  expect_msg("no predict");
  cr_expect_eq(d2r_env_constants(e, NULL, NULL, NULL), -1);
  d2r_env_release(e);
  cr_expect_eq(w.freed, 1);

  /* A bad spec frees the impl too and names the field. */
  static walk w2;
  double blo = 1, bhi = 0;
  d2r_env_spec bad = {"walk", 1, 1, &lo, &hi, &blo, &bhi, 100};
  cr_expect_null(d2r_env_new(&walk_ops, &w2, &bad));
  expect_msg("action bound 0 is [1, 0]");
  cr_expect_eq(w2.freed, 1);
}

/* ---- agents ------------------------------------------------------------- */

static int push_right(void *ctx, const double *obs, double *action) {
  (void)obs;
  (*(int *)ctx)++;
  action[0] = 1.0;
  return 0;
}

static int count_step(void *ctx, const double *obs, const double *a,
                      const double *next, const d2r_step_info *info) {
  (void)obs;
  (void)next;
  (void)info;
  cr_expect_eq(a[0], 1.0);
  (*(int *)ctx)++;
  return 0;
}

Test(env, agents_run_episodes) {
  d2r_env *e = make("cartpole", 0, NULL);
  int acts = 0, steps = 0;
  d2r_agent agent = {NULL, push_right, &acts};
  d2r_episode_stats st;
  cr_assert_eq(d2r_env_run(e, &agent, 3, 0, count_step, &steps, &st), 0,
               "%s", d2r_error());
  cr_expect(st.terminated);
  cr_expect_eq(st.steps, acts);
  cr_expect_eq(steps, acts);
  cr_expect_eq(st.ret, (double)acts);  /* 1 per step */
  d2r_env_release(e);
}
