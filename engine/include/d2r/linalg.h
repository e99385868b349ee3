/*
 * Dense linear algebra on small matrices, differentiable to second order:
 * Cholesky factors, triangular and general solves, inverses, log
 * determinants, and the diagonal and triangle helpers they are built from.
 *
 * Shapes.  A matrix argument is [n, n], or a batch [b, n, n] of b
 * matrices handled independently (the helpers diag, diag_part, tril, triu
 * and trace accept any number of leading batch dimensions).  A right-hand
 * side B for a matrix of shape [n, n] is [n, k] (k columns) or [n] (one
 * vector); for a batch [b, n, n] it is [b, n, k] or [b, n].  The solution
 * has B's shape.
 *
 * Ownership and errors follow tensor.h: every tensor returned is a new
 * reference; arguments are borrowed; a failure returns NULL with a message
 * in d2r_error(), and a NULL argument returns NULL at once, keeping the
 * earlier message.  Messages count matrices of a batch, rows and columns
 * from 1.
 *
 * The factorising operations (cholesky, logdet_spd, solve, inverse,
 * logdet, slogdet) fail on a matrix with a NaN or infinite entry, naming
 * it.  Those built on LU (solve, inverse, logdet, slogdet) also fail on a
 * matrix that is singular to working precision: an exact zero pivot, or
 * a LAPACK estimate (dgecon, 1-norm) of the reciprocal condition number
 * below DBL_EPSILON.
 *
 * Gradients.  Every operation records its backward rule written with
 * these same differentiable operations, so gradients can be
 * differentiated again.  Where a function reads only part of its input,
 * its gradient is that of the function actually computed: zero on a
 * triangle that is not read, symmetric where only (A + A^T) / 2 is used.
 */
#ifndef D2R_LINALG_H
#define D2R_LINALG_H

#include <stdbool.h>
#include <stdint.h>

#include "d2r/tensor.h"

/* ---- factorisations and solves ---------------------------------------- */

/*
 * The lower-triangular Cholesky factor L of A [n, n] or [b, n, n]:
 * A = L L^T, positive diagonal, zeros above it; same shape as A.
 * A is first symmetrised, (A + A^T) / 2, so a matrix with rounding
 * asymmetry is accepted and the gradient is symmetric; pass a symmetric
 * matrix.  Fails when A is not square, has a non-finite entry, or is not
 * positive definite; the message names the order of the first leading
 * minor that is not positive (and the matrix of a batch).
 */
d2r_tensor *d2r_cholesky(d2r_tensor *a);

/*
 * X solving T X = B (or T^T X = B when transpose is set), where T [n, n]
 * or [b, n, n] is lower triangular when lower is set and upper
 * triangular otherwise.  Only that triangle of T (diagonal included) is
 * read; its gradient is zero on the other one.  B is a right-hand side
 * as described above; X has B's shape.  Fails on mismatched shapes and on
 * a zero on T's diagonal; NaN and infinite entries propagate.
 */
d2r_tensor *d2r_tri_solve(d2r_tensor *t, d2r_tensor *b, bool lower,
                          bool transpose);

/* A^-1 B from the Cholesky factor l = cholesky(A): two triangular solves,
 * L^-T (L^-1 B).  Shapes and errors as d2r_tri_solve. */
d2r_tensor *d2r_cholesky_solve(d2r_tensor *l, d2r_tensor *b);

/*
 * X solving A X = B for a general square A [n, n] or [b, n, n], by LU
 * with partial pivoting (LAPACK dgetrf/dgetrs).  X has B's shape.  Fails
 * on non-square A, mismatched B, non-finite entries in A, and a singular
 * A (see above).
 */
d2r_tensor *d2r_solve(d2r_tensor *a, d2r_tensor *b);

/* A^-1, same shape as A, by LU.  Errors as d2r_solve. */
d2r_tensor *d2r_inverse(d2r_tensor *a);

/* ---- determinants ---------------------------------------------------- */

/*
 * log det A for a symmetric positive definite A, as 2 sum log diag L with
 * L = cholesky(A): a 0-d tensor for [n, n], [b] for [b, n, n].  Errors
 * as d2r_cholesky; the gradient is sym(A)^-1 (A^-1 for a symmetric A).
 */
d2r_tensor *d2r_logdet_spd(d2r_tensor *a);

/*
 * log |det A| for a general square A, by LU: a 0-d tensor for [n, n],
 * [b] for [b, n, n].  When sign is not NULL, *sign receives a new
 * reference to a tensor of the result's shape holding the sign of each
 * determinant (+1 or -1, no gradient); on failure *sign is set to NULL.
 * The gradient is A^-T.  Errors as d2r_solve.
 */
d2r_tensor *d2r_slogdet(d2r_tensor *a, d2r_tensor **sign);

/* log det A for a general square A whose determinant is positive:
 * d2r_slogdet that also fails, naming the matrix, when a determinant is
 * negative. */
d2r_tensor *d2r_logdet(d2r_tensor *a);

/*
 * Whether d2r_cholesky would succeed on A [n, n] or [b, n, n]: 1 when
 * (the symmetric part of) every matrix is positive definite, 0 when one
 * is not or has a non-finite entry (the reason is then left in
 * d2r_error()), -1 on a NULL or non-square argument.  When rcond is not
 * NULL it receives LAPACK's dpocon estimate of the reciprocal condition
 * number in the 1-norm, 1 / (|A|_1 |A^-1|_1), of the symmetric part (the
 * smallest over a batch), or 0 when the result is not 1.  Records
 * nothing.
 */
int d2r_spd_check(const d2r_tensor *a, double *rcond);

/* ---- helpers --------------------------------------------------------- */

/* The square matrix with v on its diagonal: v [..., n] -> [..., n, n]. */
d2r_tensor *d2r_diag(d2r_tensor *v);

/* The main diagonal of A [..., r, c] (r and c may differ):
 * [..., min(r, c)]. */
d2r_tensor *d2r_diag_part(d2r_tensor *a);

/* A [..., r, c] with the entries above diagonal k set to zero (kept:
 * column - row <= k; k = 0 keeps the main diagonal, k = -1 drops it). */
d2r_tensor *d2r_tril(d2r_tensor *a, int64_t k);

/* A [..., r, c] with the entries below diagonal k set to zero (kept:
 * column - row >= k). */
d2r_tensor *d2r_triu(d2r_tensor *a, int64_t k);

/* Sum of the main diagonal of A [..., r, c]: a tensor of shape [...]
 * (0-d for one matrix). */
d2r_tensor *d2r_trace(d2r_tensor *a);

/* The symmetric part (A + A^T) / 2 of a square A [n, n] or [b, n, n]. */
d2r_tensor *d2r_sym(d2r_tensor *a);

#endif
