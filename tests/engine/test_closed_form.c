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

/* The pseudo-inverse U: on an invertible Sigma it is (lambda / 2)
 * Sigma^-1 (checked by U Sigma = (lambda / 2) I); with a constant third
 * dimension it is the inverse of the leading 2 x 2 block (worked by hand:
 * [[2, 0.5], [0.5, 1]]^-1 = [[1, -0.5], [-0.5, 2]] / 1.75) bordered by
 * zeros, with one direction dropped, or by the null weight on the
 * diagonal.  Tolerance 1e-12. */
Test(closed_form, full_pseudo_inverse) {
  double s3[9] = {2, 0.5, 0.1, 0.5, 1, 0.2, 0.1, 0.2, 3};
  d2r_tensor *sig = d2r_matrix(3, 3, s3);
  int64_t dropped = -1;
  d2r_tensor *u = d2r_reward_full_pinv(sig, 0.8, 0, 0, &dropped);
  cr_assert(u, "%s", d2r_error());
  cr_expect_eq(dropped, 0);
  for (int r = 0; r < 3; r++)
    for (int c = 0; c < 3; c++) {
      double acc = 0;
      for (int k = 0; k < 3; k++)
        acc += d2r_data(u)[r * 3 + k] * s3[k * 3 + c];
      cr_expect(fabs(acc - (r == c ? 0.4 : 0.0)) < 1e-12,
                "(U Sigma)[%d][%d] = %.15g", r, c, acc);
    }
  d2r_release(u), d2r_release(sig);

  double s2[9] = {2, 0.5, 0, 0.5, 1, 0, 0, 0, 0};
  sig = d2r_matrix(3, 3, s2);
  u = d2r_reward_full_pinv(sig, 1.0, 0, 0, &dropped);
  cr_assert(u, "%s", d2r_error());
  cr_expect_eq(dropped, 1);
  double want[9] = {0.5 / 1.75, -0.25 / 1.75, 0, -0.25 / 1.75, 1.0 / 1.75,
                    0, 0, 0, 0};
  for (int i = 0; i < 9; i++)
    cr_expect(fabs(d2r_data(u)[i] - want[i]) < 1e-12, "U[%d] = %.15g, "
              "want %.15g", i, d2r_data(u)[i], want[i]);
  d2r_release(u);
  /* With a weight for the constant direction: 0.3 at [2][2], the rest
   * unchanged. */
  u = d2r_reward_full_pinv(sig, 1.0, 0, 0.3, &dropped);
  cr_assert(u, "%s", d2r_error());
  want[8] = 0.3;
  for (int i = 0; i < 9; i++)
    cr_expect(fabs(d2r_data(u)[i] - want[i]) < 1e-12, "U[%d] = %.15g, "
              "want %.15g (null weight)", i, d2r_data(u)[i], want[i]);
  cr_expect_null(d2r_reward_full_pinv(sig, 1, 0, -1, NULL));
  cr_expect(strstr(d2r_error(), "null_weight"), "%s", d2r_error());
  d2r_release(u), d2r_release(sig);

  /* What it refuses, by name. */
  sig = d2r_matrix(2, 2, (double[]){0, 0, 0, 0});
  cr_expect_null(d2r_reward_full_pinv(sig, 1, 0, 0, NULL));
  cr_expect(strstr(d2r_error(), "do not vary"), "%s", d2r_error());
  d2r_release(sig);
  sig = d2r_matrix(2, 2, (double[]){1, 0.5, 0, 1});
  cr_expect_null(d2r_reward_full_pinv(sig, 1, 0, 0, NULL));
  cr_expect(strstr(d2r_error(), "not symmetric"), "%s", d2r_error());
  d2r_release(sig);
  sig = d2r_matrix(2, 2, (double[]){1, 0, 0, NAN});
  cr_expect_null(d2r_reward_full_pinv(sig, 1, 0, 0, NULL));
  cr_expect(strstr(d2r_error(), "not finite"), "%s", d2r_error());
  cr_expect_null(d2r_reward_full_pinv(sig, -1, 0, 0, NULL));
  cr_expect(strstr(d2r_error(), "lambda"), "%s", d2r_error());
  d2r_release(sig);
  sig = d2r_matrix(2, 3, (double[]){1, 0, 0, 0, 1, 0});
  cr_expect_null(d2r_reward_full_pinv(sig, 1, 0, 0, NULL));
  cr_expect(strstr(d2r_error(), "[n, n]"), "%s", d2r_error());
  cr_expect_null(d2r_reward_full_pinv(NULL, 1, 0, 0, NULL));
  d2r_release(sig);
}

/* The diagonal counterpart: columns (1,2,3,4) and (5,5,5,5): the first
 * has variance 5/3, weight 0.5 / (2 * 5/3) = 0.15; the constant one gets
 * the null weight.  Tolerance 1e-12. */
Test(closed_form, diagonal_pseudo_inverse) {
  double v[8] = {1, 5, 2, 5, 3, 5, 4, 5};
  d2r_tensor *y = d2r_matrix(4, 2, v);
  d2r_tensor *u = d2r_reward_diagonal_pinv(y, 0.5, 0, 0.7);
  cr_assert(u, "%s", d2r_error());
  cr_expect(fabs(d2r_data(u)[0] - 0.15) < 1e-12, "u[0] = %g",
            d2r_data(u)[0]);
  cr_expect(fabs(d2r_data(u)[1] - 0.7) < 1e-12, "u[1] = %g",
            d2r_data(u)[1]);
  d2r_release(u);
  cr_expect_null(d2r_reward_diagonal_pinv(y, 0.5, 0, -1));
  cr_expect(strstr(d2r_error(), "null_weight"), "%s", d2r_error());
  cr_expect_null(d2r_reward_diagonal_pinv(y, 0.5, 1, 0.7));
  cr_expect(strstr(d2r_error(), "rtol must be in (0, 1)"), "%s",
            d2r_error());
  double same[4] = {2, 2, 2, 2};
  d2r_tensor *flat = d2r_matrix(2, 2, same);
  cr_expect_null(d2r_reward_diagonal_pinv(flat, 0.5, 0, 1));
  cr_expect(strstr(d2r_error(), "do not vary"), "%s", d2r_error());
  d2r_release(flat), d2r_release(y);
}
