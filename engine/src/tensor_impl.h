/*
 * Internal layout of tensors and autodiff nodes, shared by the files that
 * implement tensor.h.  Nothing outside engine/src should include this.
 */
#ifndef D2R_TENSOR_IMPL_H
#define D2R_TENSOR_IMPL_H

#include "d2r/tensor.h"

/* A reference-counted block of doubles that tensors view. */
typedef struct d2r_storage {
  double *data;
  int64_t size;
  int refs;
  /* Bumped by every in-place update (copy_, fill_, axpy_, scale_,
   * set_at), so a backward pass can tell that a tensor its graph used
   * has changed. */
  uint64_t version;
} d2r_storage;

#define D2R_NODE_MAXIN 3
#define D2R_NODE_MAXARG (2 * D2R_MAXDIM + 2)

typedef struct d2r_node d2r_node;

/*
 * A backward rule receives the gradient of the node's output and stores a
 * new reference to the gradient of each input that requires one in gin[i]
 * (leaving the others NULL).  It is written with differentiable operations,
 * so it records a graph of its own when recording is enabled.
 */
typedef int (*d2r_backward_fn)(d2r_node *n, d2r_tensor *gout,
                               d2r_tensor **gin);

struct d2r_node {
  const char *name;
  d2r_backward_fn backward;
  int nin;
  d2r_tensor *in[D2R_NODE_MAXIN];  /* owned references */
  d2r_tensor *aux;                 /* owned: an index tensor, a mask */
  /* The storage versions of in[] and aux when the node was made. */
  uint64_t in_version[D2R_NODE_MAXIN], aux_version;
  d2r_tensor *out;                 /* the output: not owned (it owns us) */
  double s[2];                     /* scalar arguments */
  int64_t i[D2R_NODE_MAXARG];      /* integer arguments (axes, shapes) */
};

struct d2r_tensor {
  int refs;
  int ndim;
  int64_t shape[D2R_MAXDIM];
  int64_t stride[D2R_MAXDIM];
  int64_t offset;
  int64_t numel;
  d2r_storage *st;
  bool leaf_grad;        /* a leaf that collects gradients */
  d2r_tensor *grad;      /* accumulated by d2r_backward */
  d2r_node *node;        /* how this tensor was computed, or NULL */
  /* Creation order: a tensor can only depend on tensors made before it,
   * which lets a gradient pass skip everything older than its inputs. */
  uint64_t seq;
  /* Scratch used by a backward pass and by the deferred free list. */
  uint64_t mark;
  bool keep_acc;
  d2r_tensor *acc;
  d2r_tensor *next;
};

/* Allocation through the per-thread caches of alloc.c (zeroed objects;
 * blocks of `size` doubles, uninitialised). */
d2r_tensor *d2r_alloc_tensor(void);
void d2r_free_tensor(d2r_tensor *t);
d2r_node *d2r_alloc_node(void);
void d2r_free_node(d2r_node *n);
d2r_storage *d2r_alloc_storage(void);
void d2r_free_storage(d2r_storage *s);
double *d2r_alloc_block(int64_t size);
void d2r_free_block(double *data, int64_t size);

/* Frees the lists autograd keeps for reuse between passes (from
 * d2r_cache_trim). */
void d2r_autograd_trim(void);

/* Gives n the tensor its backward rule reads besides its inputs (the
 * reference is n's now) and notes the tensor's storage version. */
void d2r_set_aux(d2r_node *n, d2r_tensor *aux);
/* A tensor's storage version (0 without storage). */
uint64_t d2r_version(const d2r_tensor *t);

/* A fresh contiguous tensor with uninitialised data. */
d2r_tensor *d2r_new(int ndim, const int64_t *shape);
/* A view of t's storage with its own shape and strides. */
d2r_tensor *d2r_view(d2r_tensor *t, int ndim, const int64_t *shape,
                     const int64_t *stride, int64_t offset);
/* Pointer to the element at a flat row-major position of a possibly
 * strided tensor. */
double *d2r_ptr_at(d2r_tensor *t, int64_t flat);

/*
 * Records `name` on out when recording is on and one of the inputs needs a
 * gradient.  Takes references to the inputs.  Returns out, or releases it
 * and returns NULL when the node cannot be allocated.
 */
d2r_tensor *d2r_record(d2r_tensor *out, const char *name, d2r_backward_fn bw,
                       int nin, d2r_tensor *const *in);
bool d2r_needs_grad(const d2r_tensor *t);
/* Axis in [0, ndim) from a possibly negative one; -1 with an error. */
int d2r_norm_axis(const d2r_tensor *t, int axis, const char *fn);
bool d2r_check_shape(int ndim, const int64_t *shape, const char *fn);
/* Whether the product of the sizes (zeros counted as 1) stays within the
 * largest tensor d2r allows. */
bool d2r_shape_fits(int ndim, const int64_t *shape);
/* With anomaly detection on and every input finite, a non-finite
 * element of out fails the op `name`, naming the element (out is
 * released, NULL returned); otherwise out itself.  For fused ops that
 * compute outside the kernels of ops.c. */
d2r_tensor *d2r_watch(d2r_tensor *out, const char *name, int nin,
                      d2r_tensor *const *in);
/* d2r_check_index on a contiguous array v[0..n): 0 when every value is
 * an integer in [0, bound), else -1 with the same message (fn, the
 * value and its element counting from 1).  One vectorised pass. */
int d2r_check_index_values(const double *v, int64_t n, int64_t bound,
                           const char *fn);
/* The sum of x[0..n) in the order every sum along a last axis uses
 * (eight interleaved partial sums), so a fused loop can reproduce the
 * op chain's numbers exactly. */
double d2r_sum_lanes(const double *x, int64_t n);
/* Broadcast shape of a and b into out; false with an error if none. */
bool d2r_broadcast_shape(const d2r_tensor *a, const d2r_tensor *b, int *ndim,
                         int64_t *shape, const char *fn);

#endif
