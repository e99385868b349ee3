/*
 * The Gaussian case of METHOD.md in closed form: data q = N(mu, Sigma),
 * a Gaussian policy N(m, S), the Mahalanobis reward
 *   r_U(yhat, y) = -(yhat - y)^T U (yhat - y)
 * and the entropy weight lambda.
 *
 *   expected reward, y fixed:  E_{yhat ~ N(m, S)} r_U
 *                                = -(m - y)^T U (m - y) - tr(U S)
 *   averaged over y ~ q:       -(m - mu)^T U (m - mu) - tr(U S)
 *                                - tr(U Sigma)
 *   inner objective:           J(m, S) = the average above
 *                                + (lambda / 2) log det(2 pi e S)
 *   inner optimum:             m* = mu, S*(U) = (lambda / 2) U^-1
 *   outer objective:           F(U) = E_{y ~ q}[-log N(y; mu, S*(U))],
 *                              minimised at U* = (lambda / 2) Sigma^-1
 *
 * J is the entropy-regularised PG objective in expectation (the entropy
 * of N(m, S) is (1/2) log det(2 pi e S)); setting its derivatives to
 * zero, -2 U (m - mu) = 0 and -U + (lambda / 2) S^-1 = 0, gives the
 * inner optimum.  F is the Gaussian cross-entropy of the data under the
 * policy that the inner problem returns.
 *
 * Shapes: vectors (means, targets) are [n], matrices [n, n]; U, S and
 * Sigma are symmetric positive definite (U and S are factorised by
 * Cholesky where inverted; a matrix that is not fails with linalg.h's
 * message).  Results are 0-d unless stated, in nats, joint over the n
 * dimensions; where a reduce argument is taken, D2R_REDUCE_MEAN_DIMS
 * divides by n (the per-dimension convention) and D2R_REDUCE_SUM_DIMS
 * keeps the joint value.  Every function is differentiable in its
 * tensor arguments, to second order.
 *
 * Ownership and errors follow tensor.h: new references, borrowed
 * arguments, NULL with a message in d2r_error(), NULL arguments
 * propagate.
 */
#ifndef D2R_THEORY_H
#define D2R_THEORY_H

#include "d2r/dist.h"
#include "d2r/tensor.h"

/* S*(U) = (lambda / 2) U^-1 [n, n]; lambda > 0. */
d2r_tensor *d2r_theory_inner_cov(d2r_tensor *U, double lambda);

/* U* = (lambda / 2) Sigma^-1 [n, n] for a known Sigma; lambda > 0.  (For
 * a Sigma estimated from data, see d2r_reward_full in closed_form.h.) */
d2r_tensor *d2r_theory_optimal_reward(d2r_tensor *Sigma, double lambda);

/* -(m - y)^T U (m - y) - tr(U S): 0-d for y [n], [N] for y [N, n]. */
d2r_tensor *d2r_theory_expected_reward(d2r_tensor *m, d2r_tensor *S,
                                       d2r_tensor *y, d2r_tensor *U);

/* -(m - mu)^T U (m - mu) - tr(U S) - tr(U Sigma). */
d2r_tensor *d2r_theory_expected_reward_data(d2r_tensor *m, d2r_tensor *S,
                                            d2r_tensor *mu,
                                            d2r_tensor *Sigma,
                                            d2r_tensor *U);

/* J(m, S) as above; lambda >= 0. */
d2r_tensor *d2r_theory_inner_objective(d2r_tensor *m, d2r_tensor *S,
                                       d2r_tensor *mu, d2r_tensor *Sigma,
                                       d2r_tensor *U, double lambda);

/* Entropy (1/2) log det(2 pi e S) of N(., S). */
d2r_tensor *d2r_theory_entropy(d2r_tensor *S, d2r_reduce reduce);

/*
 * Cross-entropy E_{y ~ N(mu, Sigma)}[-log N(y; m, S)]
 *   = (1/2) [n log(2 pi) + log det S + tr(S^-1 Sigma)
 *            + (mu - m)^T S^-1 (mu - m)],
 * the expected NLL of the data under the policy N(m, S).
 */
d2r_tensor *d2r_theory_cross_entropy(d2r_tensor *mu, d2r_tensor *Sigma,
                                     d2r_tensor *m, d2r_tensor *S,
                                     d2r_reduce reduce);

/*
 * The outer objective F(U), the cross-entropy at (m*, S*(U)):
 *   (1/2) [n log(2 pi) + n log(lambda / 2) - log det U
 *          + (2 / lambda) tr(U Sigma)];
 * its gradient (1/2) [-U^-1 + (2 / lambda) Sigma] vanishes at U*.
 * lambda > 0.
 */
d2r_tensor *d2r_theory_outer_objective(d2r_tensor *U, d2r_tensor *Sigma,
                                       double lambda, d2r_reduce reduce);

/*
 * KL(N(m1, S1) || N(m2, S2))
 *   = (1/2) [tr(S2^-1 S1) + (m2 - m1)^T S2^-1 (m2 - m1) - n
 *            + log det S2 - log det S1];
 * swap the arguments for the other direction.
 */
d2r_tensor *d2r_theory_kl(d2r_tensor *m1, d2r_tensor *S1, d2r_tensor *m2,
                          d2r_tensor *S2);

#endif
