/*
 * Tests of d2r/optim.h: SGD and Adam steps against the update rules
 * worked by hand, convergence on a quadratic, optimiser state, gradient
 * clipping, the plateau schedule and early stopping.
 */
#include <criterion/criterion.h>
#include <float.h>
#include <math.h>
#include <string.h>

#include "d2r/nn.h"
#include "d2r/optim.h"

/* ---- helpers ------------------------------------------------------------- */

/* A leaf parameter vector holding the n values v. */
static d2r_tensor *param(int64_t n, const double *v) {
  d2r_tensor *p = d2r_vector(n, v);
  cr_assert_not_null(p, "%s", d2r_error());
  cr_assert_eq(d2r_set_requires_grad(p, true), 0, "%s", d2r_error());
  return p;
}

/* Makes the gradient of p equal to g, through backward of sum(g * p). */
static void set_grad(d2r_tensor *p, const double *g) {
  d2r_zero_grad(p);
  d2r_tensor *c = d2r_from_data(d2r_ndim(p), d2r_shape(p), g);
  d2r_tensor *cp = d2r_mul(c, p);
  d2r_tensor *l = d2r_sum_all(cp);
  cr_assert_eq(d2r_backward(l), 0, "%s", d2r_error());
  d2r_release(l);
  d2r_release(cp);
  d2r_release(c);
}

static void expect_data(d2r_tensor *t, const double *want, double tol) {
  d2r_tensor *c = d2r_contiguous(t);
  const double *v = d2r_data(c);
  for (int64_t i = 0; i < d2r_numel(c); i++)
    cr_expect_float_eq(v[i], want[i], tol, "element %lld: %.17g vs %.17g",
                       (long long)i, v[i], want[i]);
  d2r_release(c);
}

static void expect_grad(d2r_tensor *p, const double *want, double tol) {
  d2r_tensor *g = d2r_grad(p);
  cr_assert_not_null(g, "no gradient");
  expect_data(g, want, tol);
  d2r_release(g);
}

/* ---- SGD ----------------------------------------------------------------- */

/* p0 = 1, lr 0.1; gradients 0.5 then -1. */
static void sgd_two_steps(d2r_sgd_config c, double want1, double want2) {
  d2r_tensor *p = param(1, (double[]){1.0});
  d2r_optim *o = d2r_sgd_new(1, &p, &c);
  cr_assert_not_null(o, "%s", d2r_error());
  set_grad(p, (double[]){0.5});
  cr_assert_eq(d2r_optim_step(o), 0, "%s", d2r_error());
  cr_expect_float_eq(d2r_data(p)[0], want1, 1e-15, "%.17g", d2r_data(p)[0]);
  set_grad(p, (double[]){-1.0});
  cr_assert_eq(d2r_optim_step(o), 0, "%s", d2r_error());
  cr_expect_float_eq(d2r_data(p)[0], want2, 1e-15, "%.17g", d2r_data(p)[0]);
  cr_expect_eq(d2r_optim_param_steps(o, 0), 2);
  d2r_optim_free(o);
  d2r_release(p);
}

Test(optim, sgd_plain) {
  /* p = 1 - 0.1 * 0.5 = 0.95; p = 0.95 - 0.1 * (-1) = 1.05 */
  sgd_two_steps(d2r_sgd_defaults(0.1), 0.95, 1.05);
}

Test(optim, sgd_momentum_by_hand) {
  d2r_sgd_config c = d2r_sgd_defaults(0.1);
  c.momentum = 0.9;
  /* step 1: buf = g = 0.5; p = 1 - 0.1 * 0.5 = 0.95
   * step 2: buf = 0.9 * 0.5 + (-1) = -0.55; p = 0.95 + 0.055 = 1.005 */
  sgd_two_steps(c, 0.95, 1.005);
}

Test(optim, sgd_nesterov_by_hand) {
  d2r_sgd_config c = d2r_sgd_defaults(0.1);
  c.momentum = 0.9;
  c.nesterov = true;
  /* step 1: buf = 0.5; d = 0.5 + 0.9 * 0.5 = 0.95; p = 1 - 0.095 = 0.905
   * step 2: buf = -0.55; d = -1 + 0.9 * (-0.55) = -1.495;
   *         p = 0.905 + 0.1495 = 1.0545 */
  sgd_two_steps(c, 0.905, 1.0545);
}

Test(optim, sgd_dampening_and_weight_decay) {
  d2r_sgd_config c = d2r_sgd_defaults(0.1);
  c.momentum = 0.9;
  c.dampening = 0.5;
  /* step 1: buf = g = 0.5 (no dampening at first); p = 0.95
   * step 2: buf = 0.9 * 0.5 + 0.5 * (-1) = -0.05; p = 0.955 */
  sgd_two_steps(c, 0.95, 0.955);
  c = d2r_sgd_defaults(0.1);
  c.weight_decay = 0.1;
  /* step 1: d = 0.5 + 0.1 * 1 = 0.6; p = 0.94
   * step 2: d = -1 + 0.094 = -0.906; p = 0.94 + 0.0906 = 1.0306 */
  sgd_two_steps(c, 0.94, 1.0306);
}

Test(optim, sgd_bad_configs) {
  d2r_tensor *p = param(1, (double[]){1.0});
  d2r_sgd_config c = d2r_sgd_defaults(0.1);
  c.nesterov = true;
  cr_expect_null(d2r_sgd_new(1, &p, &c));
  cr_expect(strstr(d2r_error(), "nesterov") != NULL, "%s", d2r_error());
  c = d2r_sgd_defaults(-1.0);
  cr_expect_null(d2r_sgd_new(1, &p, &c));
  c = d2r_sgd_defaults(NAN);
  cr_expect_null(d2r_sgd_new(1, &p, &c));
  d2r_tensor *q = d2r_muls(p, 2.0);
  c = d2r_sgd_defaults(0.1);
  cr_expect_null(d2r_sgd_new(1, &q, &c));
  cr_expect(strstr(d2r_error(), "leaf") != NULL, "%s", d2r_error());
  d2r_tensor *nul = NULL;
  cr_expect_null(d2r_sgd_new(1, &nul, &c));
  d2r_release(q);
  d2r_release(p);
}

/* ---- Adam ---------------------------------------------------------------- */

/*
 * Two scalars p = (1, -2), lr 0.1, betas 0.9 / 0.999, eps 1e-8.
 * Step 1, gradients (0.5, 3):
 *   m = 0 + 0.1 (g - 0) = (0.05, 0.3);  v = 0.001 g^2 = (0.00025, 0.009)
 *   step = 0.1 / (1 - 0.9) = 1
 *   denom = sqrt(v) / sqrt(1 - 0.999) + 1e-8 = (0.5 + 1e-8, 3 + 1e-8)
 *   p = (1 - 0.05 / 0.50000001, -2 - 0.3 / 3.00000001)
 *     = (0.900000002, -2.0999999996666667)
 * Step 2, gradients (-1, 2):
 *   m = m + 0.1 (g - m) = (-0.055, 0.47)
 *   v = 0.999 v + 0.001 g^2 = (0.00124975, 0.012991)
 *   step = 0.1 / (1 - 0.81) = 0.5263157894736844
 *   denom = sqrt(v) / sqrt(1 - 0.998001) + 1e-8
 *         = (0.7906880608752536, 2.549264487194831)
 *   p = p - step m / denom = (0.9366103542405654, -2.197035212095657)
 */
Test(optim, adam_two_steps_by_hand) {
  d2r_tensor *p = param(2, (double[]){1.0, -2.0});
  d2r_adam_config c = d2r_adam_defaults();
  cr_expect_eq(c.lr, 1e-3);
  c.lr = 0.1;
  d2r_optim *o = d2r_adam_new(1, &p, &c);
  cr_assert_not_null(o, "%s", d2r_error());
  cr_expect_str_eq(d2r_optim_name(o), "adam");
  set_grad(p, (double[]){0.5, 3.0});
  cr_assert_eq(d2r_optim_step(o), 0, "%s", d2r_error());
  expect_data(p, (double[]){0.900000002, -2.0999999996666667}, 1e-15);
  expect_data(d2r_optim_buffer(o, 0, 0), (double[]){0.05, 0.3}, 1e-16);
  expect_data(d2r_optim_buffer(o, 0, 1), (double[]){0.00025, 0.009},
              1e-16);
  set_grad(p, (double[]){-1.0, 2.0});
  cr_assert_eq(d2r_optim_step(o), 0, "%s", d2r_error());
  expect_data(p, (double[]){0.9366103542405654, -2.197035212095657},
              1e-15);
  cr_expect_eq(d2r_optim_param_steps(o, 0), 2);
  d2r_optim_free(o);
  d2r_release(p);
}

/* p = 1, gradient 0.5, lr 0.1, weight decay 0.1.
 *   Adam (L2): g = 0.5 + 0.1 * 1 = 0.6; m = 0.06; v = 0.00036;
 *     p = 1 - 0.06 / (0.6 + 1e-8) = 0.9000000016666667
 *   AdamW: p = 1 * (1 - 0.1 * 0.1) = 0.99, then the plain step:
 *     p = 0.99 - 0.05 / (0.5 + 1e-8) = 0.890000002 */
static void adam_decay_step(bool decoupled, double want) {
  d2r_tensor *p = param(1, (double[]){1.0});
  d2r_adam_config c = decoupled ? d2r_adamw_defaults() : d2r_adam_defaults();
  c.lr = 0.1;
  c.weight_decay = 0.1;
  d2r_optim *o = d2r_adam_new(1, &p, &c);
  cr_expect_str_eq(d2r_optim_name(o), decoupled ? "adamw" : "adam");
  set_grad(p, (double[]){0.5});
  cr_assert_eq(d2r_optim_step(o), 0, "%s", d2r_error());
  cr_expect_float_eq(d2r_data(p)[0], want, 1e-15, "%.17g", d2r_data(p)[0]);
  d2r_optim_free(o);
  d2r_release(p);
}

Test(optim, adam_weight_decay_by_hand) {
  adam_decay_step(false, 0.9000000016666667);
  adam_decay_step(true, 0.890000002);
  d2r_adam_config w = d2r_adamw_defaults();
  cr_expect_eq(w.weight_decay, 1e-2);
}

Test(optim, adam_bad_configs) {
  d2r_tensor *p = param(1, (double[]){1.0});
  d2r_adam_config c = d2r_adam_defaults();
  c.beta2 = 1.0;
  cr_expect_null(d2r_adam_new(1, &p, &c));
  cr_expect(strstr(d2r_error(), "betas") != NULL, "%s", d2r_error());
  c = d2r_adam_defaults();
  c.eps = -1;
  cr_expect_null(d2r_adam_new(1, &p, &c));
  d2r_release(p);
}

/* sum(w * (p - c)^2) for w = (1, 10, 0.1), c = (3, -1, 0.5). */
static d2r_tensor *quadratic(d2r_tensor *p) {
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *w = d2r_keep(&s, d2r_vector(3, (double[]){1, 10, 0.1}));
  d2r_tensor *c = d2r_keep(&s, d2r_vector(3, (double[]){3, -1, 0.5}));
  d2r_tensor *e = d2r_keep(&s, d2r_square(d2r_keep(&s, d2r_sub(p, c))));
  d2r_tensor *l = d2r_sum_all(d2r_keep(&s, d2r_mul(w, e)));
  d2r_scope_end(&s);
  return l;
}

Test(optim, adam_minimises_quadratic) {
  d2r_tensor *p = param(3, (double[]){0, 0, 0});
  d2r_adam_config c = d2r_adam_defaults();
  c.lr = 0.05;
  d2r_optim *o = d2r_adam_new(1, &p, &c);
  for (int t = 0; t < 1000; t++) {
    d2r_optim_zero_grad(o);
    d2r_tensor *l = quadratic(p);
    cr_assert_eq(d2r_backward(l), 0, "%s", d2r_error());
    d2r_release(l);
    cr_assert_eq(d2r_optim_step(o), 0, "%s", d2r_error());
  }
  /* the optimum is c; Adam at lr 0.05 settles there within 1e-6 */
  expect_data(p, (double[]){3, -1, 0.5}, 1e-6);
  d2r_optim_free(o);
  d2r_release(p);
}

Test(optim, skips_parameters_without_gradient) {
  d2r_tensor *ps[2] = {param(1, (double[]){1.0}), param(1, (double[]){2.0})};
  d2r_adam_config c = d2r_adam_defaults();
  d2r_optim *o = d2r_adam_new(2, ps, &c);
  set_grad(ps[0], (double[]){1.0});
  cr_assert_eq(d2r_optim_step(o), 0, "%s", d2r_error());
  cr_expect_eq(d2r_data(ps[1])[0], 2.0);
  cr_expect_eq(d2r_optim_param_steps(o, 0), 1);
  cr_expect_eq(d2r_optim_param_steps(o, 1), 0);
  cr_expect_neq(d2r_data(ps[0])[0], 1.0);
  d2r_optim_zero_grad(o);
  cr_expect_null(d2r_grad(ps[0]));
  cr_expect_eq(d2r_optim_param_steps(o, 2), -1);
  cr_expect_null(d2r_optim_buffer(o, 0, 2));
  d2r_optim_free(o);
  d2r_release(ps[0]);
  d2r_release(ps[1]);
}

Test(optim, learning_rate_get_set) {
  d2r_tensor *p = param(1, (double[]){1.0});
  d2r_sgd_config c = d2r_sgd_defaults(0.5);
  d2r_optim *o = d2r_sgd_new(1, &p, &c);
  cr_expect_eq(d2r_optim_lr(o), 0.5);
  cr_expect_eq(d2r_optim_set_lr(o, 0.25), 0);
  cr_expect_eq(d2r_optim_lr(o), 0.25);
  cr_expect_eq(d2r_optim_set_lr(o, -1), -1);
  cr_expect_eq(d2r_optim_set_lr(o, INFINITY), -1);
  cr_expect_eq(d2r_optim_lr(o), 0.25);
  set_grad(p, (double[]){2.0});
  d2r_optim_step(o);
  cr_expect_eq(d2r_data(p)[0], 0.5);
  d2r_optim_free(o);
  d2r_release(p);
}

/* Two Adam optimisers, one restored from the other's state, take the
 * same next step. */
Test(optim, state_round_trip) {
  d2r_tensor *p = param(2, (double[]){1.0, -2.0});
  d2r_tensor *q = param(2, (double[]){1.0, -2.0});
  d2r_adam_config c = d2r_adam_defaults();
  d2r_optim *a = d2r_adam_new(1, &p, &c), *b = d2r_adam_new(1, &q, &c);
  cr_expect_eq(d2r_optim_nbuffers(a), 2);
  for (int t = 0; t < 3; t++) {
    set_grad(p, (double[]){0.5 + t, -1.0});
    d2r_optim_step(a);
  }
  d2r_tensor *s = d2r_optim_state_flat(a);
  cr_assert_not_null(s, "%s", d2r_error());
  cr_expect_eq(d2r_numel(s), 1 + 2 * 2);
  cr_expect_eq(d2r_data(s)[0], 3.0);
  cr_assert_eq(d2r_optim_set_state_flat(b, s), 0, "%s", d2r_error());
  cr_assert_eq(d2r_params_assign_flat(1, &q, p), 0, "%s", d2r_error());
  set_grad(p, (double[]){0.3, 0.7});
  set_grad(q, (double[]){0.3, 0.7});
  d2r_optim_step(a);
  d2r_optim_step(b);
  expect_data(q, d2r_data(p), 0);
  d2r_data(s)[0] = 1.5;
  cr_expect_eq(d2r_optim_set_state_flat(b, s), -1);
  cr_expect_eq(d2r_optim_param_steps(b, 0), 4);
  d2r_tensor *bad = d2r_zeros(1, (int64_t[]){4});
  cr_expect_eq(d2r_optim_set_state_flat(b, bad), -1);
  d2r_release(bad);
  d2r_release(s);
  d2r_optim_free(a);
  d2r_optim_free(b);
  d2r_release(p);
  d2r_release(q);
}

/* ---- clipping ------------------------------------------------------------ */

/* Gradients (3, 4) and (12): norms 5 and 12, total 13. */
static void make_grads(d2r_tensor **ps) {
  ps[0] = param(2, (double[]){0, 0});
  ps[1] = param(1, (double[]){0});
  set_grad(ps[0], (double[]){3, 4});
  set_grad(ps[1], (double[]){12});
}

Test(clip, grad_norm) {
  d2r_tensor *ps[2];
  make_grads(ps);
  cr_expect_float_eq(d2r_grad_norm(2, ps), 13.0, 1e-12);
  /* no clipping when the norm is below max_norm */
  double norm = d2r_clip_grad_norm(2, ps, 20.0);
  cr_expect_float_eq(norm, 13.0, 1e-12);
  expect_grad(ps[0], (double[]){3, 4}, 0);
  norm = d2r_clip_grad_norm(2, ps, 1.0);
  cr_expect_float_eq(norm, 13.0, 1e-12);
  /* scaled by 1 / (13 + 1e-6): new norm 13 / (13 + 1e-6) */
  double k = 1.0 / (13.0 + 1e-6);
  expect_grad(ps[0], (double[]){3 * k, 4 * k}, 1e-15);
  expect_grad(ps[1], (double[]){12 * k}, 1e-15);
  cr_expect_float_eq(d2r_grad_norm(2, ps), 1.0, 1e-6);
  cr_expect_eq(d2r_clip_grad_norm(2, ps, 0.0), -1.0);
  d2r_release(ps[0]);
  d2r_release(ps[1]);
}

Test(clip, grad_norm_refuses_nonfinite) {
  d2r_tensor *ps[2];
  make_grads(ps);
  set_grad(ps[0], (double[]){NAN, 4});
  cr_expect_eq(d2r_grads_nonfinite(2, ps), 1);
  cr_expect_eq(d2r_clip_grad_norm(2, ps, 1.0), -1.0);
  cr_expect(strstr(d2r_error(), "1 non-finite") != NULL, "%s", d2r_error());
  expect_grad(ps[1], (double[]){12}, 0);
  set_grad(ps[0], (double[]){3, 4});
  cr_expect_eq(d2r_grads_nonfinite(2, ps), 0);
  d2r_release(ps[0]);
  d2r_release(ps[1]);
}

Test(clip, grad_value) {
  d2r_tensor *ps[2];
  make_grads(ps);
  cr_assert_eq(d2r_clip_grad_value(2, ps, 3.5), 0, "%s", d2r_error());
  expect_grad(ps[0], (double[]){3, 3.5}, 0);
  expect_grad(ps[1], (double[]){3.5}, 0);
  set_grad(ps[0], (double[]){-7, 0.25});
  cr_assert_eq(d2r_clip_grad_value(2, ps, 1), 0, "%s", d2r_error());
  expect_grad(ps[0], (double[]){-1, 0.25}, 0);
  cr_expect_eq(d2r_clip_grad_value(2, ps, -1), -1);
  d2r_release(ps[0]);
  d2r_release(ps[1]);
}

/* Clipping one parameter's gradient must leave the others alone, even
 * when backward produced the same gradient for both (d(a + b) / da and
 * d(a + b) / db are one tensor in the backward pass). */
Test(clip, leaves_other_gradients_alone) {
  d2r_tensor *a = param(2, (double[]){1, 2}), *b = param(2, (double[]){3, 4});
  d2r_tensor *s = d2r_add(a, b), *l = d2r_sum_all(s);
  cr_assert_eq(d2r_backward(l), 0, "%s", d2r_error());
  cr_assert_eq(d2r_clip_grad_value(1, &a, 0.5), 0, "%s", d2r_error());
  expect_grad(a, (double[]){0.5, 0.5}, 0);
  expect_grad(b, (double[]){1, 1}, 0);
  double norm = d2r_clip_grad_norm(1, &b, 1.0);  /* macro: no call inside */
  cr_expect_float_eq(norm, sqrt(2.0), 1e-15);
  expect_grad(a, (double[]){0.5, 0.5}, 0);
  d2r_release(l);
  d2r_release(s);
  d2r_release(a);
  d2r_release(b);
}

/* ---- plateau schedule ---------------------------------------------------- */

static d2r_optim *sgd_at(d2r_tensor **p, double lr) {
  *p = param(1, (double[]){0});
  d2r_sgd_config c = d2r_sgd_defaults(lr);
  return d2r_sgd_new(1, p, &c);
}

Test(schedule, plateau_reduces_after_patience) {
  d2r_tensor *p;
  d2r_optim *o = sgd_at(&p, 1.0);
  d2r_plateau_config c = d2r_plateau_defaults();
  cr_expect_eq(c.patience, 10);
  c.patience = 2;
  c.factor = 0.5;
  d2r_plateau *s = d2r_plateau_new(&c);
  cr_assert_not_null(s, "%s", d2r_error());
  /* epoch 1 improves on +inf; epochs 2, 3 are bad (2 <= patience);
   * epoch 4 is the third bad one: lr 1 -> 0.5 */
  cr_expect_eq(d2r_plateau_step(s, o, 1.0), 0);
  cr_expect_eq(d2r_plateau_step(s, o, 1.0), 0);
  cr_expect_eq(d2r_plateau_step(s, o, 0.99995), 0);  /* within 1e-4 rel */
  cr_expect_eq(d2r_plateau_bad_epochs(s), 2);
  cr_expect_eq(d2r_plateau_step(s, o, 1.0), 1);
  cr_expect_eq(d2r_optim_lr(o), 0.5);
  cr_expect_eq(d2r_plateau_bad_epochs(s), 0);
  /* a real improvement resets the count */
  cr_expect_eq(d2r_plateau_step(s, o, 0.5), 0);
  cr_expect_eq(d2r_plateau_best(s), 0.5);
  cr_expect_eq(d2r_plateau_step(s, o, 0.6), 0);
  cr_expect_eq(d2r_plateau_step(s, o, 0.6), 0);
  cr_expect_eq(d2r_plateau_step(s, o, 0.6), 1);
  cr_expect_eq(d2r_optim_lr(o), 0.25);
  cr_expect_eq(d2r_plateau_epochs(s), 8);
  d2r_plateau_free(s);
  d2r_optim_free(o);
  d2r_release(p);
}

Test(schedule, plateau_cooldown_and_min_lr) {
  d2r_tensor *p;
  d2r_optim *o = sgd_at(&p, 1.0);
  d2r_plateau_config c = d2r_plateau_defaults();
  c.patience = 0;
  c.cooldown = 2;
  c.min_lr = 0.05;
  d2r_plateau *s = d2r_plateau_new(&c);
  cr_expect_eq(d2r_plateau_step(s, o, 1.0), 0);
  cr_expect_eq(d2r_plateau_step(s, o, 2.0), 1);  /* lr 0.1, cooldown 2 */
  cr_expect_eq(d2r_plateau_cooldown_left(s), 2);
  cr_expect_eq(d2r_plateau_step(s, o, 2.0), 0);  /* cooling down */
  cr_expect_eq(d2r_plateau_step(s, o, 2.0), 0);  /* cooling down */
  cr_expect_eq(d2r_plateau_step(s, o, 2.0), 1);  /* 0.1 -> max(0.01, .05) */
  cr_expect_float_eq(d2r_optim_lr(o), 0.05, 1e-15);
  for (int i = 0; i < 6; i++)
    cr_expect_eq(d2r_plateau_step(s, o, 2.0), 0);  /* at min_lr */
  cr_expect_float_eq(d2r_optim_lr(o), 0.05, 1e-15);
  c.factor = 1.0;
  cr_expect_null(d2r_plateau_new(&c));
  d2r_plateau_free(s);
  d2r_optim_free(o);
  d2r_release(p);
}

Test(schedule, plateau_maximize) {
  d2r_tensor *p;
  d2r_optim *o = sgd_at(&p, 1.0);
  d2r_plateau_config c = d2r_plateau_defaults();
  c.maximize = true;
  c.patience = 1;
  d2r_plateau *s = d2r_plateau_new(&c);
  cr_expect_eq(d2r_plateau_step(s, o, 0.5), 0);
  cr_expect_eq(d2r_plateau_step(s, o, 0.9), 0);
  cr_expect_eq(d2r_plateau_step(s, o, 0.8), 0);
  cr_expect_eq(d2r_plateau_step(s, o, 0.85), 1);
  cr_expect_float_eq(d2r_optim_lr(o), 0.1, 1e-15);
  d2r_plateau_free(s);
  d2r_optim_free(o);
  d2r_release(p);
}

/* ---- early stopping ------------------------------------------------------ */

Test(schedule, early_stop_stops_and_restores) {
  d2r_tensor *p = param(2, (double[]){0, 0});
  d2r_early_stop_config c = {false, 3, 0.0, true};
  d2r_early_stop *e = d2r_early_stop_new(&c);
  cr_assert_not_null(e, "%s", d2r_error());
  cr_expect_null(d2r_early_stop_best_params(e));
  cr_expect_eq(d2r_early_stop_restore(e, 1, &p), -1);
  const double vals[] = {5, 4, 3, 3.5, 3.2, 3.1};
  int stops[6];
  for (int ep = 0; ep < 6; ep++) {
    /* the parameters at epoch ep are (ep, -ep) */
    d2r_data(p)[0] = ep;
    d2r_data(p)[1] = -ep;
    stops[ep] = d2r_early_stop_update(e, vals[ep], ep, 1, &p);
  }
  for (int ep = 0; ep < 5; ep++) cr_expect_eq(stops[ep], 0, "epoch %d", ep);
  cr_expect_eq(stops[5], 1);
  cr_expect(d2r_early_stop_should_stop(e));
  cr_expect_eq(d2r_early_stop_best(e), 3.0);
  cr_expect_eq(d2r_early_stop_best_epoch(e), 2);
  cr_expect_eq(d2r_early_stop_wait(e), 3);
  cr_assert_eq(d2r_early_stop_restore(e, 1, &p), 0, "%s", d2r_error());
  expect_data(p, (double[]){2, -2}, 0);
  d2r_early_stop_free(e);
  d2r_release(p);
}

Test(schedule, early_stop_min_delta_and_nan) {
  d2r_early_stop_config c = {false, 2, 0.1, false};
  d2r_early_stop *e = d2r_early_stop_new(&c);
  cr_expect_eq(d2r_early_stop_update(e, 1.0, 0, 0, NULL), 0);
  cr_expect_eq(d2r_early_stop_update(e, 0.95, 1, 0, NULL), 0);  /* < 0.1 */
  cr_expect_eq(d2r_early_stop_update(e, 0.85, 2, 0, NULL), 0);  /* better */
  cr_expect_eq(d2r_early_stop_best_epoch(e), 2);
  cr_expect_eq(d2r_early_stop_update(e, NAN, 3, 0, NULL), 0);
  cr_expect_eq(d2r_early_stop_update(e, NAN, 4, 0, NULL), 1);
  cr_expect_eq(d2r_early_stop_restore(e, 0, NULL), -1);
  cr_expect(strstr(d2r_error(), "not set") != NULL, "%s", d2r_error());
  d2r_early_stop_free(e);
  c.patience = 0;
  cr_expect_null(d2r_early_stop_new(&c));
  c = (d2r_early_stop_config){false, 2, 0.0, true};
  e = d2r_early_stop_new(&c);
  cr_expect_eq(d2r_early_stop_update(e, 1.0, 0, 0, NULL), -1);
  cr_expect(strstr(d2r_error(), "keep_best") != NULL, "%s", d2r_error());
  cr_expect_eq(d2r_early_stop_best_epoch(e), -1);
  d2r_early_stop_free(e);
}

Test(optim, decayed_moments_flush_to_zero) {
  /* One tiny gradient, then zeros: the first moment decays by beta1 a
   * step and would turn subnormal after ~150 steps; it must become 0
   * instead, and never be subnormal on the way. */
  double v0[1] = {0}, g1[1] = {1e-300}, g0[1] = {0};
  d2r_tensor *p = param(1, v0);
  d2r_adam_config c = d2r_adam_defaults();
  d2r_optim *o = d2r_adam_new(1, &p, &c);
  cr_assert_not_null(o, "%s", d2r_error());
  set_grad(p, g1);
  cr_assert_eq(d2r_optim_step(o), 0, "%s", d2r_error());
  set_grad(p, g0);
  for (int t = 0; t < 300; t++) {
    cr_assert_eq(d2r_optim_step(o), 0, "%s", d2r_error());
    double m = d2r_data(d2r_optim_buffer(o, 0, 0))[0];
    double s = d2r_data(d2r_optim_buffer(o, 0, 1))[0];
    cr_assert(m == 0 || fabs(m) >= DBL_MIN, "subnormal m %g at step %d",
              m, t);
    cr_assert(s == 0 || s >= DBL_MIN, "subnormal v %g at step %d", s, t);
  }
  cr_expect_eq(d2r_data(d2r_optim_buffer(o, 0, 0))[0], 0.0);
  d2r_optim_free(o);
  d2r_release(p);
}
