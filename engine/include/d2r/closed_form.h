/*
 * Closed-form optimal Mahalanobis rewards (METHOD.md, "The Gaussian case,
 * solved in closed form"), estimated from training targets: the plug-in
 * solver of the outer problem.
 *
 * With lambda the entropy weight and Sigma the covariance of the targets:
 *   isotropic  U = u I,     u = lambda n / (2 tr Sigma)
 *   diagonal   U = diag(u), u_i = lambda / (2 Sigma_ii)
 *   one-hot    U = beta I,  beta = lambda C / (2 tr Sigma_onehot)
 * Covariances are unbiased (divided by N - 1), as in the reference.
 */
#ifndef D2R_CLOSED_FORM_H
#define D2R_CLOSED_FORM_H

#include "d2r/tensor.h"

/* Unbiased covariance [n, n] of the rows of y [N, n] (N >= 2). */
d2r_tensor *d2r_covariance(d2r_tensor *y);

/* Isotropic u* (a 0-d tensor) from targets y [N, n].  Fails when the
 * targets do not vary (tr Sigma = 0) or lambda <= 0. */
d2r_tensor *d2r_reward_isotropic(d2r_tensor *y, double lambda);
/* Diagonal u* [n] from targets y [N, n].  Fails, naming the dimension,
 * when a dimension does not vary. */
d2r_tensor *d2r_reward_diagonal(d2r_tensor *y, double lambda);
/* beta* for one-hot targets from integer labels [N] in [0, classes).
 * Fails when all labels are equal. */
int d2r_reward_onehot_beta(const d2r_tensor *labels, int64_t classes,
                           double lambda, double *beta);

#endif
