/*
 * d2r tensors and reverse-mode autodiff: the public contract.
 *
 * A tensor is a dense float64 n-d array (up to D2R_MAXDIM dimensions) that
 * views a reference-counted storage through a shape, strides and an offset.
 * Strides count elements, not bytes.  Integer data (class labels, sample
 * indices) is stored as exact float64.
 *
 * Ownership.  Every function that returns a d2r_tensor * returns a new
 * reference that the caller must give back with d2r_release().  Tensor
 * arguments are borrowed: a function never releases what it was given.
 *
 * Errors.  A function that fails returns NULL (or a negative status) and
 * leaves a message in d2r_error().  A NULL tensor argument is taken to be
 * the result of an earlier failure: the function returns NULL at once and
 * keeps that earlier message, so a chain of calls can be checked once at
 * its end.  Nothing in the engine prints, exits or aborts.
 *
 * Autodiff.  While gradient recording is enabled (the default), an
 * operation whose inputs require gradients records a node on its output.
 * Backward rules are written with the same differentiable operations, so
 * gradients computed with create_graph set can be differentiated again
 * (Hessian-vector products, mixed second derivatives).
 *
 * Broadcasting follows NumPy: shapes are aligned on their last dimension;
 * a dimension of size 1 stretches to match.
 */
#ifndef D2R_TENSOR_H
#define D2R_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define D2R_MAXDIM 6

typedef struct d2r_tensor d2r_tensor;

/* ---- errors --------------------------------------------------------- */

/* The message of the most recent failure in this thread ("" if none). */
const char *d2r_error(void);
/* Sets the message (printf-style); always returns NULL for convenience. */
void *d2r_fail(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
void d2r_clear_error(void);

/* ---- references and introspection ------------------------------------ */

d2r_tensor *d2r_retain(d2r_tensor *t);   /* returns t; NULL-safe */
void d2r_release(d2r_tensor *t);         /* NULL-safe */

int d2r_ndim(const d2r_tensor *t);
const int64_t *d2r_shape(const d2r_tensor *t);
const int64_t *d2r_strides(const d2r_tensor *t);
/* Size of dimension axis; a negative axis counts from the end. -1 on error. */
int64_t d2r_dim(const d2r_tensor *t, int axis);
int64_t d2r_numel(const d2r_tensor *t);
bool d2r_is_contiguous(const d2r_tensor *t);
/* Pointer to the first element.  Valid while t is alive; for a
 * non-contiguous tensor, elements must be addressed through the strides. */
double *d2r_data(d2r_tensor *t);
/* The value of a one-element tensor (NAN with an error otherwise). */
double d2r_item(const d2r_tensor *t);
/* Reads or writes the element at a full index (one entry per dimension);
 * an index out of range fails with a message naming the dimension. */
int d2r_at(const d2r_tensor *t, const int64_t *index, double *out);
int d2r_set_at(d2r_tensor *t, const int64_t *index, double value);
/* Writes a shape like "[3, 4]" into buf (always NUL-terminated). */
const char *d2r_shape_str(const d2r_tensor *t, char *buf, size_t size);
/* True when the two tensors have the same shape. */
bool d2r_same_shape(const d2r_tensor *a, const d2r_tensor *b);

/* ---- creation (all contiguous, no gradient) -------------------------- */

d2r_tensor *d2r_empty(int ndim, const int64_t *shape);
d2r_tensor *d2r_zeros(int ndim, const int64_t *shape);
d2r_tensor *d2r_ones(int ndim, const int64_t *shape);
d2r_tensor *d2r_full(int ndim, const int64_t *shape, double value);
d2r_tensor *d2r_scalar(double value);                 /* 0-d tensor */
d2r_tensor *d2r_eye(int64_t n);
d2r_tensor *d2r_arange(double start, double stop, double step);
/* Copies count = prod(shape) values from data. */
d2r_tensor *d2r_from_data(int ndim, const int64_t *shape, const double *data);
d2r_tensor *d2r_zeros_like(const d2r_tensor *t);
d2r_tensor *d2r_ones_like(const d2r_tensor *t);
/* Short-hand shapes for tests and examples. */
d2r_tensor *d2r_vector(int64_t n, const double *data);
d2r_tensor *d2r_matrix(int64_t rows, int64_t cols, const double *data);

/* ---- autodiff state -------------------------------------------------- */

/* Marks a tensor as a leaf that collects gradients (or stops doing so).
 * Fails on a tensor that already has a recorded history. */
int d2r_set_requires_grad(d2r_tensor *t, bool requires);
bool d2r_requires_grad(const d2r_tensor *t);
/* The gradient accumulated by d2r_backward (new reference), or NULL
 * without an error if there is none yet.  It is contiguous and owns its
 * storage, so optimisers may update it in place. */
d2r_tensor *d2r_grad(const d2r_tensor *t);
void d2r_zero_grad(d2r_tensor *t);       /* drops the accumulated gradient */
/* Name of the operation that produced t, or NULL for a leaf. */
const char *d2r_op_name(const d2r_tensor *t);

/* Gradient recording: returns the previous setting. */
bool d2r_set_grad_enabled(bool enabled);
bool d2r_grad_enabled(void);

/* Anomaly detection (off by default; it costs a scan of every result):
 * an operation whose inputs are finite but whose output holds a NaN or an
 * infinity fails with a message naming the operation and the element, and
 * so does a backward rule that turns a finite gradient into a non-finite
 * one.  Returns the previous setting. */
bool d2r_set_detect_anomaly(bool enabled);
bool d2r_detect_anomaly_enabled(void);

/* A view of t that shares its storage but carries no history. */
d2r_tensor *d2r_detach(d2r_tensor *t);

/* Back-propagates from the scalar `loss`, adding d loss / d leaf to the
 * .grad of every leaf that requires a gradient.  Returns 0 or -1. */
int d2r_backward(d2r_tensor *loss);

/*
 * Gradients of sum_i <outputs[i], grad_outputs[i]> with respect to
 * inputs[0..nin).  grad_outputs may be NULL when every output is a scalar
 * (each then gets 1).  With create_graph, the results carry history and
 * can be differentiated again.  An input that the outputs do not depend on
 * gets a zero tensor when allow_unused is true, and is an error otherwise.
 * On success grads[0..nin) hold new references; returns 0 or -1.
 */
int d2r_autograd(int nout, d2r_tensor *const *outputs,
                 d2r_tensor *const *grad_outputs, int nin,
                 d2r_tensor *const *inputs, bool create_graph,
                 bool allow_unused, d2r_tensor **grads);

/* ---- views (share storage; differentiable) --------------------------- */

/* Reshape; one entry of shape may be -1.  A non-contiguous input is
 * copied first. */
d2r_tensor *d2r_reshape(d2r_tensor *t, int ndim, const int64_t *shape);
d2r_tensor *d2r_transpose(d2r_tensor *t, int axis0, int axis1);
/* Elements start, start+step, ... < stop along axis (step >= 1; negative
 * start/stop count from the end). */
d2r_tensor *d2r_slice(d2r_tensor *t, int axis, int64_t start, int64_t stop,
                      int64_t step);
d2r_tensor *d2r_unsqueeze(d2r_tensor *t, int axis);
d2r_tensor *d2r_squeeze(d2r_tensor *t, int axis);
/* Broadcasts t to a larger shape (stride 0 where stretched). */
d2r_tensor *d2r_expand(d2r_tensor *t, int ndim, const int64_t *shape);
d2r_tensor *d2r_contiguous(d2r_tensor *t);  /* t itself (retained) if so */
d2r_tensor *d2r_clone(d2r_tensor *t);       /* a differentiable copy */

/* ---- indexing (copies; differentiable in the values) ----------------- */

/* Rows of t along axis 0 picked by the integer-valued 1-d tensor index;
 * for a 1-d t the rows are its elements. */
d2r_tensor *d2r_take_rows(d2r_tensor *t, const d2r_tensor *index);
/* Adds the rows of src into a zero tensor of `rows` rows at index. */
d2r_tensor *d2r_index_add_rows(int64_t rows, const d2r_tensor *index,
                               d2r_tensor *src);
/* out[i][j][k] = t[i][index[i][j][k]][k] for axis 1 (as torch.gather);
 * index has t's number of dimensions, and every dimension other than
 * axis no larger than t's. */
d2r_tensor *d2r_gather(d2r_tensor *t, int axis, const d2r_tensor *index);
/* The adjoint of gather: zeros of `shape`, src added at index. */
d2r_tensor *d2r_scatter_add(int ndim, const int64_t *shape, int axis,
                            const d2r_tensor *index, d2r_tensor *src);
/* 0 when every element of idx is an integer in [0, bound); else -1 with
 * a message naming fn, the element (counting from 1) and its value. */
int d2r_check_index(const d2r_tensor *idx, int64_t bound, const char *fn);
/* Concatenates along axis. */
d2r_tensor *d2r_cat(int n, d2r_tensor *const *ts, int axis);
/* One-hot encoding of integer-valued t: shape t.shape + [classes]. */
d2r_tensor *d2r_one_hot(const d2r_tensor *t, int64_t classes);

/* ---- elementwise (broadcasting where binary) ------------------------- */

d2r_tensor *d2r_add(d2r_tensor *a, d2r_tensor *b);
d2r_tensor *d2r_sub(d2r_tensor *a, d2r_tensor *b);
d2r_tensor *d2r_mul(d2r_tensor *a, d2r_tensor *b);
d2r_tensor *d2r_div(d2r_tensor *a, d2r_tensor *b);
d2r_tensor *d2r_pow(d2r_tensor *a, d2r_tensor *b);     /* a^b, a > 0 for b */
d2r_tensor *d2r_maximum(d2r_tensor *a, d2r_tensor *b);
d2r_tensor *d2r_minimum(d2r_tensor *a, d2r_tensor *b);
d2r_tensor *d2r_adds(d2r_tensor *a, double s);          /* a + s */
d2r_tensor *d2r_muls(d2r_tensor *a, double s);          /* a * s */
d2r_tensor *d2r_pows(d2r_tensor *a, double p);          /* a ^ p */
d2r_tensor *d2r_rsubs(d2r_tensor *a, double s);         /* s - a */

d2r_tensor *d2r_neg(d2r_tensor *t);
d2r_tensor *d2r_exp(d2r_tensor *t);
d2r_tensor *d2r_log(d2r_tensor *t);
d2r_tensor *d2r_log1p(d2r_tensor *t);
d2r_tensor *d2r_sqrt(d2r_tensor *t);
d2r_tensor *d2r_square(d2r_tensor *t);
d2r_tensor *d2r_abs(d2r_tensor *t);
d2r_tensor *d2r_sign(d2r_tensor *t);                    /* no gradient */
d2r_tensor *d2r_tanh(d2r_tensor *t);
d2r_tensor *d2r_sigmoid(d2r_tensor *t);
d2r_tensor *d2r_relu(d2r_tensor *t);
d2r_tensor *d2r_softplus(d2r_tensor *t);                /* log(1 + e^t) */
d2r_tensor *d2r_sin(d2r_tensor *t);
d2r_tensor *d2r_cos(d2r_tensor *t);
/* Clamps into [lo, hi]; pass -INFINITY / INFINITY for one side. */
d2r_tensor *d2r_clamp(d2r_tensor *t, double lo, double hi);

/* Comparisons give 1.0 or 0.0 and carry no gradient. */
d2r_tensor *d2r_eq(d2r_tensor *a, d2r_tensor *b);
d2r_tensor *d2r_ne(d2r_tensor *a, d2r_tensor *b);
d2r_tensor *d2r_lt(d2r_tensor *a, d2r_tensor *b);
d2r_tensor *d2r_le(d2r_tensor *a, d2r_tensor *b);
d2r_tensor *d2r_gt(d2r_tensor *a, d2r_tensor *b);
d2r_tensor *d2r_ge(d2r_tensor *a, d2r_tensor *b);
/* cond != 0 ? a : b, broadcasting all three; differentiable in a and b. */
d2r_tensor *d2r_where(const d2r_tensor *cond, d2r_tensor *a, d2r_tensor *b);
/* Number of NaN or infinite elements. */
int64_t d2r_count_nonfinite(const d2r_tensor *t);

/* ---- reductions ------------------------------------------------------ */

/* Over one axis (negative counts from the end), keeping it as size 1 when
 * keepdim is set. */
d2r_tensor *d2r_sum(d2r_tensor *t, int axis, bool keepdim);
d2r_tensor *d2r_mean(d2r_tensor *t, int axis, bool keepdim);
d2r_tensor *d2r_max(d2r_tensor *t, int axis, bool keepdim);
d2r_tensor *d2r_min(d2r_tensor *t, int axis, bool keepdim);
d2r_tensor *d2r_argmax(const d2r_tensor *t, int axis, bool keepdim);
d2r_tensor *d2r_logsumexp(d2r_tensor *t, int axis, bool keepdim);
/* Variance with the given correction (0: population, 1: unbiased). */
d2r_tensor *d2r_var(d2r_tensor *t, int axis, bool keepdim, int correction);
/* Over all elements, giving a 0-d tensor. */
d2r_tensor *d2r_sum_all(d2r_tensor *t);
d2r_tensor *d2r_mean_all(d2r_tensor *t);
d2r_tensor *d2r_max_all(d2r_tensor *t);
d2r_tensor *d2r_min_all(d2r_tensor *t);
/* Sums t down to a shape it was broadcast from. */
d2r_tensor *d2r_sum_to(d2r_tensor *t, int ndim, const int64_t *shape);
/* t - logsumexp(t, axis): log-probabilities from logits. */
d2r_tensor *d2r_log_softmax(d2r_tensor *t, int axis);
d2r_tensor *d2r_softmax(d2r_tensor *t, int axis);

/* ---- linear algebra -------------------------------------------------- */

/* Matrix product through BLAS: [m,k] x [k,n]; batched over a leading
 * dimension when both are 3-d ([b,m,k] x [b,k,n]) or when a is 3-d and b
 * 2-d.  A 1-d b is treated as a column and the result squeezed. */
d2r_tensor *d2r_matmul(d2r_tensor *a, d2r_tensor *b);
/* x @ w + bias for x [m, k], w [k, n] and bias [n] added to every row:
 * one op (the output starts as the bias and the product is added to it
 * in place), what a linear layer computes. */
d2r_tensor *d2r_addmm(d2r_tensor *x, d2r_tensor *w, d2r_tensor *bias);
/* relu(x @ w + bias), a hidden layer, as one op: the values of addmm
 * then relu, with one node and no intermediate tensor. */
d2r_tensor *d2r_addmm_relu(d2r_tensor *x, d2r_tensor *w, d2r_tensor *bias);

/* The BLAS underneath (OpenBLAS): its thread count (n > 0 sets it;
 * returns the count in force; n = 1 also stops OpenBLAS's idle thread
 * pool, which would otherwise poll the cores, and a later larger count
 * starts it again) and the name of the kernel set it chose for this
 * processor (e.g. "Haswell", "SkylakeX", or "Prescott" when it fell back
 * to generic kernels). */
int d2r_blas_threads(int n);
const char *d2r_blas_corename(void);

/* ---- in-place updates (never recorded; for optimisers and data) ------- */

int d2r_copy_(d2r_tensor *dst, const d2r_tensor *src);  /* same numel */
int d2r_fill_(d2r_tensor *t, double value);
/* t += alpha * x (same shape). */
int d2r_axpy_(d2r_tensor *t, double alpha, const d2r_tensor *x);
int d2r_scale_(d2r_tensor *t, double alpha);
/* Marks t (its storage, views included) as updated in place, as the
 * functions above do: for code that writes through d2r_data.  A backward
 * pass through a graph that read t before fails instead of using the new
 * values. */
void d2r_mark_updated(d2r_tensor *t);

/* ---- memory kept for reuse --------------------------------------------- */

/* Freed tensors, graph nodes and data blocks are kept per thread, by
 * size, for the next step to reuse (bounded by 64 MiB or by twice the
 * most tensor data the thread has held at once, whichever is larger;
 * sanitizer builds keep none).  d2r_cache_bytes tells how much this
 * thread keeps; d2r_cache_trim gives it all back to the system and
 * forgets the peak (call it before a thread exits, or after a big job). */
size_t d2r_cache_bytes(void);
void d2r_cache_trim(void);
/* Bytes of tensor data this thread holds alive (a host with a garbage
 * collector uses it to know when dead tensors cost memory). */
size_t d2r_live_bytes(void);

/* ---- scoped temporaries ---------------------------------------------- */

/*
 * Engine code that chains many operations keeps its temporaries in a
 * scope and releases them together:
 *
 *     d2r_scope s = D2R_SCOPE_INIT;
 *     d2r_tensor *y = d2r_keep(&s, d2r_exp(d2r_keep(&s, d2r_neg(x))));
 *     d2r_tensor *result = d2r_retain(y);
 *     d2r_scope_end(&s);
 *
 * d2r_keep returns its argument (NULL stays NULL), so failures propagate
 * to the end of the chain.
 */
typedef struct d2r_scope {
  d2r_tensor **items;
  int n, cap;
  d2r_tensor *inline_items[32];
} d2r_scope;
#define D2R_SCOPE_INIT {NULL, 0, 32, {NULL}}
d2r_tensor *d2r_keep(d2r_scope *s, d2r_tensor *t);
void d2r_scope_end(d2r_scope *s);

#endif
