/*
 * Optimisers (SGD with momentum, Adam, AdamW) over a list of parameter
 * tensors, gradient clipping, a reduce-on-plateau learning-rate schedule
 * and early stopping.  The update rules and defaults are PyTorch's.
 *
 * Ownership.  d2r_optim, d2r_plateau and d2r_early_stop objects are made
 * by their *_new function and freed by their *_free function (NULL-safe).
 * An optimiser retains its parameters; the other objects hold none.
 * Borrowed pointers handed out (parameters, state buffers) stay valid
 * while the object is alive.
 *
 * Parameters must be contiguous leaf tensors.  A step reads each one's
 * accumulated gradient (d2r_grad) and updates its values in place through
 * d2r_data; the update is not recorded by autodiff.  A parameter without
 * a gradient is skipped, as PyTorch skips a parameter whose .grad is None
 * (its step count and buffers do not move).
 *
 * Errors follow tensor.h: NULL or a negative status, with a message in
 * d2r_error().
 */
#ifndef D2R_OPTIM_H
#define D2R_OPTIM_H

#include <stdbool.h>
#include <stdint.h>

#include "d2r/tensor.h"

/* ---- configurations ----------------------------------------------------- */

/* torch.optim.SGD: with g the gradient plus weight_decay * p,
 *   buf = g at a parameter's first step, then
 *   buf = momentum * buf + (1 - dampening) * g;
 *   d = nesterov ? g + momentum * buf : buf   (d = g when momentum is 0);
 *   p -= lr * d.
 * nesterov needs momentum > 0 and dampening 0. */
typedef struct d2r_sgd_config {
  double lr;
  double momentum;
  double dampening;
  double weight_decay;
  bool nesterov;
} d2r_sgd_config;

/* torch.optim.Adam (decoupled false) or AdamW (decoupled true): at a
 * parameter's step t (from 1), with g its gradient,
 *   Adam:  g += weight_decay * p;     AdamW:  p *= 1 - lr * weight_decay;
 *   m = lerp(m, g, 1 - beta1);  v = beta2 * v + (1 - beta2) * g * g;
 *   step = lr / (1 - beta1^t);
 *   denom = sqrt(v) / sqrt(1 - beta2^t) + eps;
 *   p -= step * m / denom.
 * lerp(a, b, w) is a + w * (b - a) for w < 0.5, else b - (b - a) * (1 - w),
 * as torch.lerp computes it. */
typedef struct d2r_adam_config {
  double lr;
  double beta1, beta2;
  double eps;
  double weight_decay;
  bool decoupled;
} d2r_adam_config;

/* SGD with the given lr and no momentum, dampening or weight decay. */
d2r_sgd_config d2r_sgd_defaults(double lr);
/* PyTorch's Adam defaults: lr 1e-3, betas 0.9 and 0.999, eps 1e-8, no
 * weight decay, not decoupled. */
d2r_adam_config d2r_adam_defaults(void);
/* PyTorch's AdamW defaults: as Adam, with weight decay 1e-2, decoupled. */
d2r_adam_config d2r_adamw_defaults(void);

/* ---- optimisers --------------------------------------------------------- */

typedef struct d2r_optim d2r_optim;

typedef enum d2r_optim_kind { D2R_OPTIM_SGD, D2R_OPTIM_ADAM } d2r_optim_kind;

/*
 * An optimiser over params[0..n) (each retained).  The configuration is
 * copied.  NULL on a NULL or non-contiguous or non-leaf parameter, or an
 * invalid setting (a negative or non-finite lr, momentum, weight decay or
 * eps, a beta outside [0, 1), nesterov without momentum or with
 * dampening).
 */
d2r_optim *d2r_sgd_new(int n, d2r_tensor *const *params,
                       const d2r_sgd_config *config);
d2r_optim *d2r_adam_new(int n, d2r_tensor *const *params,
                        const d2r_adam_config *config);
void d2r_optim_free(d2r_optim *o);

d2r_optim_kind d2r_optim_get_kind(const d2r_optim *o);
/* "sgd", "adam" or "adamw". */
const char *d2r_optim_name(const d2r_optim *o);
int d2r_optim_nparams(const d2r_optim *o);
/* The parameter tensors (borrowed). */
d2r_tensor *const *d2r_optim_params(const d2r_optim *o);

/* One update of every parameter that has a gradient.  A non-finite
 * gradient is applied as it is (check it beforehand with
 * d2r_grads_nonfinite).  Fails, changing nothing, when a gradient's size
 * differs from its parameter's.  0 or -1. */
int d2r_optim_step(d2r_optim *o);
/* Drops the accumulated gradient of every parameter. */
void d2r_optim_zero_grad(d2r_optim *o);

double d2r_optim_lr(const d2r_optim *o);
/* Sets the learning rate (finite, >= 0); 0 or -1. */
int d2r_optim_set_lr(d2r_optim *o, double lr);

/* ---- optimiser state, for checkpoints ----------------------------------- */

/*
 * Per parameter i the state is a step count (the number of steps that
 * updated it) and nbuffers buffers shaped like the parameter: for SGD
 * with momentum, the momentum buffer (1); for SGD without momentum,
 * none (0); for Adam, the first and second moments m and v (2).  Buffers
 * are zero until the parameter's first step.
 */
int d2r_optim_nbuffers(const d2r_optim *o);
/* Steps taken by parameter i (-1 with an error on a bad index). */
int64_t d2r_optim_param_steps(const d2r_optim *o, int i);
/* Buffer k of parameter i (borrowed; changing its values in place
 * changes the optimiser's state), or NULL with an error. */
d2r_tensor *d2r_optim_buffer(const d2r_optim *o, int i, int k);
/* The whole state as one vector: the n step counts, then for each
 * parameter in order its buffers in order, each flattened row-major.
 * Its length is n + nbuffers * P.  New reference, no history. */
d2r_tensor *d2r_optim_state_flat(const d2r_optim *o);
/* Restores a vector made by d2r_optim_state_flat for the same parameter
 * shapes and kind (step counts must be non-negative integers).  On
 * failure nothing changes.  0 or -1. */
int d2r_optim_set_state_flat(d2r_optim *o, d2r_tensor *state);

/* ---- gradient utilities -------------------------------------------------- */

/* (To drop the gradients of a parameter list, see d2r_params_zero_grad
 * in d2r/nn.h.) */
/* Number of NaN or infinite gradient elements over all parameters
 * (parameters without a gradient count 0); -1 on a NULL entry. */
int64_t d2r_grads_nonfinite(int n, d2r_tensor *const *params);
/* The L2 norm of all gradients taken together; -1 on error (a NULL
 * entry).  May be infinite or NaN. */
double d2r_grad_norm(int n, d2r_tensor *const *params);

/*
 * As torch.nn.utils.clip_grad_norm_: computes the total L2 norm of all
 * gradients (the norm of the per-parameter norms) and, when
 * c = max_norm / (norm + 1e-6) is below 1, scales every gradient in
 * place by c.  Returns the norm before clipping.
 * A non-finite norm (some gradient is NaN or infinite) is an error: the
 * gradients are left unchanged and -1 is returned, with a message giving
 * the number of non-finite elements.  -1 also when max_norm is not
 * finite and positive.
 */
double d2r_clip_grad_norm(int n, d2r_tensor *const *params,
                          double max_norm);
/* Clamps every gradient element into [-clip, clip] in place (NaN stays
 * NaN), as torch.nn.utils.clip_grad_value_.  0, or -1 when clip is not
 * finite and non-negative. */
int d2r_clip_grad_value(int n, d2r_tensor *const *params, double clip);

/* ---- reduce on plateau --------------------------------------------------- */

/* torch.optim.lr_scheduler.ReduceLROnPlateau with threshold_mode "rel".
 * With mode min, a value is better when value < best * (1 - threshold)
 * (mode max: value > best * (1 + threshold)).  After more than patience
 * epochs without improvement, lr becomes max(lr * factor, min_lr) (a
 * change smaller than eps is ignored), and the next cooldown epochs are
 * not counted as bad. */
typedef struct d2r_plateau_config {
  bool maximize;
  double factor;     /* in (0, 1) */
  int patience;      /* >= 0 */
  double threshold;  /* >= 0 */
  int cooldown;      /* >= 0 */
  double min_lr;     /* >= 0 */
  double eps;        /* >= 0 */
} d2r_plateau_config;

/* PyTorch's defaults: min, factor 0.1, patience 10, threshold 1e-4,
 * cooldown 0, min_lr 0, eps 1e-8. */
d2r_plateau_config d2r_plateau_defaults(void);

typedef struct d2r_plateau d2r_plateau;

/* A schedule (config copied); NULL on an invalid setting. */
d2r_plateau *d2r_plateau_new(const d2r_plateau_config *config);
void d2r_plateau_free(d2r_plateau *s);
/* Records the metric of one epoch and, when due, lowers o's learning
 * rate.  Returns 1 when it lowered it, 0 when not, -1 on error. */
int d2r_plateau_step(d2r_plateau *s, d2r_optim *o, double metric);
/* The best metric so far (+inf in mode min before any step, -inf in
 * mode max), the current count of bad epochs, the epochs of cooldown
 * left, and the number of steps taken. */
double d2r_plateau_best(const d2r_plateau *s);
int d2r_plateau_bad_epochs(const d2r_plateau *s);
int d2r_plateau_cooldown_left(const d2r_plateau *s);
int64_t d2r_plateau_epochs(const d2r_plateau *s);

/* ---- early stopping ------------------------------------------------------ */

/* A value improves on the best when value < best - min_delta (mode max:
 * value > best + min_delta); NaN never improves.  Training should stop
 * once patience updates in a row have not improved.  keep_best makes
 * each improvement store a copy of the parameters (as a flat vector). */
typedef struct d2r_early_stop_config {
  bool maximize;
  int patience;      /* >= 1 */
  double min_delta;  /* >= 0 */
  bool keep_best;
} d2r_early_stop_config;

typedef struct d2r_early_stop d2r_early_stop;

d2r_early_stop *d2r_early_stop_new(const d2r_early_stop_config *config);
void d2r_early_stop_free(d2r_early_stop *e);
/*
 * Records the value measured at epoch (any integer the caller counts
 * with).  With keep_best, params[0..n) are copied on an improvement (n
 * may be 0 and params NULL otherwise).  Returns 1 when training should
 * stop, 0 when not, -1 on error.
 */
int d2r_early_stop_update(d2r_early_stop *e, double value, int64_t epoch,
                          int n, d2r_tensor *const *params);
bool d2r_early_stop_should_stop(const d2r_early_stop *e);
/* Best value (+inf / -inf before any update) and its epoch (-1). */
double d2r_early_stop_best(const d2r_early_stop *e);
int64_t d2r_early_stop_best_epoch(const d2r_early_stop *e);
/* Updates since the last improvement. */
int d2r_early_stop_wait(const d2r_early_stop *e);
/* The stored best parameters as a flat vector (borrowed), or NULL
 * without an error when none is stored. */
d2r_tensor *d2r_early_stop_best_params(const d2r_early_stop *e);
/* Copies the stored best parameters into params[0..n); fails (changing
 * nothing) when none is stored or the sizes differ.  0 or -1. */
int d2r_early_stop_restore(const d2r_early_stop *e, int n,
                           d2r_tensor *const *params);

#endif
