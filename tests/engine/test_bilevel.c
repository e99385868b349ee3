/*
 * Bilevel building blocks: each linear solver against quadratics whose
 * solution is known (cold and warm started, converging and not), the
 * Hessian-vector product against an analytic Hessian, and the implicit
 * hypergradient on a Gaussian problem with an analytic inner optimum,
 * against the derivative worked out by hand and a finite difference.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "d2r/bilevel.h"
#include "d2r/rng.h"

/* ---- a dense operator ---------------------------------------------------- */

static int matvec(void *ctx, d2r_tensor *v, d2r_tensor **out) {
  *out = d2r_matmul((d2r_tensor *)ctx, v);
  return *out ? 0 : -1;
}

/* A = M M^T + shift I, an SPD matrix with a known spectrum floor. */
static d2r_tensor *spd(int64_t n, double shift, uint64_t seed) {
  d2r_rng *r = d2r_rng_new(seed);
  int64_t sh[2] = {n, n};
  d2r_tensor *m = d2r_rand_normal(r, 2, sh, 0, 1);
  d2r_tensor *mt = d2r_transpose(m, 0, 1), *mm = d2r_matmul(m, mt);
  d2r_tensor *eye = d2r_eye(n), *se = d2r_muls(eye, shift);
  d2r_tensor *a = d2r_add(mm, se);
  d2r_release(m), d2r_release(mt), d2r_release(mm), d2r_release(eye);
  d2r_release(se);
  d2r_rng_free(r);
  return a;
}

static double max_diff(d2r_tensor *a, d2r_tensor *b) {
  double d = 0;
  for (int64_t i = 0; i < d2r_numel(a); i++)
    d = fmax(d, fabs(d2r_data(a)[i] - d2r_data(b)[i]));
  return d;
}

static void known_system(d2r_tensor *a, d2r_tensor **x, d2r_tensor **b) {
  int64_t n = d2r_dim(a, 0);
  d2r_rng *r = d2r_rng_new(3);
  *x = d2r_rand_normal(r, 1, &n, 0, 1);
  *b = d2r_matmul(a, *x);
  d2r_rng_free(r);
}

Test(linsolve, each_solver_finds_a_known_solution) {
  d2r_tensor *a = spd(6, 1.0, 1), *xt, *b;
  known_system(a, &xt, &b);
  d2r_solver_kind kinds[3] = {D2R_SOLVE_CG, D2R_SOLVE_CG_NORMAL,
                              D2R_SOLVE_DENSE};
  for (int k = 0; k < 3; k++) {
    d2r_solve_config c = D2R_SOLVE_CONFIG_INIT;
    c.kind = kinds[k];
    c.tol = 1e-10;
    c.max_iter = 200;
    d2r_tensor *x;
    d2r_solve_info info;
    cr_assert_eq(d2r_linsolve(&c, matvec, a, b, NULL, &x, &info), 0, "%s",
                 d2r_error());
    cr_expect(info.converged, "%s did not converge: residual %g",
              d2r_solver_name(kinds[k]), info.residual);
    cr_expect(info.residual < 1e-9, "%s residual %g",
              d2r_solver_name(kinds[k]), info.residual);
    cr_expect(max_diff(x, xt) < 1e-7, "%s: error %g",
              d2r_solver_name(kinds[k]), max_diff(x, xt));
    d2r_release(x);
  }
  d2r_release(a), d2r_release(xt), d2r_release(b);
}

/* The operator with a count of its products. */
typedef struct {
  d2r_tensor *a;
  int calls;
} counted;

static int counted_matvec(void *ctx, d2r_tensor *v, d2r_tensor **out) {
  counted *c = ctx;
  c->calls++;
  return matvec(c->a, v, out);
}

/* CG from zero makes one product per iteration and one for the residual
 * it reports: none for the (zero) start. */
Test(linsolve, cg_from_zero_skips_the_start_product) {
  counted op = {spd(6, 1.0, 1), 0};
  d2r_tensor *xt, *b, *x;
  known_system(op.a, &xt, &b);
  d2r_solve_config c = D2R_SOLVE_CONFIG_INIT;
  c.kind = D2R_SOLVE_CG;
  c.tol = 0;
  c.max_iter = 4;
  d2r_solve_info info;
  cr_assert_eq(d2r_linsolve(&c, counted_matvec, &op, b, NULL, &x, &info), 0,
               "%s", d2r_error());
  cr_expect_eq(info.iterations, 4);
  cr_expect_eq(op.calls, 5, "%d products for 4 iterations", op.calls);
  d2r_release(x), d2r_release(op.a), d2r_release(xt), d2r_release(b);
}

Test(linsolve, warm_start_saves_iterations) {
  d2r_tensor *a = spd(60, 20.0, 2), *xt, *b;
  known_system(a, &xt, &b);
  d2r_solve_config c = D2R_SOLVE_CONFIG_INIT;
  c.tol = 1e-8;
  d2r_tensor *x;
  d2r_solve_info cold, warm, exact;
  d2r_linsolve(&c, matvec, a, b, NULL, &x, &cold);
  d2r_release(x);
  /* Start near the answer: fewer iterations. */
  d2r_tensor *noise = d2r_muls(xt, 1e-4), *near = d2r_add(xt, noise);
  d2r_linsolve(&c, matvec, a, b, near, &x, &warm);
  cr_expect(warm.converged && cold.converged);
  cr_expect_lt(warm.iterations, cold.iterations, "warm %d, cold %d",
               warm.iterations, cold.iterations);
  d2r_release(x);
  /* Start at the answer: nothing to do. */
  d2r_linsolve(&c, matvec, a, b, xt, &x, &exact);
  cr_expect_eq(exact.iterations, 0);
  cr_expect(exact.converged);
  d2r_release(x), d2r_release(noise), d2r_release(near);
  d2r_release(a), d2r_release(xt), d2r_release(b);
}

Test(linsolve, neumann_converges_and_reports_when_it_does_not) {
  /* Spectrum in [1, 2]: alpha = 0.6 contracts by at most 0.4 a step. */
  double diag[4] = {1, 1.3, 1.7, 2};
  d2r_tensor *dv = d2r_vector(4, diag), *eye = d2r_eye(4);
  d2r_tensor *a = d2r_mul(eye, dv), *xt, *b;
  known_system(a, &xt, &b);
  d2r_solve_config c = {D2R_SOLVE_NEUMANN, 1e-10, 200, 0.0, 0.6};
  d2r_tensor *x;
  d2r_solve_info info;
  cr_assert_eq(d2r_linsolve(&c, matvec, a, b, NULL, &x, &info), 0);
  cr_expect(info.converged, "residual %g", info.residual);
  cr_expect(max_diff(x, xt) < 1e-8);
  d2r_release(x);
  c.max_iter = 2;
  cr_assert_eq(d2r_linsolve(&c, matvec, a, b, NULL, &x, &info), 0);
  cr_expect(!info.converged);
  cr_expect_eq(info.iterations, 2);
  cr_expect_gt(info.residual, 1e-3, "residual %g", info.residual);
  d2r_release(x), d2r_release(dv), d2r_release(eye), d2r_release(a);
  d2r_release(xt), d2r_release(b);
}

Test(linsolve, indefinite_systems) {
  double diag[4] = {3, -2, 1, -0.5};
  d2r_tensor *dv = d2r_vector(4, diag), *eye = d2r_eye(4);
  d2r_tensor *a = d2r_mul(eye, dv), *xt, *b;
  known_system(a, &xt, &b);
  d2r_solve_config c = D2R_SOLVE_CONFIG_INIT;
  c.tol = 1e-10;
  d2r_tensor *x;
  d2r_solve_info info;
  /* Plain CG goes on through negative curvature (Galerkin iterates); on
   * this small system it reaches the solution, and its report matches
   * the residual it measured. */
  cr_assert_eq(d2r_linsolve(&c, matvec, a, b, NULL, &x, &info), 0);
  cr_expect_eq(info.converged, info.residual <= c.tol, "converged %d, "
               "residual %g", info.converged, info.residual);
  cr_expect(max_diff(x, xt) < 1e-6 || !info.converged);
  d2r_release(x);
  /* One iteration on an indefinite operator is the Galerkin step
   * (r.r / r.Ar) r, not zero: b = (1, 1) with A = diag(1, -3) gives
   * r.Ar = -2, so x = -(b) and the residual is |(2, -2)| / |b| = 2. */
  double d2[2] = {1, -3}, one[2] = {1, 1};
  d2r_tensor *dv2 = d2r_vector(2, d2), *e2 = d2r_eye(2);
  d2r_tensor *a2 = d2r_mul(e2, dv2), *b2 = d2r_vector(2, one);
  c.max_iter = 1;
  cr_assert_eq(d2r_linsolve(&c, matvec, a2, b2, NULL, &x, &info), 0);
  cr_expect(fabs(d2r_data(x)[0] + 1) < 1e-12 &&
            fabs(d2r_data(x)[1] + 1) < 1e-12, "x = (%g, %g)",
            d2r_data(x)[0], d2r_data(x)[1]);
  cr_expect(!info.converged && fabs(info.residual - 2) < 1e-12);
  d2r_release(x), d2r_release(dv2), d2r_release(e2), d2r_release(a2);
  d2r_release(b2);
  c.max_iter = 100;
  /* CG on the normal equations solves it. */
  c.kind = D2R_SOLVE_CG_NORMAL;
  cr_assert_eq(d2r_linsolve(&c, matvec, a, b, NULL, &x, &info), 0);
  cr_expect(info.converged, "residual %g", info.residual);
  cr_expect(max_diff(x, xt) < 1e-8);
  d2r_release(x), d2r_release(dv), d2r_release(eye), d2r_release(a);
  d2r_release(xt), d2r_release(b);
}

Test(linsolve, ridge_and_errors) {
  d2r_tensor *a = spd(3, 1.0, 4), *xt, *b;
  known_system(a, &xt, &b);
  /* (A + 2 I) x = b is the system with A + 2 I. */
  d2r_tensor *eye = d2r_eye(3), *e2 = d2r_muls(eye, 2), *a2 = d2r_add(a, e2);
  d2r_tensor *b2 = d2r_matmul(a2, xt), *x;
  d2r_solve_config c = D2R_SOLVE_CONFIG_INIT;
  c.ridge = 2;
  c.tol = 1e-12;
  d2r_solve_info info;
  cr_assert_eq(d2r_linsolve(&c, matvec, a, b2, NULL, &x, &info), 0);
  cr_expect(max_diff(x, xt) < 1e-8);
  d2r_release(x);
  /* A singular dense system is an error naming it. */
  d2r_tensor *z = d2r_zeros_like(a);
  c.kind = D2R_SOLVE_DENSE;
  c.ridge = 0;
  cr_expect_eq(d2r_linsolve(&c, matvec, z, b, NULL, &x, &info), -1);
  cr_expect(strstr(d2r_error(), "singular"), "%s", d2r_error());
  /* Bad configurations. */
  c.tol = -1;
  cr_expect_eq(d2r_linsolve(&c, matvec, a, b, NULL, &x, &info), -1);
  d2r_solver_kind k;
  cr_expect_eq(d2r_solver_parse("cholesky", &k), -1);
  cr_expect_eq(d2r_solver_parse("neumann", &k), 0);
  cr_expect_eq(k, D2R_SOLVE_NEUMANN);
  d2r_release(z), d2r_release(eye), d2r_release(e2), d2r_release(a2);
  d2r_release(b2), d2r_release(a), d2r_release(xt), d2r_release(b);
}

Test(second_order, hvp_and_mixed_products) {
  /* f(x, p) = sum(p * x^3) / 3: H_xx = diag(2 p x), d2f/dp dx = diag(x^2) */
  double xv[3] = {1, -2, 0.5}, pv[3] = {2, 1, -1}, vv[3] = {0.3, 0.2, 1};
  d2r_tensor *x = d2r_vector(3, xv), *p = d2r_vector(3, pv);
  d2r_tensor *v = d2r_vector(3, vv);
  d2r_set_requires_grad(x, true), d2r_set_requires_grad(p, true);
  d2r_tensor *c = d2r_pows(x, 3), *pc = d2r_mul(p, c);
  d2r_tensor *f = d2r_sum_all(pc), *g, *hv, *mv;
  d2r_tensor *third = d2r_muls(f, 1.0 / 3);
  cr_assert_eq(d2r_autograd(1, &third, NULL, 1, &x, true, false, &g), 0);
  cr_assert_eq(d2r_hvp(1, &g, &x, v, &hv), 0, "%s", d2r_error());
  cr_assert_eq(d2r_mixed_vp(1, &g, 1, &p, v, &mv), 0, "%s", d2r_error());
  for (int i = 0; i < 3; i++) {
    cr_expect(fabs(d2r_data(hv)[i] - 2 * pv[i] * xv[i] * vv[i]) < 1e-12);
    cr_expect(fabs(d2r_data(mv)[i] - xv[i] * xv[i] * vv[i]) < 1e-12);
  }
  d2r_release(x), d2r_release(p), d2r_release(v), d2r_release(c);
  d2r_release(pc), d2r_release(f), d2r_release(third), d2r_release(g);
  d2r_release(hv), d2r_release(mv);
}

/* ---- the Gaussian problem --------------------------------------------------
 * Policy N(m, s^2) with theta = (m, log s); reward weight u = phi.  The
 * negated inner objective of METHOD.md (constants dropped) is
 *   L = u ((m - ybar)^2 + v) + u s^2 - lambda log s,
 * minimised at m = ybar, s^2 = lambda / (2u).  The outer loss is the mean
 * NLL of the data, F = log s + mean (y - m)^2 / (2 s^2) + const, so at the
 * inner optimum F(u) = -log(u) / 2 + v u / lambda + const and
 *   dF/du = -1 / (2u) + v / lambda.                                    */

typedef struct {
  d2r_tensor *y, *m, *logs, *u;
  double ybar, v, lambda;
} gauss;

static d2r_tensor *inner(void *ctx) {
  gauss *g = ctx;
  d2r_scope s = D2R_SCOPE_INIT;
#define K(e) d2r_keep(&s, (e))
  d2r_tensor *dm = K(d2r_square(K(d2r_adds(g->m, -g->ybar))));
  d2r_tensor *s2 = K(d2r_exp(K(d2r_muls(g->logs, 2))));
  d2r_tensor *fit = K(d2r_mul(g->u, K(d2r_add(K(d2r_adds(dm, g->v)), s2))));
  d2r_tensor *out = d2r_sub(fit, K(d2r_muls(g->logs, g->lambda)));
  d2r_scope_end(&s);
  return out;
}

static d2r_tensor *outer(void *ctx) {
  gauss *g = ctx;
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *r2 = K(d2r_mean_all(K(d2r_square(K(d2r_sub(g->y, g->m))))));
  d2r_tensor *s2 = K(d2r_exp(K(d2r_muls(g->logs, 2))));
  d2r_tensor *out = d2r_add(g->logs, K(d2r_div(r2, K(d2r_muls(s2, 2)))));
#undef K
  d2r_scope_end(&s);
  return out;
}

/* F at the exact inner optimum for a given u. */
static double outer_at(gauss *g, double u) {
  double *mp = d2r_data(g->m), *lp = d2r_data(g->logs);
  mp[0] = g->ybar;
  lp[0] = 0.5 * log(g->lambda / (2 * u));
  d2r_tensor *f = outer(g);
  double val = d2r_item(f);
  d2r_release(f);
  return val;
}

Test(implicit, gaussian_hypergradient_matches_analytic_and_fd) {
  double ys[10] = {1.2, -0.3, 2.5, 0.7, 1.9, -1.1, 0.4, 3.0, 1.0, 0.2};
  gauss g = {.lambda = 0.8};
  g.y = d2r_vector(10, ys);
  for (int i = 0; i < 10; i++) g.ybar += ys[i] / 10;
  for (int i = 0; i < 10; i++) g.v += (ys[i] - g.ybar) * (ys[i] - g.ybar) / 10;
  double u = 0.45, one = 0;
  g.m = d2r_vector(1, &one);
  g.logs = d2r_vector(1, &one);
  g.u = d2r_vector(1, &u);
  d2r_set_requires_grad(g.m, true);
  d2r_set_requires_grad(g.logs, true);
  d2r_set_requires_grad(g.u, true);
  outer_at(&g, u);   /* puts theta at the inner optimum */
  d2r_tensor *theta[2] = {g.m, g.logs};
  d2r_bilevel_fns fns = {inner, outer, &g};
  double analytic = -1 / (2 * u) + g.v / g.lambda;
  double fd = (outer_at(&g, u + 1e-6) - outer_at(&g, u - 1e-6)) / 2e-6;
  outer_at(&g, u);
  d2r_solver_kind kinds[3] = {D2R_SOLVE_CG, D2R_SOLVE_CG_NORMAL,
                              D2R_SOLVE_DENSE};
  for (int k = 0; k < 3; k++) {
    d2r_solve_config c = D2R_SOLVE_CONFIG_INIT;
    c.kind = kinds[k];
    c.tol = 1e-12;
    d2r_tensor *hg, *w;
    d2r_solve_info info;
    cr_assert_eq(d2r_implicit_hypergrad(2, theta, 1, &g.u, &fns, &c, NULL,
                                        &hg, &w, &info), 0, "%s",
                 d2r_error());
    double got = d2r_data(hg)[0];
    cr_expect(info.converged, "%s: residual %g", d2r_solver_name(kinds[k]),
              info.residual);
    cr_expect(fabs(got - analytic) < 1e-9, "%s: implicit %.12g, analytic "
              "%.12g", d2r_solver_name(kinds[k]), got, analytic);
    cr_expect(fabs(got - fd) < 1e-6, "implicit %.12g, finite difference "
              "%.12g", got, fd);
    d2r_release(hg), d2r_release(w);
  }
  d2r_release(g.y), d2r_release(g.m), d2r_release(g.logs);
  d2r_release(g.u);
}
