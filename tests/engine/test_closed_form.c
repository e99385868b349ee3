/*
 * Closed-form rewards against values worked out by hand.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "d2r/closed_form.h"

Test(closed_form, covariance_and_isotropic) {
  /* Columns (1,2,3,4) and (2,2,4,4): variances 5/3 and 4/3, cov 4/3. */
  double v[8] = {1, 2, 2, 2, 3, 4, 4, 4};
  d2r_tensor *y = d2r_matrix(4, 2, v);
  d2r_tensor *c = d2r_covariance(y);
  cr_assert(c, "%s", d2r_error());
  double want[4] = {5.0 / 3, 4.0 / 3, 4.0 / 3, 4.0 / 3};
  for (int i = 0; i < 4; i++)
    cr_expect(fabs(d2r_data(c)[i] - want[i]) < 1e-12, "cov[%d] = %g", i,
              d2r_data(c)[i]);
  d2r_tensor *u = d2r_reward_isotropic(y, 0.5);
  /* lambda n / (2 tr) = 0.5 * 2 / (2 * 3) */
  cr_expect(fabs(d2r_item(u) - 1.0 / 6) < 1e-12, "u = %g", d2r_item(u));
  d2r_tensor *d = d2r_reward_diagonal(y, 0.5);
  cr_expect(fabs(d2r_data(d)[0] - 0.25 / (5.0 / 3)) < 1e-12);
  cr_expect(fabs(d2r_data(d)[1] - 0.25 / (4.0 / 3)) < 1e-12);
  d2r_release(y), d2r_release(c), d2r_release(u), d2r_release(d);
}

Test(closed_form, onehot_beta) {
  /* 150 balanced labels of 3 classes, as iris: each one-hot column has
   * unbiased variance N p (1 - p) / (N - 1) with p = 1/3. */
  double lab[150];
  for (int i = 0; i < 150; i++) lab[i] = i % 3;
  d2r_tensor *y = d2r_vector(150, lab);
  double beta;
  cr_assert_eq(d2r_reward_onehot_beta(y, 3, 0.1, &beta), 0, "%s",
               d2r_error());
  double tr = 3 * 150 * (1.0 / 3) * (2.0 / 3) / 149;
  cr_expect(fabs(beta - 0.1 * 3 / (2 * tr)) < 1e-12, "beta = %g", beta);
  cr_expect(fabs(beta - 0.2235) < 1e-3);
  d2r_release(y);
}

Test(closed_form, degenerate_inputs_are_errors) {
  double same[4] = {1, 1, 1, 1};
  d2r_tensor *y = d2r_vector(4, same);
  double beta;
  cr_expect_eq(d2r_reward_onehot_beta(y, 2, 0.1, &beta), -1);
  cr_expect(strstr(d2r_error(), "same class"), "%s", d2r_error());
  d2r_tensor *m = d2r_matrix(2, 2, (double[]){1, 5, 1, 6});
  cr_expect_null(d2r_reward_diagonal(m, 1));
  cr_expect(strstr(d2r_error(), "dimension 1"), "%s", d2r_error());
  cr_expect_null(d2r_reward_isotropic(m, -1));
  cr_expect(strstr(d2r_error(), "lambda"), "%s", d2r_error());
  d2r_tensor *one = d2r_matrix(1, 2, (double[]){1, 2});
  cr_expect_null(d2r_covariance(one));
  d2r_release(y), d2r_release(m), d2r_release(one);
}
