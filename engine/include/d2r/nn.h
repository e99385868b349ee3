/*
 * Models: linear layers, MLPs, a small generic model interface, parameter
 * lists as one flat vector, and a checked binary format for parameters.
 *
 * Ownership.  A d2r_model is reference-counted: constructors return one
 * reference, d2r_model_release gives it back.  A model owns references
 * to its parameter tensors; d2r_model_params hands out borrowed pointers
 * that stay valid while the model is alive.  Functions returning a
 * d2r_tensor * return a new reference (release it with d2r_release).
 *
 * Errors follow tensor.h: NULL or a negative status, with a message in
 * d2r_error().  A NULL tensor or model argument is taken to be an earlier
 * failure and propagates (its message is kept).
 *
 * Parameters are contiguous leaf tensors with requires_grad set, in a
 * fixed order (for an MLP: W0, b0, W1, b1, ...).  A parameter list is
 * passed as a count n and an array of n borrowed tensor pointers.
 */
#ifndef D2R_NN_H
#define D2R_NN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "d2r/rng.h"
#include "d2r/tensor.h"

/* ---- activations ------------------------------------------------------ */

typedef enum d2r_activation {
  D2R_ACT_IDENTITY = 0,  /* no activation */
  D2R_ACT_RELU,
  D2R_ACT_TANH,
  D2R_ACT_SIGMOID,
  D2R_ACT_SOFTPLUS
} d2r_activation;

/* Name of an activation ("identity", "relu", "tanh", "sigmoid",
 * "softplus"), or NULL for a value outside the enum. */
const char *d2r_activation_name(d2r_activation act);
/* Parses a name as above ("none" is accepted for identity).  Returns 0
 * and sets *out, or -1 with an error naming the unknown activation. */
int d2r_activation_parse(const char *name, d2r_activation *out);
/* The activation applied elementwise (new reference, differentiable);
 * identity returns x itself, retained. */
d2r_tensor *d2r_activate(d2r_tensor *x, d2r_activation act);

/* ---- generic models ---------------------------------------------------- */

typedef struct d2r_model d2r_model;

/*
 * What a kind of model provides.  forward maps x to the output using the
 * given parameter tensors (which have the shapes of the model's own; the
 * caller has checked them) and returns a new reference or NULL with an
 * error.  free_impl (may be NULL) releases impl when the model dies.
 * The ops structure must outlive every model built on it (use a static).
 */
typedef struct d2r_model_ops {
  const char *kind;
  d2r_tensor *(*forward)(void *impl, d2r_tensor *const *params,
                         d2r_tensor *x);
  void (*free_impl)(void *impl);
} d2r_model_ops;

/*
 * A model over n parameters: retains each of params[0..n), takes
 * ownership of impl (freed through ops->free_impl, also on failure), and
 * records the input and output feature sizes.  NULL on a NULL parameter,
 * a parameter that is not a contiguous leaf, or allocation failure.
 */
d2r_model *d2r_model_new(const d2r_model_ops *ops, void *impl, int n,
                         d2r_tensor *const *params, int64_t in_features,
                         int64_t out_features);
d2r_model *d2r_model_retain(d2r_model *m);  /* returns m; NULL-safe */
void d2r_model_release(d2r_model *m);       /* NULL-safe */

const char *d2r_model_kind(const d2r_model *m);
int64_t d2r_model_in_features(const d2r_model *m);
int64_t d2r_model_out_features(const d2r_model *m);
/* The impl pointer given to d2r_model_new (borrowed). */
void *d2r_model_impl(const d2r_model *m);
int d2r_model_nparams(const d2r_model *m);
/* The parameter tensors (borrowed; valid while m is alive). */
d2r_tensor *const *d2r_model_params(const d2r_model *m);
/* Total number of scalar parameters P. */
int64_t d2r_model_numel(const d2r_model *m);

/* The model applied to x (shape as the kind documents): new reference. */
d2r_tensor *d2r_model_forward(d2r_model *m, d2r_tensor *x);
/*
 * The model applied to x with other parameter tensors in place of its
 * own: params[0..nparams) must have the shapes of d2r_model_params, and
 * may carry history (e.g. the result of differentiable updates, for
 * unrolled differentiation).  New reference, or NULL on a shape error.
 */
d2r_tensor *d2r_model_call(d2r_model *m, d2r_tensor *const *params,
                           d2r_tensor *x);

/* ---- linear layers and MLPs -------------------------------------------- */

/*
 * x @ w + b on the last dimension: x is [..., in] (at least 1-d), w is
 * [in, out], b is [out] or NULL; the result is [..., out].  Leading
 * dimensions are flattened for the product and restored.  New reference.
 */
d2r_tensor *d2r_linear_forward(d2r_tensor *x, d2r_tensor *w, d2r_tensor *b);

/*
 * A linear layer with weight [in, out] and, if bias, a bias [out], both
 * drawn uniform in [-1/sqrt(in), 1/sqrt(in)) from rng (weight first, row
 * by row, then bias).  Parameters: {W} or {W, b}.  Forward as
 * d2r_linear_forward.  NULL on in < 1, out < 1 or a NULL rng.
 */
d2r_model *d2r_linear_new(int64_t in, int64_t out, bool bias, d2r_rng *rng);

/*
 * A multilayer perceptron in -> hidden[0] -> ... -> hidden[nhidden-1] ->
 * out made of linear layers with biases (initialised as d2r_linear_new,
 * layer by layer), with act applied after every layer but the last.
 * nhidden may be 0 (one linear layer; hidden may then be NULL).
 * Parameters: W0, b0, W1, b1, ...  Forward maps [..., in] to [..., out].
 */
d2r_model *d2r_mlp_new(int64_t in, int nhidden, const int64_t *hidden,
                       int64_t out, d2r_activation act, d2r_rng *rng);
/* Number of linear layers of an MLP (or of a linear model: 1); -1 with
 * an error for other kinds. */
int d2r_mlp_nlayers(const d2r_model *m);
/* The activation between layers of an MLP (identity for a linear model,
 * and identity with an error for other kinds). */
d2r_activation d2r_mlp_activation(const d2r_model *m);

/* ---- parameter lists as flat vectors ----------------------------------- */

/* Total number of elements of params[0..n); -1 on a NULL entry. */
int64_t d2r_params_numel(int n, d2r_tensor *const *params);
/* A new [P] tensor holding a copy of all values, in list order, each
 * tensor in row-major order.  No history. */
d2r_tensor *d2r_params_flatten(int n, d2r_tensor *const *params);
/* Copies the [P] vector flat (not modified) back into the parameters, in
 * the order of d2r_params_flatten.  Not recorded by autodiff.  Fails,
 * changing nothing, when flat is not 1-d with P elements.  0 or -1. */
int d2r_params_assign_flat(int n, d2r_tensor *const *params,
                           d2r_tensor *flat);
/* A new [P] tensor of the accumulated gradients in the same order; a
 * parameter without a gradient contributes zeros.  No history. */
d2r_tensor *d2r_params_grad_flat(int n, d2r_tensor *const *params);
/* The differentiable concatenation of the tensors reshaped to 1-d: a new
 * [P] tensor that carries history (for Hessian-vector products). */
d2r_tensor *d2r_params_cat(int n, d2r_tensor *const *tensors);
/* Drops the accumulated gradient of each parameter. */
void d2r_params_zero_grad(int n, d2r_tensor *const *params);

/* ---- parameter files --------------------------------------------------- */

/*
 * The D2RP format, version 1; integers are unsigned little-endian:
 *
 *   offset  size  field
 *   0       4     magic "D2RP"
 *   4       4     version (1)
 *   8       4     count: number of tensors
 *   12      4     flags (0)
 *   16      8     total file length in bytes
 *   24      ...   count records: ndim (4 bytes), ndim dimensions (8 bytes
 *                 each), then the values in row-major order as IEEE-754
 *                 float64, little-endian
 *   end-4   4     CRC-32 (IEEE 802.3, as zlib's crc32) of bytes [0, end-4)
 */
#define D2R_PARAMS_MAGIC "D2RP"
#define D2R_PARAMS_VERSION 1

/* CRC-32 of buf[0..size) continuing from crc (start with 0). */
uint32_t d2r_crc32(uint32_t crc, const void *buf, size_t size);

/*
 * Writes params[0..n) to path atomically: the data goes to a new
 * temporary file in the same directory, is flushed and synced, and is
 * renamed over path (then the directory is synced).  On failure path is
 * untouched and the temporary file removed.  The file gets mode 0666
 * minus the umask.  0 or -1 with an error naming the file.
 */
int d2r_params_save(const char *path, int n, d2r_tensor *const *params);

/*
 * Reads path into params[0..n).  The file must be a whole, valid D2RP
 * file (magic, version, declared length equal to the file length,
 * checksum) holding exactly n tensors whose shapes equal those of the
 * parameters.  On any failure, nothing is modified and the error names
 * the file and the problem.  0 or -1.
 */
int d2r_params_load(const char *path, int n, d2r_tensor *const *params);

/*
 * Reads every tensor of a valid D2RP file: on success *count is set and
 * *tensors points to a malloc'd array of *count new tensor references
 * (release each, then free the array).  0 or -1 (nothing to free).
 */
int d2r_params_read(const char *path, int *count, d2r_tensor ***tensors);

/* d2r_params_save / d2r_params_load over the parameters of a model. */
int d2r_model_save(d2r_model *m, const char *path);
int d2r_model_load(d2r_model *m, const char *path);

#endif
