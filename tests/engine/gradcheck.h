/*
 * The gradient-check harness shared by engine tests: an operation's first
 * derivatives (the gradient of a random projection of its output) and
 * second derivatives (the Hessian-vector product of that projection,
 * built by differentiating the gradient) against central finite
 * differences.  Include it in one test file per suite; its functions are
 * static.
 */
#ifndef D2R_TEST_GRADCHECK_H
#define D2R_TEST_GRADCHECK_H

#include <criterion/criterion.h>
#include <math.h>

#include "d2r/rng.h"
#include "d2r/tensor.h"

/* The operation under test: its output from up to 4 inputs. */
typedef d2r_tensor *(*op_fn)(d2r_tensor **in);

/* L(in) = sum(f(in) * w) with a fixed random w, without recording. */
static double project(op_fn f, d2r_tensor **in, d2r_tensor *w) {
  bool was = d2r_set_grad_enabled(false);
  d2r_tensor *y = f(in);
  cr_assert(y, "forward failed: %s", d2r_error());
  d2r_tensor *p = d2r_mul(y, w);
  d2r_tensor *s = d2r_sum_all(p);
  double v = d2r_item(s);
  d2r_release(y), d2r_release(p), d2r_release(s);
  d2r_set_grad_enabled(was);
  return v;
}

static d2r_tensor *loss_of(op_fn f, d2r_tensor **in, d2r_tensor *w) {
  d2r_tensor *y = f(in);
  cr_assert(y, "forward failed: %s", d2r_error());
  d2r_tensor *p = d2r_mul(y, w);
  d2r_tensor *s = d2r_sum_all(p);
  d2r_release(y), d2r_release(p);
  return s;
}

static double rel_err(double a, double b) {
  return fabs(a - b) / fmax(1.0, fmax(fabs(a), fabs(b)));
}

/* Checks first and second derivatives of f at the given inputs (leaves
 * with contiguous data, at most 4), to relative error tol (50 tol for
 * the second derivatives). */
static void gradcheck(const char *name, op_fn f, int nin, d2r_tensor **in,
                      double tol) {
  d2r_rng *rng = d2r_rng_new(7);
  for (int i = 0; i < nin; i++) d2r_set_requires_grad(in[i], true);
  d2r_tensor *y = f(in);
  cr_assert(y, "%s: forward failed: %s", name, d2r_error());
  d2r_tensor *w = d2r_rand_normal(rng, d2r_ndim(y), d2r_shape(y), 0, 1);
  d2r_release(y);

  /* First order. */
  d2r_tensor *L = loss_of(f, in, w);
  d2r_tensor *g[4] = {0};
  int rc = d2r_autograd(1, &L, NULL, nin, in, true, true, g);
  cr_assert_eq(rc, 0, "%s: grad failed: %s", name, d2r_error());
  const double h = 1e-6;
  for (int i = 0; i < nin; i++) {
    double *x = d2r_data(in[i]);
    d2r_tensor *gc = d2r_contiguous(g[i]);
    for (int64_t k = 0; k < d2r_numel(in[i]); k++) {
      double x0 = x[k];
      x[k] = x0 + h;
      double up = project(f, in, w);
      x[k] = x0 - h;
      double dn = project(f, in, w);
      x[k] = x0;
      double fd = (up - dn) / (2 * h), an = d2r_data(gc)[k];
      cr_expect(rel_err(fd, an) < tol,
                "%s: d/d in%d[%lld]: analytic %.10g, numeric %.10g", name,
                i + 1, (long long)k, an, fd);
    }
    d2r_release(gc);
  }

  /* Second order: H v for a random v over all inputs at once. */
  d2r_tensor *v[4] = {0}, *gv = NULL;
  for (int i = 0; i < nin; i++) {
    v[i] = d2r_rand_normal(rng, d2r_ndim(in[i]), d2r_shape(in[i]), 0, 1);
  }
  d2r_scope s = D2R_SCOPE_INIT;
  for (int i = 0; i < nin; i++) {
    d2r_tensor *term = d2r_keep(&s, d2r_sum_all(d2r_keep(&s,
                                   d2r_mul(g[i], v[i]))));
    gv = gv ? d2r_keep(&s, d2r_add(gv, term)) : term;
  }
  cr_assert(gv, "%s: g.v failed: %s", name, d2r_error());
  d2r_tensor *hv[4] = {0};
  bool differentiable = d2r_requires_grad(gv);
  if (differentiable) {
    rc = d2r_autograd(1, &gv, NULL, nin, in, false, true, hv);
    cr_assert_eq(rc, 0, "%s: second grad failed: %s", name, d2r_error());
  }
  /* Numeric: d/dx_k of g(x).v by central differences of first grads. */
  for (int i = 0; i < nin; i++) {
    double *x = d2r_data(in[i]);
    d2r_tensor *hc = differentiable ? d2r_contiguous(hv[i]) : NULL;
    for (int64_t k = 0; k < d2r_numel(in[i]); k++) {
      double x0 = x[k], side[2];
      for (int sgn = 0; sgn < 2; sgn++) {
        x[k] = x0 + (sgn ? -1e-5 : 1e-5);
        d2r_tensor *Ls = loss_of(f, in, w), *gs[4] = {0};
        d2r_autograd(1, &Ls, NULL, nin, in, false, true, gs);
        double acc = 0;
        for (int j = 0; j < nin; j++) {
          d2r_tensor *c = d2r_contiguous(gs[j]);
          d2r_tensor *vc = d2r_contiguous(v[j]);
          for (int64_t m = 0; m < d2r_numel(c); m++)
            acc += d2r_data(c)[m] * d2r_data(vc)[m];
          d2r_release(c), d2r_release(vc), d2r_release(gs[j]);
        }
        d2r_release(Ls);
        side[sgn] = acc;
      }
      x[k] = x0;
      double fd = (side[0] - side[1]) / 2e-5;
      double an = hc ? d2r_data(hc)[k] : 0.0;
      cr_expect(rel_err(fd, an) < 50 * tol,
                "%s: (Hv)[in%d][%lld]: analytic %.10g, numeric %.10g", name,
                i + 1, (long long)k, an, fd);
    }
    d2r_release(hc);
  }
  d2r_scope_end(&s);
  for (int i = 0; i < nin; i++)
    d2r_release(g[i]), d2r_release(v[i]), d2r_release(hv[i]);
  d2r_release(L);
  d2r_release(w);
  d2r_rng_free(rng);
}

#endif
