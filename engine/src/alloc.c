/*
 * Memory reuse for the tensor core.  A training step builds and frees the
 * same tensors, nodes and data blocks every time; keeping what was freed,
 * by exact size, lets the next step take it back without calling malloc,
 * so a steady-state step allocates nothing and memory stays flat.
 *
 * Everything is per thread (no locks) and bounded: data blocks up to
 * D2R_CACHE_LIMIT bytes or, when a step works on more than that, up to
 * twice the most this thread ever had in use at once (a step on big
 * batches then finds its blocks again instead of paying page faults on
 * fresh ones; blocks are kept by exact size, so the cache can hold sizes
 * the step is not using at the moment, hence the factor); small objects
 * up to a fixed count; beyond that memory goes back to the system.
 * Sanitizer builds (D2R_NO_CACHE) keep nothing, so AddressSanitizer sees
 * every free.
 */
#include <stdlib.h>
#include <string.h>

#include "tensor_impl.h"

#ifndef D2R_CACHE_LIMIT
#define D2R_CACHE_LIMIT ((size_t)64 << 20)
#endif
#define OBJ_LIMIT 65536
#define BUCKETS 512   /* distinct block sizes kept (a power of 2) */

/* A freed object or block holds the link to the next one in its first
 * bytes. */
typedef struct link {
  struct link *next;
} link;

typedef struct {
  link *head;
  int count;
} objpool;

typedef struct {
  int64_t size;       /* doubles per block; 0 for an empty bucket */
  link *head;
} bucket;

typedef struct {
  objpool tensors, nodes, storages;
  bucket blocks[BUCKETS];
  size_t block_bytes;   /* kept for reuse */
  size_t live_bytes;    /* handed out and not yet freed */
  size_t peak_bytes;    /* the most live_bytes has been */
} cache;

static _Thread_local cache tc;

#ifdef D2R_NO_CACHE
static const bool caching = false;
#else
static const bool caching = true;
#endif

static void *pool_get(objpool *p, size_t size) {
  if (p->head) {
    link *l = p->head;
    p->head = l->next;
    p->count--;
    memset(l, 0, size);
    return l;
  }
  return calloc(1, size);
}

static void pool_put(objpool *p, void *obj) {
  if (!caching || p->count >= OBJ_LIMIT) {
    free(obj);
    return;
  }
  link *l = obj;
  l->next = p->head;
  p->head = l;
  p->count++;
}

d2r_tensor *d2r_alloc_tensor(void) {
  return pool_get(&tc.tensors, sizeof(d2r_tensor));
}
void d2r_free_tensor(d2r_tensor *t) { pool_put(&tc.tensors, t); }

d2r_node *d2r_alloc_node(void) {
  return pool_get(&tc.nodes, sizeof(d2r_node));
}
void d2r_free_node(d2r_node *n) { pool_put(&tc.nodes, n); }

d2r_storage *d2r_alloc_storage(void) {
  return pool_get(&tc.storages, sizeof(d2r_storage));
}
void d2r_free_storage(d2r_storage *s) { pool_put(&tc.storages, s); }

/* The bucket for blocks of `size` doubles (open addressing), or NULL
 * when the table is full of other sizes. */
static bucket *find_bucket(int64_t size, bool create) {
  uint64_t h = (uint64_t)size * UINT64_C(0x9E3779B97F4A7C15);
  for (int probe = 0; probe < 16; probe++) {
    bucket *b = &tc.blocks[((h >> 40) + (uint64_t)probe) & (BUCKETS - 1)];
    if (b->size == size) return b;
    if (b->size == 0 || (b->head == NULL && create)) {
      if (!create) return NULL;
      b->size = size;
      return b;
    }
  }
  return NULL;
}

double *d2r_alloc_block(int64_t size) {
  if (size < 1) size = 1;
  size_t bytes = (size_t)size * sizeof(double);
  bucket *b = caching ? find_bucket(size, false) : NULL;
  if (b && b->head) {
    link *l = b->head;
    b->head = l->next;
    tc.block_bytes -= bytes;
    tc.live_bytes += bytes;
    return (double *)l;
  }
  double *p = malloc(bytes);
  if (p) tc.live_bytes += bytes;
  if (tc.live_bytes > tc.peak_bytes) tc.peak_bytes = tc.live_bytes;
  return p;
}

void d2r_free_block(double *data, int64_t size) {
  if (size < 1) size = 1;
  size_t bytes = (size_t)size * sizeof(double);
  tc.live_bytes -= bytes;
  bucket *b = NULL;
  size_t limit = 2 * tc.peak_bytes > D2R_CACHE_LIMIT ? 2 * tc.peak_bytes
                                                     : D2R_CACHE_LIMIT;
  if (caching && tc.block_bytes + bytes <= limit)
    b = find_bucket(size, true);
  if (!b) {
    free(data);
    return;
  }
  link *l = (link *)data;
  l->next = b->head;
  b->head = l;
  tc.block_bytes += bytes;
}

size_t d2r_live_bytes(void) { return tc.live_bytes; }

size_t d2r_cache_bytes(void) {
  return tc.block_bytes +
         (size_t)tc.tensors.count * sizeof(d2r_tensor) +
         (size_t)tc.nodes.count * sizeof(d2r_node) +
         (size_t)tc.storages.count * sizeof(d2r_storage);
}

static void drain(link *l) {
  while (l) {
    link *next = l->next;
    free(l);
    l = next;
  }
}

void d2r_cache_trim(void) {
  d2r_autograd_trim();
  drain(tc.tensors.head);
  drain(tc.nodes.head);
  drain(tc.storages.head);
  for (int i = 0; i < BUCKETS; i++) drain(tc.blocks[i].head);
  size_t live = tc.live_bytes;
  memset(&tc, 0, sizeof tc);
  tc.live_bytes = live;
  tc.peak_bytes = live;
}
