/*
 * Anomaly detection: off, a NaN flows through as a value; on, the op that
 * made it from finite inputs fails and names itself, in the forward pass
 * and in the backward pass; a NaN already in the inputs is not blamed on
 * the op that receives it.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "d2r/tensor.h"

Test(anomaly, off_by_default) {
  double v[2] = {-1, 4};
  d2r_tensor *x = d2r_vector(2, v), *y = d2r_log(x);
  cr_assert(y, "%s", d2r_error());
  cr_expect(isnan(d2r_data(y)[0]));
  d2r_release(x), d2r_release(y);
}

Test(anomaly, forward_names_the_op) {
  bool was = d2r_set_detect_anomaly(true);
  cr_expect(!was);
  double v[3] = {1, 4, -2};
  d2r_tensor *x = d2r_vector(3, v);
  cr_expect_null(d2r_sqrt(x));
  cr_expect(strstr(d2r_error(), "anomaly: sqrt produced nan at element 3"),
            "%s", d2r_error());
  /* A NaN that came in is passed on, not reported again. */
  double w[2] = {NAN, 1};
  d2r_tensor *z = d2r_vector(2, w), *e = d2r_exp(z);
  cr_expect_not_null(e);
  d2r_tensor *big = d2r_scalar(1000), *eb = d2r_exp(big);
  cr_expect_null(eb);
  cr_expect(strstr(d2r_error(), "exp produced inf"), "%s", d2r_error());
  d2r_set_detect_anomaly(false);
  d2r_release(x), d2r_release(z), d2r_release(e), d2r_release(big);
}

Test(anomaly, backward_names_the_rule) {
  double v[2] = {0, 4};
  d2r_tensor *x = d2r_vector(2, v);
  d2r_set_requires_grad(x, true);
  d2r_tensor *y = d2r_sqrt(x), *l = d2r_sum_all(y);
  d2r_set_detect_anomaly(true);
  cr_expect_eq(d2r_backward(l), -1);
  cr_expect(strstr(d2r_error(), "backward of sqrt"), "%s", d2r_error());
  d2r_set_detect_anomaly(false);
  /* Off, the infinite gradient is a value. */
  cr_assert_eq(d2r_backward(l), 0);
  d2r_tensor *g = d2r_grad(x);
  cr_expect(isinf(d2r_data(g)[0]));
  cr_expect(fabs(d2r_data(g)[1] - 0.25) < 1e-15);
  d2r_release(g), d2r_release(x), d2r_release(y), d2r_release(l);
}

/* The fused policy-gradient loops check like the ops they replace: an
 * RBF transform that overflows, and a score term whose products
 * overflow, from finite inputs. */
#include "d2r/objective.h"

Test(anomaly, fused_policy_gradient) {
  double r[2] = {1000, 1}, lp[2] = {-1e200, -1};
  int64_t sh[2] = {1, 2};
  d2r_tensor *rew = d2r_from_data(2, sh, r), *logp = d2r_from_data(2, sh,
                                                                   lp);
  d2r_pg_options o = d2r_pg_options_default();
  o.transform = D2R_TRANSFORM_RBF;
  d2r_set_detect_anomaly(true);
  cr_expect_null(d2r_pg_transform(rew, &o));
  cr_expect(strstr(d2r_error(), "anomaly: pg_transform"), "%s",
            d2r_error());
  double big[2] = {1e200, 1};
  d2r_tensor *rb = d2r_from_data(2, sh, big);
  cr_expect_null(d2r_pg_surrogate(logp, rb, NULL, 0, NULL, NULL));
  cr_expect(strstr(d2r_error(), "anomaly: pg_surrogate"), "%s",
            d2r_error());
  d2r_set_detect_anomaly(false);
  d2r_tensor *ok = d2r_pg_surrogate(logp, rb, NULL, 0, NULL, NULL);
  cr_expect(ok && isinf(d2r_item(ok)), "off: the value is passed on");
  d2r_release(ok), d2r_release(rb), d2r_release(rew), d2r_release(logp);
}
