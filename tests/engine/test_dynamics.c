/*
 * Tests of learned dynamics models (dynamics.h): normalisation (with a
 * constant dimension), the delta target and its de-normalisation by
 * hand, learning a linear system (one-step and open-loop error), elite
 * selection, the reward matrices of METHOD.md, gradients through U for
 * the bilevel solvers, and planning through a learned model.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "d2r/closed_form.h"
#include "d2r/dynamics.h"
#include "d2r/planner.h"

/* ---- a linear world ----------------------------------------------------- */

/*
 * s = (x, c) with c = 0.5 constant, a in [-1, 1]: x' = 0.9 x + 0.5 a +
 * noise * eps.  Episodes of 20 steps from x = 0; actions uniform.
 */
static d2r_dataset *linear_data(int episodes, double noise, uint64_t seed) {
  int64_t n = episodes * 20;
  d2r_tensor *o = d2r_zeros(2, (int64_t[]){n, 2});
  d2r_tensor *a = d2r_zeros(2, (int64_t[]){n, 1});
  d2r_tensor *r = d2r_zeros(1, &n), *no = d2r_zeros(2, (int64_t[]){n, 2});
  d2r_tensor *term = d2r_zeros(1, &n), *tr = d2r_zeros(1, &n);
  d2r_tensor *ep = d2r_zeros(1, &n);
  d2r_rng *rng = d2r_rng_new(seed);
  for (int e = 0; e < episodes; e++) {
    double x = 0;
    for (int t = 0; t < 20; t++) {
      int64_t i = e * 20 + t;
      double u = -1 + 2 * d2r_rng_uniform(rng);
      double x2 = 0.9 * x + 0.5 * u + noise * d2r_rng_normal(rng);
      d2r_data(o)[2 * i] = x;
      d2r_data(o)[2 * i + 1] = 0.5;
      d2r_data(a)[i] = u;
      d2r_data(no)[2 * i] = x2;
      d2r_data(no)[2 * i + 1] = 0.5;
      d2r_data(r)[i] = -fabs(x2);
      d2r_data(tr)[i] = t == 19;
      d2r_data(ep)[i] = e;
      x = x2;
    }
  }
  d2r_dataset *d = d2r_dataset_new("linear", "uniform", seed, o, a, r, no,
                                   term, tr, ep);
  cr_assert_not_null(d, "%s", d2r_error());
  d2r_tensor *all[] = {o, a, r, no, term, tr, ep};
  for (int i = 0; i < 7; i++) d2r_release(all[i]);
  d2r_rng_free(rng);
  return d;
}

static d2r_dyn *small_model(int ensemble, int elites, uint64_t seed) {
  static const int64_t hidden[2] = {32, 32};
  d2r_dyn_config c = d2r_dyn_config_default(2, 1);
  c.hidden = hidden;
  c.ensemble = ensemble;
  c.elites = elites;
  d2r_rng *rng = d2r_rng_new(seed);
  d2r_dyn *m = d2r_dyn_new(&c, rng);
  d2r_rng_free(rng);
  cr_assert_not_null(m, "%s", d2r_error());
  return m;
}

/* ---- normalisation ------------------------------------------------------ */

Test(env_dynamics, normalisation_with_a_constant_dimension) {
  d2r_dataset *d = linear_data(5, 0.0, 1);
  d2r_dyn *m = small_model(1, 1, 2);
  cr_expect(!d2r_dyn_fitted(m));
  d2r_tensor *x, *y;
  cr_expect_eq(d2r_dyn_data(m, d, &x, &y), -1);
  cr_expect(strstr(d2r_error(), "not fitted"));
  cr_assert_eq(d2r_dyn_fit(m, d), 0, "%s", d2r_error());
  cr_assert_eq(d2r_dyn_data(m, d, &x, &y), 0, "%s", d2r_error());
  /* Columns of x: x (mean 0, std 1), c (constant: 0), a (mean 0, std 1). */
  for (int j = 0; j < 3; j++) {
    double s = 0, ss = 0;
    for (int64_t i = 0; i < d->size; i++) {
      double v = d2r_data(x)[3 * i + j];
      s += v;
      ss += v * v;
    }
    cr_expect_float_eq(s / d->size, 0.0, 1e-12, "column %d mean", j);
    cr_expect_float_eq(ss / d->size, j == 1 ? 0.0 : 1.0, 1e-12,
                       "column %d second moment", j);
  }
  for (int64_t i = 0; i < d->size; i++)
    cr_expect_eq(d2r_data(y)[2 * i + 1], 0.0, "constant delta maps to 0");
  d2r_tensor *im, *is, *om, *os;
  cr_assert_eq(d2r_dyn_normalizers(m, &im, &is, &om, &os), 0);
  cr_expect_eq(d2r_data(is)[1], 1e-6, "the floor stands in for std 0");
  /* Training and evaluation stay finite. */
  d2r_dyn_train_config tc = d2r_dyn_train_default(D2R_DYN_NLL);
  tc.steps = 50;
  d2r_dyn_train_report rep;
  cr_assert_eq(d2r_dyn_train(m, d, NULL, &tc, &rep), 0, "%s", d2r_error());
  cr_expect(isfinite(rep.loss));
  cr_expect_eq(rep.skipped, 0);
  d2r_dyn_metrics mt;
  cr_assert_eq(d2r_dyn_evaluate(m, d, &mt), 0);
  cr_expect(isfinite(mt.rmse) && isfinite(mt.nll) && isfinite(mt.rmse_raw));
  d2r_tensor *all[] = {x, y, im, is, om, os};
  for (int i = 0; i < 6; i++) d2r_release(all[i]);
  d2r_dyn_free(m);
  d2r_dataset_free(d);
}

Test(env_dynamics, delta_target_by_hand) {
  d2r_dataset *d = linear_data(5, 0.0, 1);
  d2r_dyn *m = small_model(1, 1, 2);
  cr_assert_eq(d2r_dyn_fit(m, d), 0);
  /* Zero the output layer: the normalised mean is 0, so the prediction
   * is s + mean(s' - s) over the training rows. */
  d2r_policy *p = d2r_dyn_member(m, 0);
  int np = d2r_policy_nparams(p);
  d2r_fill_(d2r_policy_params(p)[np - 2], 0.0);
  d2r_fill_(d2r_policy_params(p)[np - 1], 0.0);
  double mean_dx = 0;
  for (int64_t i = 0; i < d->size; i++)
    mean_dx += d2r_data(d->next_obs)[2 * i] - d2r_data(d->obs)[2 * i];
  mean_dx /= d->size;
  double obs[4] = {0.3, 0.5, -1.0, 0.5}, act[2] = {1, -1}, next[4];
  cr_assert_eq(d2r_dyn_predict(m, 2, obs, act, D2R_DYN_MEAN, NULL, next),
               0, "%s", d2r_error());
  cr_expect_float_eq(next[0], 0.3 + mean_dx, 1e-12);
  cr_expect_float_eq(next[1], 0.5, 1e-12);
  cr_expect_float_eq(next[2], -1.0 + mean_dx, 1e-12);
  /* With log-std 0 (unit std in normalised units) a sample spreads by
   * the target's std. */
  d2r_rng *rng = d2r_rng_new(3);
  double spread = 0;
  for (int k = 0; k < 200; k++) {
    cr_assert_eq(d2r_dyn_predict(m, 1, obs, act, D2R_DYN_SAMPLE, rng,
                                 next), 0);
    spread += (next[0] - 0.3 - mean_dx) * (next[0] - 0.3 - mean_dx);
  }
  d2r_tensor *os;
  d2r_dyn_normalizers(m, NULL, NULL, NULL, &os);
  cr_expect_float_eq(sqrt(spread / 200), d2r_data(os)[0],
                     0.15 * d2r_data(os)[0]);
  d2r_release(os);
  d2r_rng_free(rng);
  d2r_dyn_free(m);
  d2r_dataset_free(d);
}

/* ---- learning ----------------------------------------------------------- */

Test(env_dynamics, learns_a_linear_system) {
  d2r_dataset *train = linear_data(40, 0.05, 1);
  d2r_dataset *test = linear_data(10, 0.05, 2);
  d2r_dyn *m = small_model(1, 1, 3);
  d2r_dyn_train_config tc = d2r_dyn_train_default(D2R_DYN_NLL);
  tc.lr = 3e-3;
  tc.steps = 300;
  cr_assert_eq(d2r_dyn_train(m, train, NULL, &tc, NULL), 0, "%s",
               d2r_error());
  d2r_dyn_metrics mt;
  cr_assert_eq(d2r_dyn_evaluate(m, test, &mt), 0);
  /* The noise on x' is 0.05, so the best raw RMSE over the two
   * dimensions (one of them constant) is 0.05 / sqrt(2) = 0.035.
   * Measured: raw 0.0343, normalised rmse 0.115, nll -1.66. */
  cr_expect_lt(mt.rmse_raw, 0.045, "raw rmse %g", mt.rmse_raw);
  cr_expect_lt(mt.nll, -1.0, "nll %g", mt.nll);
  int hs[4] = {1, 5, 10, 25};
  double err[4];
  int64_t cnt[4];
  cr_assert_eq(d2r_dyn_rollout_error(m, test, 5, 4, hs, err, cnt), 0,
               "%s", d2r_error());
  /* Starts at steps 0, 5, 10, 15 of 10 episodes of 20 steps. */
  cr_expect_eq(cnt[0], 40);
  cr_expect_eq(cnt[1], 40);
  cr_expect_eq(cnt[2], 30);
  cr_expect_eq(cnt[3], 0);
  cr_expect(isnan(err[3]));
  /* Measured: 0.051, 0.120, 0.144 at horizons 1, 5, 10 (the logged
   * noise accumulates in the truth, not in the mean rollout). */
  cr_expect_lt(err[0], err[1], "error grows with the horizon");
  cr_expect_lt(err[1], err[2], "error grows with the horizon");
  cr_expect_lt(err[2], 0.25, "10-step error %g", err[2]);
  d2r_dyn_free(m);
  d2r_dataset_free(train);
  d2r_dataset_free(test);
}

Test(env_dynamics, elites_have_the_lowest_validation_mse) {
  d2r_dataset *train = linear_data(10, 0.05, 1);
  d2r_dataset *val = linear_data(5, 0.05, 4);
  d2r_dyn *m = small_model(4, 2, 5);
  d2r_dyn_train_config tc = d2r_dyn_train_default(D2R_DYN_MSE);
  tc.steps = 30;
  tc.bootstrap = true;
  d2r_dyn_train_report rep;
  cr_assert_eq(d2r_dyn_train(m, train, val, &tc, &rep), 0, "%s",
               d2r_error());
  d2r_tensor *x, *y;
  cr_assert_eq(d2r_dyn_data(m, val, &x, &y), 0);
  double mse[4];
  for (int i = 0; i < 4; i++) {
    d2r_pdist d = D2R_PDIST_INIT;
    cr_assert_eq(d2r_policy_dist(d2r_dyn_member(m, i), x, &d), 0);
    d2r_tensor *e = d2r_mse(d.mean, y);
    mse[i] = d2r_item(e);
    d2r_release(e);
    d2r_pdist_clear(&d);
  }
  int n;
  const int *el = d2r_dyn_elites(m, &n);
  cr_assert_eq(n, 2);
  for (int i = 0; i < 4; i++) {
    bool elite = i == el[0] || i == el[1];
    for (int j = 0; j < 4; j++) {
      bool other = j == el[0] || j == el[1];
      if (elite && !other)
        cr_expect_leq(mse[i], mse[j], "elite %d beats %d", i, j);
    }
  }
  cr_expect_float_eq(rep.val_mse, (mse[el[0]] + mse[el[1]]) / 2, 1e-12);
  cr_expect_eq(d2r_dyn_set_elites(m, 2, (int[]){1, 1}), -1);
  cr_expect(strstr(d2r_error(), "listed twice"));
  d2r_release(x);
  d2r_release(y);
  d2r_dyn_free(m);
  d2r_dataset_free(train);
  d2r_dataset_free(val);
}

/* ---- rewards and PG ----------------------------------------------------- */

Test(env_dynamics, reward_matrices) {
  d2r_dataset *d = linear_data(10, 0.05, 1);
  d2r_dyn *m = small_model(1, 1, 2);
  cr_assert_eq(d2r_dyn_fit(m, d), 0);
  d2r_tensor *x, *y;
  cr_assert_eq(d2r_dyn_data(m, d, &x, &y), 0);
  d2r_tensor *i = d2r_dyn_reward_matrix(m, d, "identity", 1.0);
  cr_expect_eq(d2r_item(i), 1.0);
  d2r_tensor *iso = d2r_dyn_reward_matrix(m, d, "isotropic", 2.0);
  d2r_tensor *cov = d2r_covariance(y);
  double tr = d2r_data(cov)[0] + d2r_data(cov)[3];
  cr_expect_float_eq(d2r_item(iso), 2.0 * 2 / (2 * tr), 1e-12);
  /* Full: U Sigma = (lambda / 2) I on the varying block; the constant
   * dimension (variance 0) gets the isotropic u, under "full" and under
   * "diagonal" alike. */
  d2r_tensor *full = d2r_dyn_reward_matrix(m, d, "full", 2.0);
  cr_assert_not_null(full, "%s", d2r_error());
  cr_expect_float_eq(d2r_data(full)[0] * d2r_data(cov)[0], 1.0, 1e-6);
  cr_expect_float_eq(d2r_data(full)[3], d2r_item(iso), 1e-9);
  d2r_tensor *diag = d2r_dyn_reward_matrix(m, d, "diagonal", 2.0);
  cr_assert_not_null(diag, "%s", d2r_error());
  cr_expect_float_eq(d2r_data(diag)[0] * d2r_data(cov)[0], 1.0, 1e-12);
  cr_expect_float_eq(d2r_data(diag)[1], d2r_item(iso), 1e-12);
  d2r_release(diag);
  cr_expect_null(d2r_dyn_reward_matrix(m, d, "spherical", 1.0));
  cr_expect(strstr(d2r_error(), "unknown reward matrix 'spherical'"));
  d2r_tensor *all[] = {x, y, i, iso, cov, full};
  for (int k = 0; k < 6; k++) d2r_release(all[k]);
  d2r_dyn_free(m);
  d2r_dataset_free(d);
}

Test(env_dynamics, pg_loss_differentiates_in_u) {
  d2r_dataset *d = linear_data(3, 0.05, 1);
  d2r_dyn *m = small_model(1, 1, 2);
  cr_assert_eq(d2r_dyn_fit(m, d), 0);
  d2r_tensor *x, *y;
  cr_assert_eq(d2r_dyn_data(m, d, &x, &y), 0);
  d2r_tensor *u = d2r_scalar(0.5);
  d2r_set_requires_grad(u, true);
  d2r_dyn_loss_config lc = d2r_dyn_loss_default(D2R_DYN_PG);
  lc.U = u;
  lc.pg.reward_grad = true;
  d2r_rng *rng = d2r_rng_new(1);
  d2r_pg_stats st;
  d2r_tensor *loss = d2r_dyn_loss(m, 0, x, y, &lc, rng, &st);
  cr_assert_not_null(loss, "%s", d2r_error());
  cr_expect_lt(st.reward_mean, 0.0);
  d2r_tensor *g;
  cr_assert_eq(d2r_autograd(1, &loss, NULL, 1, &u, false, false, &g), 0,
               "%s", d2r_error());
  cr_expect(isfinite(d2r_item(g)) && d2r_item(g) != 0.0);
  lc.U = NULL;
  cr_expect_null(d2r_dyn_loss(m, 0, x, y, &lc, rng, NULL));
  cr_expect(strstr(d2r_error(), "needs a reward matrix"));
  d2r_release(g);
  d2r_release(loss);
  d2r_release(u);
  d2r_release(x);
  d2r_release(y);
  d2r_rng_free(rng);
  d2r_dyn_free(m);
  d2r_dataset_free(d);
}

/* ---- planning through a learned model ----------------------------------- */

/* The linear world as an environment with its reward function, so a
 * learned model can plan with the known reward -|x'|. */
typedef struct lin {
  double x;
} lin;

static int lin_reset(void *impl, uint64_t seed, double *obs) {
  ((lin *)impl)->x = 1.5 + 0.1 * (double)(seed % 5);
  obs[0] = ((lin *)impl)->x;
  obs[1] = 0.5;
  return 0;
}

static int lin_step(void *impl, const double *a, double *obs, double *r,
                    bool *term) {
  lin *w = impl;
  w->x = 0.9 * w->x + 0.5 * a[0];
  obs[0] = w->x;
  obs[1] = 0.5;
  *r = -fabs(w->x);
  *term = false;
  return 0;
}

static int lin_reward(void *impl, int64_t n, const double *obs,
                      const double *act, const double *next, double *r,
                      double *done) {
  (void)impl, (void)obs, (void)act;
  for (int64_t i = 0; i < n; i++) {
    r[i] = -fabs(next[2 * i]);
    done[i] = 0;
  }
  return 0;
}

static const d2r_env_ops lin_ops = {"linear", lin_reset, lin_step, NULL,
                                    lin_reward, NULL};

Test(env_dynamics, planning_through_a_learned_model) {
  static lin world;
  double lo[2] = {-10, 0}, hi[2] = {10, 1}, alo = -1, ahi = 1;
  d2r_env_spec spec = {"linear", 2, 1, lo, hi, &alo, &ahi, 20};
  d2r_env *e = d2r_env_new(&lin_ops, &world, &spec);
  d2r_dataset *train = linear_data(40, 0.0, 1);
  d2r_dyn *m = small_model(1, 1, 3);
  d2r_dyn_train_config tc = d2r_dyn_train_default(D2R_DYN_MSE);
  tc.lr = 3e-3;
  tc.steps = 300;
  cr_assert_eq(d2r_dyn_train(m, train, NULL, &tc, NULL), 0);
  d2r_dynamics model;
  cr_assert_eq(d2r_dyn_dynamics(m, e, D2R_DYN_MEAN, 0, &model), 0, "%s",
               d2r_error());
  d2r_planner_config pc = d2r_planner_defaults(D2R_PLANNER_CEM);
  pc.horizon = 5;
  pc.population = 50;
  pc.iterations = 3;
  pc.elites = 5;
  d2r_planner *p = d2r_planner_for_env(&pc, e);
  double learned, random;
  cr_assert_eq(d2r_planner_evaluate(p, e, &model, 3, 1, NULL, &learned), 0,
               "%s", d2r_error());
  cr_assert_eq(d2r_random_evaluate(e, 3, 1, NULL, &random), 0);
  /* From x near 1.6, pushing with a = -1 reaches 0 in three steps and
   * then holds it.  Measured per episode of 20 steps: planning through
   * the learned model -2.06, random actions -16.3. */
  cr_expect_gt(learned, -3.0, "learned-model planning %g", learned);
  cr_expect_gt(learned - random, 10.0, "learned %g random %g", learned,
               random);
  d2r_dynamics bad;
  d2r_env *other = d2r_env_make("pendulum", 0, NULL);
  cr_expect_eq(d2r_dyn_dynamics(m, other, D2R_DYN_MEAN, 0, &bad), -1);
  cr_expect(strstr(d2r_error(), "does not match"));
  d2r_env_release(other);
  d2r_planner_free(p);
  d2r_dyn_free(m);
  d2r_dataset_free(train);
  d2r_env_release(e);
}
