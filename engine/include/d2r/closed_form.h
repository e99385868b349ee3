/*
 * Closed-form optimal Mahalanobis rewards (METHOD.md, "The Gaussian case,
 * solved in closed form"), estimated from training targets: the plug-in
 * solver of the outer problem.
 *
 * With lambda the entropy weight and Sigma the covariance of the targets:
 *   isotropic  U = u I,     u = lambda n / (2 tr Sigma)
 *   diagonal   U = diag(u), u_i = lambda / (2 Sigma_ii)
 *   one-hot    U = beta I,  beta = lambda C / (2 tr Sigma_onehot)
 *   full       U = (lambda / 2) Sigma^-1
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
/* The diagonal u* with the treatment d2r_reward_full_pinv gives constant
 * directions: u_i = lambda / (2 Sigma_ii), except null_weight >= 0 for a
 * dimension whose variance is at most rtol times the largest (rtol in
 * (0, 1); <= 0 selects 1e-6).  Fails when no dimension varies. */
d2r_tensor *d2r_reward_diagonal_pinv(d2r_tensor *y, double lambda,
                                     double rtol, double null_weight);
/* beta* for one-hot targets from integer labels [N] in [0, classes).
 * Fails when all labels are equal. */
int d2r_reward_onehot_beta(const d2r_tensor *labels, int64_t classes,
                           double lambda, double *beta);

/*
 * The full reward U* = (lambda / 2) (Sigma + ridge I)^-1.
 *
 * An inverse of an estimated covariance amplifies its noise by up to its
 * condition number, and a singular estimate (fewer targets than
 * dimensions, a constant or collinear dimension) has no inverse at all,
 * so the matrix is checked first: it must be positive definite (by
 * Cholesky) with a condition estimate cond_1 = |A|_1 |A^-1|_1 (LAPACK
 * dpocon) of at most max_cond.  Otherwise the call fails with a message
 * that gives the estimate and suggests a ridge.  A ridge > 0 adds
 * ridge I before the check and the inversion (a shrinkage estimate).
 *
 * max_cond <= 0 selects D2R_REWARD_MAX_COND.  When cond is not NULL it
 * receives the estimate, also on failure (INFINITY for a matrix that is
 * not positive definite, NAN for an argument error).  lambda > 0,
 * ridge >= 0, both finite.  The result is symmetric, [n, n].
 */
#define D2R_REWARD_MAX_COND 1e10

/* From a covariance Sigma [n, n] (symmetric). */
d2r_tensor *d2r_reward_full_from_cov(d2r_tensor *sigma, double lambda,
                                     double ridge, double max_cond,
                                     double *cond);
/* From targets y [N, n], with Sigma = d2r_covariance(y). */
d2r_tensor *d2r_reward_full(d2r_tensor *y, double lambda, double ridge,
                            double max_cond, double *cond);

/*
 * U = (lambda / 2) Sigma^+ + null_weight P0: the pseudo-inverse, Sigma =
 * V diag(e) V^T (GSL's symmetric eigensolver) with every eigenvalue e_i
 * <= rtol max(e) treated as zero, plus null_weight >= 0 times the
 * projection P0 onto those directions.  A direction in which the targets
 * do not vary (a constant or collinear dimension) then gets the finite
 * weight null_weight instead of an exploding one: with 0 it gets no
 * reward at all (and a policy is free to drift there), with the
 * isotropic u* it is pulled to the data like every direction under
 * U = u* I.  On a well-conditioned Sigma it is the full U* above.  rtol
 * in (0, 1) (<= 0 selects 1e-6).  *dropped (may be NULL) receives the
 * number of directions treated as constant.  Fails on a Sigma that is
 * not square and symmetric, has a non-finite entry or is zero.
 */
d2r_tensor *d2r_reward_full_pinv(d2r_tensor *sigma, double lambda,
                                 double rtol, double null_weight,
                                 int64_t *dropped);

#endif
