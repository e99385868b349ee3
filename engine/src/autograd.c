/*
 * The reverse pass.  The graph is the set of tensors reachable from the
 * outputs through their nodes; it is sorted once (iteratively, so a graph
 * unrolled through thousands of steps cannot exhaust the stack), then
 * gradients flow from the outputs back to the inputs, each node's
 * backward rule turning its output's gradient into its inputs' ones.
 *
 * With create_graph the rules run with recording on, so the gradients
 * have history and can be differentiated again; otherwise they run with
 * recording off and the gradients are plain values.
 */
#include <stdlib.h>

#include "tensor_impl.h"

static _Thread_local uint64_t pass_mark;

typedef struct {
  d2r_tensor **items;
  int64_t n, cap;
} tlist;

static bool tlist_push(tlist *l, d2r_tensor *t) {
  if (l->n == l->cap) {
    int64_t cap = l->cap ? 2 * l->cap : 64;
    d2r_tensor **items = realloc(l->items, (size_t)cap * sizeof *items);
    if (!items) return d2r_fail("backward: out of memory"), false;
    l->items = items;
    l->cap = cap;
  }
  l->items[l->n++] = t;
  return true;
}

/* Tensors with a node reachable from the roots, inputs before outputs.
 * Every tensor visited (with or without a node) gets this pass's mark and
 * a cleared accumulator.  Depth-first with an explicit stack: a tensor is
 * marked when it is expanded, not when pushed, and re-pushed with its low
 * pointer bit set so that it is emitted after everything below it.
 * Tensors made before min_seq are not entered. */
static bool topo_sort(int nroot, d2r_tensor *const *roots, uint64_t mark,
                      uint64_t min_seq, tlist *order, tlist *seen,
                      tlist *work) {
  tlist stack = *work;
  stack.n = 0;
  bool ok = true;
  for (int r = 0; r < nroot && ok; r++) ok = tlist_push(&stack, roots[r]);
  while (ok && stack.n > 0) {
    d2r_tensor *t = stack.items[--stack.n];
    uintptr_t bits = (uintptr_t)t;
    if (bits & 1) {
      ok = tlist_push(order, (d2r_tensor *)(bits & ~(uintptr_t)1));
      continue;
    }
    if (t->mark == mark) continue;
    t->mark = mark;
    t->acc = NULL;
    ok = tlist_push(seen, t);
    if (!ok || !t->node) continue;
    ok = tlist_push(&stack, (d2r_tensor *)(bits | 1));
    for (int i = 0; ok && i < t->node->nin; i++) {
      d2r_tensor *in = t->node->in[i];
      /* Older than every requested input: cannot lead to one. */
      if (d2r_needs_grad(in) && in->mark != mark && in->seq >= min_seq)
        ok = tlist_push(&stack, in);
    }
  }
  *work = stack;
  return ok;
}

/*
 * The three lists of a pass (the sorted order, the tensors seen and the
 * sort's stack), kept per thread from one pass to the next so that a
 * training step's backward allocates nothing.  A pass started while
 * another is running on the thread (from inside a backward rule) gets
 * fresh lists.
 */
typedef struct {
  tlist order, seen, stack;
} pass_lists;

static _Thread_local pass_lists spare;
static _Thread_local bool spare_busy;

#ifdef D2R_NO_CACHE
static const bool keep_lists = false;  /* sanitizer builds keep nothing */
#else
static const bool keep_lists = true;
#endif

static pass_lists *lists_take(pass_lists *fresh) {
  pass_lists *l = fresh;
  if (keep_lists && !spare_busy) {
    spare_busy = true;
    l = &spare;
  }
  l->order.n = l->seen.n = l->stack.n = 0;
  return l;
}

static void lists_give(pass_lists *l) {
  if (l == &spare) {
    spare_busy = false;
    return;
  }
  free(l->order.items);
  free(l->seen.items);
  free(l->stack.items);
}

void d2r_autograd_trim(void) {
  if (spare_busy) return;
  free(spare.order.items);
  free(spare.seen.items);
  free(spare.stack.items);
  spare = (pass_lists){0};
}

/* Adds g (consumed) into t's accumulator. */
static int accumulate(d2r_tensor *t, d2r_tensor *g) {
  if (!g) return -1;
  if (!t->acc) {
    t->acc = g;
    return 0;
  }
  d2r_tensor *sum = d2r_add(t->acc, g);
  d2r_release(g);
  if (!sum) return -1;
  d2r_release(t->acc);
  t->acc = sum;
  return 0;
}

static int seed_outputs(int nout, d2r_tensor *const *outputs,
                        d2r_tensor *const *grad_outputs) {
  for (int i = 0; i < nout; i++) {
    d2r_tensor *o = outputs[i], *g;
    char a[96], b[96];
    if (grad_outputs) {
      if (!grad_outputs[i]) return -1;
      if (!d2r_same_shape(o, grad_outputs[i])) {
        d2r_fail("grad: output %d has shape %s but its grad_output %s", i + 1,
                 d2r_shape_str(o, a, sizeof a),
                 d2r_shape_str(grad_outputs[i], b, sizeof b));
        return -1;
      }
      g = d2r_retain(grad_outputs[i]);
    } else {
      if (o->numel != 1) {
        d2r_fail("grad: output %d has shape %s; a non-scalar output needs "
                 "grad_outputs", i + 1, d2r_shape_str(o, a, sizeof a));
        return -1;
      }
      g = d2r_ones(o->ndim, o->shape);
    }
    if (accumulate(o, g) < 0) return -1;
  }
  return 0;
}

/* With anomaly detection on: a backward rule that turns a finite output
 * gradient into a non-finite input gradient fails, naming the op.  The
 * gradients are released on failure. */
static int check_grads(d2r_node *n, d2r_tensor *gout, d2r_tensor **gin) {
  if (d2r_count_nonfinite(gout) > 0) return 0;
  for (int i = 0; i < n->nin; i++) {
    if (!gin[i] || d2r_count_nonfinite(gin[i]) == 0) continue;
    char buf[96];
    d2r_fail("anomaly: the backward of %s gave a non-finite gradient for "
             "its input %d (shape %s) from a finite output gradient",
             n->name, i + 1, d2r_shape_str(gin[i], buf, sizeof buf));
    for (int j = 0; j < n->nin; j++) d2r_release(gin[j]);
    return -1;
  }
  return 0;
}

/* Fails when a tensor n's rule reads (an input, or its index or mask)
 * was updated in place after n was made: the rule would compute the
 * gradient of a function that was never evaluated. */
static int check_versions(const d2r_node *n) {
  for (int i = 0; i <= n->nin; i++) {
    const d2r_tensor *t = i < n->nin ? n->in[i] : n->aux;
    uint64_t then = i < n->nin ? n->in_version[i] : n->aux_version;
    if (!t || d2r_version(t) == then) continue;
    char buf[96];
    d2r_shape_str(t, buf, sizeof buf);
    if (i < n->nin)
      d2r_fail("backward: input %d (shape %s) of %s was updated in place "
               "(copy_, fill_, axpy_, scale_, set_at or an assignment) "
               "after %s used it; compute the forward pass again after "
               "the update", i + 1, buf, n->name, n->name);
    else
      d2r_fail("backward: the index or mask (shape %s) of %s was updated "
               "in place after %s used it; compute the forward pass "
               "again after the update", buf, n->name, n->name);
    return -1;
  }
  return 0;
}

static int run_backward(tlist *order, uint64_t mark) {
  for (int64_t k = order->n - 1; k >= 0; k--) {
    d2r_tensor *t = order->items[k];
    d2r_node *n = t->node;
    if (!t->acc) continue;
    d2r_tensor *gin[D2R_NODE_MAXIN] = {NULL};
    if (check_versions(n) < 0) return -1;
    /* Inside a rule, anomalies are reported for the rule as a whole. */
    bool watching = d2r_set_detect_anomaly(false);
    int rc = n->backward(n, t->acc, gin);
    d2r_set_detect_anomaly(watching);
    if (rc < 0) {
      for (int i = 0; i < n->nin; i++) d2r_release(gin[i]);
      if (!d2r_error()[0]) d2r_fail("backward of '%s' failed", n->name);
      return -1;
    }
    if (watching && check_grads(n, t->acc, gin) < 0)
      return -1;
    for (int i = 0; i < n->nin; i++) {
      if (!gin[i]) continue;
      /* An input this pass did not enter (older than every requested
       * input) has no accumulator to take its gradient. */
      if (!d2r_needs_grad(n->in[i]) || n->in[i]->mark != mark) {
        d2r_release(gin[i]);
        continue;
      }
      if (accumulate(n->in[i], gin[i]) < 0) {
        for (int j = i + 1; j < n->nin; j++) d2r_release(gin[j]);
        return -1;
      }
    }
    /* An intermediate gradient is no longer needed once passed on, unless
     * the caller asked for it. */
    if (!t->keep_acc) {
      d2r_release(t->acc);
      t->acc = NULL;
    }
  }
  return 0;
}

static void clear_seen(tlist *seen) {
  for (int64_t i = 0; i < seen->n; i++) {
    d2r_release(seen->items[i]->acc);
    seen->items[i]->acc = NULL;
  }
}

/* Sorts, seeds and runs the pass; leaves gradients in the acc fields of
 * the tensors in `seen` (the caller collects, then clears them).  The
 * accumulators of the nkeep tensors in keep survive the pass. */
static int pass(int nout, d2r_tensor *const *outputs,
                d2r_tensor *const *grad_outputs, bool create_graph,
                int nkeep, d2r_tensor *const *keep, pass_lists *l) {
  tlist *order = &l->order, *seen = &l->seen;
  for (int i = 0; i < nout; i++)
    if (!outputs[i]) return -1;
  uint64_t mark = ++pass_mark, min_seq = UINT64_MAX;
  for (int i = 0; i < nkeep; i++)
    if (keep[i]->seq < min_seq) min_seq = keep[i]->seq;
  if (nkeep == 0) min_seq = 0;
  if (!topo_sort(nout, outputs, mark, min_seq, order, seen, &l->stack))
    return -1;
  for (int i = 0; i < nkeep; i++) keep[i]->keep_acc = true;
  bool was = d2r_set_grad_enabled(create_graph);
  int rc = seed_outputs(nout, outputs, grad_outputs);
  if (rc == 0) rc = run_backward(order, mark);
  d2r_set_grad_enabled(was);
  for (int i = 0; i < nkeep; i++) keep[i]->keep_acc = false;
  return rc;
}

/* A leaf's .grad is written in place by optimisers and clipping, so it
 * must not share its storage with another gradient (backward rules pass
 * the same tensor to several inputs) or be a broadcast view. */
static d2r_tensor *private_copy(d2r_tensor *g) {
  if (g->refs == 1 && g->st->refs == 1 && d2r_is_contiguous(g) &&
      g->offset == 0 && g->numel == g->st->size)
    return d2r_retain(g);
  bool was = d2r_set_grad_enabled(false);
  d2r_tensor *c = d2r_clone(g);
  d2r_set_grad_enabled(was);
  return c;
}

int d2r_backward(d2r_tensor *loss) {
  if (!loss) return -1;
  if (!d2r_needs_grad(loss)) {
    d2r_fail("backward: the loss does not depend on any tensor that "
             "requires a gradient");
    return -1;
  }
  pass_lists fresh = {0}, *l = lists_take(&fresh);
  int rc = pass(1, &loss, NULL, false, 0, NULL, l);
  for (int64_t i = 0; rc == 0 && i < l->seen.n; i++) {
    d2r_tensor *t = l->seen.items[i];
    if (!t->leaf_grad || !t->acc) continue;
    if (!t->grad) {
      t->grad = private_copy(t->acc);
      if (!t->grad) rc = -1;
    } else {
      d2r_tensor *sum = d2r_add(t->grad, t->acc);
      if (!sum) rc = -1;
      d2r_release(t->grad);
      t->grad = sum;
    }
  }
  clear_seen(&l->seen);
  lists_give(l);
  return rc;
}

int d2r_autograd(int nout, d2r_tensor *const *outputs,
                 d2r_tensor *const *grad_outputs, int nin,
                 d2r_tensor *const *inputs, bool create_graph,
                 bool allow_unused, d2r_tensor **grads) {
  for (int i = 0; i < nin; i++) grads[i] = NULL;
  for (int i = 0; i < nin; i++) {
    if (!inputs[i]) return -1;
    if (!d2r_needs_grad(inputs[i])) {
      d2r_fail("grad: input %d does not require a gradient", i + 1);
      return -1;
    }
  }
  pass_lists fresh = {0}, *l = lists_take(&fresh);
  int rc = pass(nout, outputs, grad_outputs, create_graph, nin, inputs, l);
  uint64_t mark = pass_mark;
  for (int i = 0; rc == 0 && i < nin; i++) {
    d2r_tensor *x = inputs[i];
    if (x->mark == mark && x->acc) {
      grads[i] = d2r_retain(x->acc);
    } else if (allow_unused) {
      grads[i] = d2r_zeros(x->ndim, x->shape);
      if (!grads[i]) rc = -1;
    } else {
      d2r_fail("grad: the outputs do not depend on input %d (pass "
               "allow_unused to get zeros)", i + 1);
      rc = -1;
    }
  }
  clear_seen(&l->seen);
  lists_give(l);
  if (rc < 0)
    for (int i = 0; i < nin; i++) {
      d2r_release(grads[i]);
      grads[i] = NULL;
    }
  return rc;
}
