/*
 * Tests of MuJoCo environments (env.h): a point mass under gravity
 * against semi-implicit Euler by hand, the bundled planar runner's
 * interface, predict against step, rewards, and the refusal of missing
 * or malformed model files.  Skipped in a build without MuJoCo.
 */
#define _POSIX_C_SOURCE 200809L

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "d2r/env.h"

#define RUNNER D2R_DATA_DIR "/mujoco/runner.xml"

static void need_mujoco(void) {
  if (!d2r_mujoco_available())
    cr_skip_test("this build has no MuJoCo");
}

/* Writes text to a new temporary file; returns its path (static). */
static const char *temp_model(const char *text) {
  static char path[64];
  strcpy(path, "/tmp/d2r_test_mujoco_XXXXXX");
  int fd = mkstemp(path);
  cr_assert_geq(fd, 0);
  FILE *f = fdopen(fd, "w");
  fputs(text, f);
  fclose(f);
  return path;
}

/* A 2 kg point mass on a vertical slide, pushed by a motor of gear 1. */
static const char *drop_xml =
  "<mujoco><option timestep=\"0.01\" gravity=\"0 0 -9.81\"/>"
  "<worldbody><body name=\"b\" pos=\"0 0 1\">"
  "<joint name=\"z\" type=\"slide\" axis=\"0 0 1\"/>"
  "<inertial pos=\"0 0 0\" mass=\"2\" diaginertia=\"1 1 1\"/>"
  "</body></worldbody>"
  "<actuator><motor joint=\"z\" gear=\"1\" ctrllimited=\"true\" "
  "ctrlrange=\"-5 5\"/></actuator></mujoco>";

Test(env_mujoco, point_mass_follows_semi_implicit_euler) {
  need_mujoco();
  const char *path = temp_model(drop_xml);
  d2r_mujoco_config c = d2r_mujoco_defaults(path);
  c.frame_skip = 1;
  c.exclude_qpos = 0;
  d2r_env *e = d2r_env_mujoco(&c);
  unlink(path);
  cr_assert_not_null(e, "%s", d2r_error());
  cr_expect_eq(d2r_env_obs_dim(e), 2);
  cr_expect_eq(d2r_env_act_high(e)[0], 5.0);
  /* MuJoCo's default integrator updates the velocity first, then the
   * position with the new velocity: v' = v + h (u / m - g),
   * z' = z + h v'. */
  double o[2] = {0.3, -0.2}, u = 4.0, n[2], r, d;
  cr_assert_eq(d2r_env_predict_raw(e, 1, o, &u, n, &r, &d), 0, "%s",
               d2r_error());
  double h = 0.01, v = -0.2 + h * (4.0 / 2 - 9.81);
  cr_expect_float_eq(n[1], v, 1e-12);
  cr_expect_float_eq(n[0], 0.3 + h * v, 1e-12);
  /* The default reward: the velocity after the step minus 0.1 u^2. */
  cr_expect_float_eq(r, v - 0.1 * 16, 1e-12);
  d2r_env_release(e);
}

Test(env_mujoco, runner_interface_and_episodes) {
  need_mujoco();
  d2r_mujoco_config c = d2r_mujoco_defaults(RUNNER);
  c.name = "runner";
  c.max_steps = 30;
  d2r_env *e = d2r_env_mujoco(&c);
  cr_assert_not_null(e, "%s", d2r_error());
  cr_expect_str_eq(d2r_env_name(e), "runner");
  cr_expect_str_eq(d2r_env_kind(e), "mujoco");
  cr_expect_eq(d2r_env_obs_dim(e), 17);
  cr_expect_eq(d2r_env_act_dim(e), 6);
  cr_expect(d2r_env_act_bounded(e));
  double o1[17], o2[17], a[6];
  cr_assert_eq(d2r_env_reset_raw(e, 4, o1), 0);
  cr_assert_eq(d2r_env_reset_raw(e, 4, o2), 0);
  cr_expect(memcmp(o1, o2, sizeof o1) == 0, "seeded starts");
  d2r_step_info info;
  for (int t = 0; t < 30; t++) {
    for (int j = 0; j < 6; j++) a[j] = sin(0.3 * t + j);
    double p[17], pr, pd;
    cr_assert_eq(d2r_env_predict_raw(e, 1, o1, a, p, &pr, &pd), 0, "%s",
                 d2r_error());
    cr_assert_eq(d2r_env_step_raw(e, a, o1, &info), 0, "%s", d2r_error());
    /* The episode's torso x differs from predict's; contacts with a
     * plane do not care, up to rounding. */
    for (int i = 0; i < 17; i++)
      cr_expect_float_eq(p[i], o1[i], 1e-6, "step %d, obs %d", t, i);
    cr_expect_float_eq(pr, info.reward, 1e-6);
  }
  cr_expect(info.truncated && !info.terminated);
  cr_expect_eq(d2r_env_mujoco_warnings(e), 0);
  d2r_env_release(e);
}

static int upright(void *ctx, int64_t n, const double *obs,
                   const double *act, const double *next, double *reward,
                   double *done) {
  (void)obs, (void)act;
  (*(int *)ctx)++;
  for (int64_t i = 0; i < n; i++) {
    reward[i] = -fabs(next[i * 17 + 1]);  /* the torso's pitch */
    done[i] = next[i * 17] < -0.5;        /* the torso fell */
  }
  return 0;
}

Test(env_mujoco, caller_reward) {
  need_mujoco();
  int calls = 0;
  d2r_mujoco_config c = d2r_mujoco_defaults(RUNNER);
  c.reward = upright;
  c.reward_ctx = &calls;
  d2r_env *e = d2r_env_mujoco(&c);
  cr_assert_not_null(e, "%s", d2r_error());
  cr_expect_eq(d2r_env_mujoco_reward_ctx(e), &calls);
  double o[17], a[6] = {0};
  d2r_step_info info;
  cr_assert_eq(d2r_env_reset_raw(e, 0, o), 0);
  cr_assert_eq(d2r_env_step_raw(e, a, o, &info), 0);
  cr_expect_eq(info.reward, -fabs(o[1]));
  cr_expect_eq(calls, 1);
  d2r_env_release(e);
}

Test(env_mujoco, bad_models_are_refused) {
  need_mujoco();
  d2r_mujoco_config c = d2r_mujoco_defaults("/nonexistent/model.xml");
  cr_expect_null(d2r_env_mujoco(&c));
  cr_expect(strstr(d2r_error(), "/nonexistent/model.xml: cannot load"),
            "%s", d2r_error());
  const char *path = temp_model("<mujoco><worldbody><body>"
                                "</mujoco>");
  c = d2r_mujoco_defaults(path);
  cr_expect_null(d2r_env_mujoco(&c));
  cr_expect(strstr(d2r_error(), "cannot load the model"), "%s",
            d2r_error());
  unlink(path);
  path = temp_model("<mujoco><worldbody><body><joint type=\"slide\"/>"
                    "<geom size=\"0.1\"/></body></worldbody></mujoco>");
  c = d2r_mujoco_defaults(path);
  cr_expect_null(d2r_env_mujoco(&c));
  cr_expect(strstr(d2r_error(), "no actuators"), "%s", d2r_error());
  unlink(path);
  c = d2r_mujoco_defaults(RUNNER);
  c.frame_skip = 0;
  cr_expect_null(d2r_env_mujoco(&c));
  cr_expect(strstr(d2r_error(), "frame_skip"));
}
