/*
 * Checkpoints in the D2RC format (documented in d2r/checkpoint.h).  A
 * save builds the whole file image in memory and writes it atomically.
 * A load reads the whole file, checks its frame (magic, version, length,
 * checksum), parses and checks every section, checks the caller's
 * objects against it, and only then changes them, undoing the generator
 * and optimiser if a later step fails, so a failed load changes nothing.
 */
#include "d2r/checkpoint.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "d2r/nn.h"
#include "file_io.h"

#define HEADER_SIZE 40
#define TRAILER_SIZE 4
#define MAX_TENSORS 1000000
#define MAX_NAME 16
/* The largest tensor the engine makes (d2r_empty refuses more). */
#define MAX_SPAN (UINT64_C(1) << 50)
/* Step counts are stored as float64 and must stay exact. */
#define MAX_STEPS 9007199254740992.0

/* ---- a growing output buffer --------------------------------------- */

typedef struct wbuf {
  uint8_t *p;
  size_t len, cap;
  bool oom;
} wbuf;

static uint8_t *reserve(wbuf *w, size_t k) {
  if (w->oom) return NULL;
  if (k > SIZE_MAX - w->len) {
    w->oom = true;
    return NULL;
  }
  if (w->len + k > w->cap) {
    size_t cap = w->cap ? w->cap : 256;
    while (cap < w->len + k) cap = cap > SIZE_MAX / 2 ? w->len + k : 2 * cap;
    uint8_t *p = realloc(w->p, cap);
    if (p == NULL) {
      w->oom = true;
      return NULL;
    }
    w->p = p;
    w->cap = cap;
  }
  uint8_t *at = w->p + w->len;
  w->len += k;
  return at;
}

static void put_u32(wbuf *w, uint32_t v) {
  uint8_t *p = reserve(w, 4);
  if (p) d2r_le_put_u32(p, v);
}

static void put_u64(wbuf *w, uint64_t v) {
  uint8_t *p = reserve(w, 8);
  if (p) d2r_le_put_u64(p, v);
}

static void put_f64(wbuf *w, double x) {
  uint64_t bits;
  memcpy(&bits, &x, sizeof bits);
  put_u64(w, bits);
}

static void put_bytes(wbuf *w, const void *src, size_t k) {
  uint8_t *p = reserve(w, k);
  if (p && k > 0) memcpy(p, src, k);
}

/* Starts a section; returns the offset of its length field. */
static size_t section_begin(wbuf *w, const char *tag, uint32_t *count) {
  put_bytes(w, tag, 4);
  size_t at = w->len;
  put_u64(w, 0);
  (*count)++;
  return at;
}

static void section_end(wbuf *w, size_t at) {
  if (!w->oom) d2r_le_put_u64(w->p + at, (uint64_t)(w->len - at - 8));
}

/* ---- encoding ------------------------------------------------------- */

static void put_values(wbuf *w, const double *v, int64_t n) {
  uint8_t *p = reserve(w, 8 * (size_t)n);
  for (int64_t i = 0; p && i < n; i++) {
    uint64_t bits;
    memcpy(&bits, &v[i], sizeof bits);
    d2r_le_put_u64(p + 8 * i, bits);
  }
}

/* Appends a tensor record; -1 when t cannot be made contiguous. */
static int put_tensor(wbuf *w, d2r_tensor *t) {
  int nd = d2r_ndim(t);
  put_u32(w, (uint32_t)nd);
  for (int d = 0; d < nd; d++) put_u64(w, (uint64_t)d2r_shape(t)[d]);
  d2r_tensor *c = d2r_contiguous(t);
  if (c == NULL) return -1;
  put_values(w, d2r_data(c), d2r_numel(c));
  d2r_release(c);
  return 0;
}

static int put_params(wbuf *w, const d2r_checkpoint *ck, uint32_t *count) {
  size_t at = section_begin(w, "PARM", count);
  put_u32(w, (uint32_t)ck->nparams);
  for (int i = 0; i < ck->nparams; i++)
    if (put_tensor(w, ck->params[i]) != 0) return -1;
  section_end(w, at);
  return 0;
}

static int put_optim(wbuf *w, d2r_optim *o, uint32_t *count) {
  d2r_tensor *s = d2r_optim_state_flat(o);
  if (s == NULL) return -1;
  size_t at = section_begin(w, "OPTM", count);
  const char *name = d2r_optim_name(o);
  int n = d2r_optim_nparams(o);
  d2r_tensor *const *ps = d2r_optim_params(o);
  put_u32(w, (uint32_t)strlen(name));
  put_bytes(w, name, strlen(name));
  put_f64(w, d2r_optim_lr(o));
  put_u32(w, (uint32_t)n);
  put_u32(w, (uint32_t)d2r_optim_nbuffers(o));
  for (int i = 0; i < n; i++) put_u64(w, (uint64_t)d2r_numel(ps[i]));
  put_u64(w, (uint64_t)d2r_numel(s));
  put_values(w, d2r_data(s), d2r_numel(s));
  d2r_release(s);
  section_end(w, at);
  return 0;
}

static int put_rng(wbuf *w, d2r_rng *r, uint32_t *count) {
  size_t size = d2r_rng_state_size(r);
  size_t at = section_begin(w, "RNGS", count);
  put_u64(w, (uint64_t)size);
  uint8_t *p = reserve(w, size);
  if (p && d2r_rng_get_state(r, p, size) != 0) return -1;
  section_end(w, at);
  return 0;
}

static int check_save_args(const char *path, const d2r_checkpoint *ck) {
  if (path == NULL || ck == NULL) {
    d2r_fail("checkpoint_save: no path or no checkpoint given");
    return -1;
  }
  if (ck->nparams < 0 || ck->nparams > MAX_TENSORS ||
      (ck->nparams > 0 && ck->params == NULL)) {
    d2r_fail("%s: checkpoint_save: invalid parameter list", path);
    return -1;
  }
  for (int i = 0; i < ck->nparams; i++)
    if (ck->params[i] == NULL) return -1;
  return 0;
}

/* The whole file image of ck (the buffer in w). */
static int encode(const char *path, const d2r_checkpoint *ck, wbuf *w) {
  size_t meta_len = ck->meta == NULL ? 0
                    : ck->meta_len ? ck->meta_len : strlen(ck->meta);
  uint32_t count = 0;
  reserve(w, HEADER_SIZE);
  size_t at = section_begin(w, "META", &count);
  put_bytes(w, ck->meta, meta_len);
  section_end(w, at);
  if (ck->nparams > 0 && put_params(w, ck, &count) != 0) return -1;
  if (ck->optim && put_optim(w, ck->optim, &count) != 0) return -1;
  if (ck->rng && put_rng(w, ck->rng, &count) != 0) return -1;
  reserve(w, TRAILER_SIZE);
  if (w->oom) {
    d2r_fail("%s: out of memory building the checkpoint", path);
    return -1;
  }
  memcpy(w->p, D2R_CHECKPOINT_MAGIC, 4);
  d2r_le_put_u32(w->p + 4, D2R_CHECKPOINT_VERSION);
  d2r_le_put_u64(w->p + 8, (uint64_t)w->len);
  d2r_le_put_u64(w->p + 16, (uint64_t)ck->epoch);
  d2r_le_put_u64(w->p + 24, (uint64_t)ck->step);
  d2r_le_put_u32(w->p + 32, count);
  d2r_le_put_u32(w->p + 36, 0);
  size_t body = w->len - TRAILER_SIZE;
  d2r_le_put_u32(w->p + body, d2r_crc32(0, w->p, body));
  return 0;
}

int d2r_checkpoint_save(const char *path, const d2r_checkpoint *ck) {
  if (check_save_args(path, ck) != 0) return -1;
  wbuf w = {NULL, 0, 0, false};
  int rc = encode(path, ck, &w);
  if (rc == 0) rc = d2r_file_write_atomic(path, w.p, w.len);
  free(w.p);
  return rc;
}

/* ---- a bounded input cursor ------------------------------------------ */

typedef struct cursor {
  const uint8_t *p;
  size_t left;
  bool bad;     /* a read went past the end */
} cursor;

static const uint8_t *take(cursor *c, size_t k) {
  if (c->bad || k > c->left) {
    c->bad = true;
    return NULL;
  }
  const uint8_t *at = c->p;
  c->p += k;
  c->left -= k;
  return at;
}

static uint32_t get_u32(cursor *c) {
  const uint8_t *p = take(c, 4);
  return p ? d2r_le_get_u32(p) : 0;
}

static uint64_t get_u64(cursor *c) {
  const uint8_t *p = take(c, 8);
  return p ? d2r_le_get_u64(p) : 0;
}

/* n float64 values (n checked against what is left); NULL past the end. */
static const uint8_t *get_values(cursor *c, uint64_t n) {
  if (n > c->left / 8) {
    c->bad = true;
    return NULL;
  }
  return take(c, 8 * (size_t)n);
}

static void decode_values(const uint8_t *p, int64_t n, double *out) {
  for (int64_t i = 0; i < n; i++) out[i] = d2r_le_get_f64(p + 8 * i);
}

/* ---- the parsed file ------------------------------------------------- */

typedef struct record {
  int ndim;
  int64_t shape[D2R_MAXDIM];
  int64_t numel;
  const uint8_t *data;
} record;

typedef struct parsed {
  const char *path;
  uint8_t *buf;
  size_t size;
  int64_t epoch, step;
  cursor meta, parm, optm, rngs;   /* payloads; p NULL when absent */
  /* PARM */
  int nrec;
  record *recs;
  /* OPTM */
  char oname[MAX_NAME + 1];
  double lr;
  int on, onbuf;
  const uint8_t *onumel;           /* on counts of 8 bytes */
  int64_t olen;
  const uint8_t *ostate;
  /* RNGS */
  size_t rsize;
  const uint8_t *rstate;
} parsed;

static void parsed_free(parsed *f) {
  free(f->buf);
  free(f->recs);
}

static int bad(const parsed *f, const char *what) {
  d2r_fail("%s: %s", f->path, what);
  return -1;
}

/* Magic, version, declared length, checksum and flags; 0 or -1. */
static int check_frame(parsed *f) {
  const uint8_t *b = f->buf;
  if (f->size >= 4 && memcmp(b, D2R_CHECKPOINT_MAGIC, 4) != 0)
    return bad(f, "not a d2r checkpoint (bad magic)");
  if (f->size < HEADER_SIZE + TRAILER_SIZE) {
    d2r_fail("%s: truncated (%zu bytes, shorter than a header)", f->path,
             f->size);
    return -1;
  }
  uint32_t version = d2r_le_get_u32(b + 4);
  if (version != D2R_CHECKPOINT_VERSION) {
    d2r_fail("%s: unsupported checkpoint version %u (expected %d)",
             f->path, (unsigned)version, D2R_CHECKPOINT_VERSION);
    return -1;
  }
  uint64_t declared = d2r_le_get_u64(b + 8);
  if (declared != f->size) {
    d2r_fail("%s: %s: %zu bytes, the header declares %llu", f->path,
             declared > f->size ? "truncated" : "wrong length", f->size,
             (unsigned long long)declared);
    return -1;
  }
  size_t body = f->size - TRAILER_SIZE;
  if (d2r_crc32(0, b, body) != d2r_le_get_u32(b + body))
    return bad(f, "checksum mismatch (file corrupted)");
  if (d2r_le_get_u32(b + 36) != 0) return bad(f, "unknown flags set");
  f->epoch = (int64_t)d2r_le_get_u64(b + 16);
  f->step = (int64_t)d2r_le_get_u64(b + 24);
  return 0;
}

/* The payload slot for a section tag, or NULL for an unknown tag. */
static cursor *slot_for(parsed *f, const uint8_t *tag) {
  if (memcmp(tag, "META", 4) == 0) return &f->meta;
  if (memcmp(tag, "PARM", 4) == 0) return &f->parm;
  if (memcmp(tag, "OPTM", 4) == 0) return &f->optm;
  if (memcmp(tag, "RNGS", 4) == 0) return &f->rngs;
  return NULL;
}

static int split_sections(parsed *f) {
  cursor c = {f->buf + HEADER_SIZE, f->size - HEADER_SIZE - TRAILER_SIZE,
              false};
  uint32_t count = d2r_le_get_u32(f->buf + 32);
  for (uint32_t i = 0; i < count; i++) {
    const uint8_t *tag = take(&c, 4);
    uint64_t len = get_u64(&c);
    if (c.bad || len > c.left) {
      d2r_fail("%s: malformed (section %u runs past the end)", f->path,
               (unsigned)i + 1);
      return -1;
    }
    cursor *s = slot_for(f, tag);
    if (s == NULL) {
      d2r_fail("%s: malformed (section %u has an unknown tag)", f->path,
               (unsigned)i + 1);
      return -1;
    }
    if (s->p != NULL) {
      d2r_fail("%s: malformed (section '%.4s' appears twice)", f->path,
               (const char *)tag);
      return -1;
    }
    *s = (cursor){take(&c, (size_t)len), (size_t)len, false};
  }
  if (c.left != 0) {
    d2r_fail("%s: malformed (%zu stray bytes after the sections)", f->path,
             c.left);
    return -1;
  }
  if (f->meta.p == NULL) return bad(f, "malformed (no META section)");
  return 0;
}

static int parse_record(cursor *c, record *r) {
  uint32_t nd = get_u32(c);
  if (c->bad || nd > D2R_MAXDIM) return -1;
  r->ndim = (int)nd;
  r->numel = 1;
  uint64_t span = 1;    /* product of the non-zero sizes (the strides) */
  for (uint32_t d = 0; d < nd; d++) {
    uint64_t dim = get_u64(c);
    if (c->bad || (dim != 0 && span > MAX_SPAN / dim)) return -1;
    span *= dim != 0 ? dim : 1;
    if (dim != 0 && (uint64_t)r->numel > c->left / 8 / dim) return -1;
    r->shape[d] = (int64_t)dim;
    r->numel *= (int64_t)dim;
  }
  r->data = get_values(c, (uint64_t)r->numel);
  return c->bad ? -1 : 0;
}

static int parse_params(parsed *f) {
  cursor c = f->parm;
  uint32_t count = get_u32(&c);
  if (c.bad || count > MAX_TENSORS || count > c.left / 4)
    return bad(f, "malformed parameter section (bad count)");
  f->recs = malloc((count > 0 ? count : 1) * sizeof *f->recs);
  if (f->recs == NULL) return bad(f, "out of memory");
  for (uint32_t i = 0; i < count; i++) {
    if (parse_record(&c, &f->recs[i]) != 0) {
      d2r_fail("%s: malformed parameter %u", f->path, (unsigned)i + 1);
      return -1;
    }
  }
  if (c.left != 0) return bad(f, "malformed parameter section (stray "
                                 "bytes)");
  f->nrec = (int)count;
  return 0;
}

/* Step counts (the first n entries of the state) must be counts. */
static int check_step_counts(parsed *f) {
  for (int i = 0; i < f->on; i++) {
    double v = d2r_le_get_f64(f->ostate + 8 * i);
    if (!(v >= 0 && v <= MAX_STEPS && v == floor(v))) {
      d2r_fail("%s: optimiser step count %d is %g (not a count)", f->path,
               i + 1, v);
      return -1;
    }
  }
  return 0;
}

static int parse_optim(parsed *f) {
  cursor c = f->optm;
  uint32_t namelen = get_u32(&c);
  const uint8_t *name = take(&c, namelen <= MAX_NAME ? namelen : 0);
  if (c.bad || namelen > MAX_NAME || memchr(name, 0, namelen))
    return bad(f, "malformed optimiser section (bad name)");
  memcpy(f->oname, name, namelen);
  f->oname[namelen] = '\0';
  const uint8_t *lr = take(&c, 8);
  uint32_t n = get_u32(&c), nbuf = get_u32(&c);
  if (c.bad || n > MAX_TENSORS || nbuf > 2 || n > c.left / 8)
    return bad(f, "malformed optimiser section (bad sizes)");
  f->lr = d2r_le_get_f64(lr);
  if (!(f->lr >= 0 && isfinite(f->lr)))
    return bad(f, "malformed optimiser section (bad learning rate)");
  f->on = (int)n;
  f->onbuf = (int)nbuf;
  f->onumel = take(&c, 8 * (size_t)n);
  uint64_t total = 0;
  for (uint32_t i = 0; i < n; i++) {
    uint64_t k = d2r_le_get_u64(f->onumel + 8 * i);
    if (k > c.left / 8 || total + k > c.left / 8)
      return bad(f, "malformed optimiser section (bad sizes)");
    total += k;
  }
  uint64_t len = get_u64(&c);
  if (c.bad || len != n + nbuf * total)
    return bad(f, "malformed optimiser section (state length)");
  f->olen = (int64_t)len;
  f->ostate = get_values(&c, len);
  if (c.bad || c.left != 0)
    return bad(f, "malformed optimiser section (state length)");
  return check_step_counts(f);
}

static int parse_rng(parsed *f) {
  cursor c = f->rngs;
  uint64_t size = get_u64(&c);
  if (c.bad || size != c.left)
    return bad(f, "malformed generator section (state length)");
  f->rsize = (size_t)size;
  f->rstate = take(&c, (size_t)size);
  return 0;
}

/* Reads and checks the whole file; parsed_free it either way. */
static int parse_file(const char *path, parsed *f) {
  memset(f, 0, sizeof *f);
  f->path = path;
  f->buf = d2r_file_read(path, &f->size);
  if (f->buf == NULL) return -1;
  if (check_frame(f) != 0 || split_sections(f) != 0) return -1;
  if (f->parm.p && parse_params(f) != 0) return -1;
  if (f->optm.p && parse_optim(f) != 0) return -1;
  if (f->rngs.p && parse_rng(f) != 0) return -1;
  return 0;
}

/* ---- checking the caller's objects ----------------------------------- */

static void record_shape_str(const record *r, char *buf, size_t cap) {
  size_t k = (size_t)snprintf(buf, cap, "[");
  for (int d = 0; d < r->ndim && k < cap; d++)
    k += (size_t)snprintf(buf + k, cap - k, d ? ", %lld" : "%lld",
                          (long long)r->shape[d]);
  if (k < cap) snprintf(buf + k, cap - k, "]");
}

static bool record_matches(const record *r, const d2r_tensor *t) {
  if (r->ndim != d2r_ndim(t)) return false;
  for (int d = 0; d < r->ndim; d++)
    if (r->shape[d] != d2r_shape(t)[d]) return false;
  return true;
}

static int match_params(const parsed *f, const d2r_checkpoint *ck) {
  if (f->parm.p == NULL) return bad(f, "holds no model parameters");
  if (f->nrec != ck->nparams) {
    d2r_fail("%s: holds %d parameter tensors, expected %d", f->path,
             f->nrec, ck->nparams);
    return -1;
  }
  for (int i = 0; i < ck->nparams; i++) {
    d2r_tensor *t = ck->params[i];
    if (t == NULL) return -1;
    if (!d2r_is_contiguous(t)) {
      d2r_fail("%s: parameter %d is not contiguous", f->path, i + 1);
      return -1;
    }
    if (!record_matches(&f->recs[i], t)) {
      char fs[128], ms[128];
      record_shape_str(&f->recs[i], fs, sizeof fs);
      d2r_shape_str(t, ms, sizeof ms);
      d2r_fail("%s: parameter %d has shape %s in the file, expected %s",
               f->path, i + 1, fs, ms);
      return -1;
    }
  }
  return 0;
}

static int match_optim(const parsed *f, const d2r_optim *o) {
  if (f->optm.p == NULL) return bad(f, "holds no optimiser state");
  if (strcmp(f->oname, d2r_optim_name(o)) != 0) {
    d2r_fail("%s: the optimiser is %s in the file, %s here", f->path,
             f->oname, d2r_optim_name(o));
    return -1;
  }
  if (f->on != d2r_optim_nparams(o) || f->onbuf != d2r_optim_nbuffers(o)) {
    d2r_fail("%s: the optimiser has %d parameters and %d buffers each "
             "in the file, %d and %d here", f->path, f->on, f->onbuf,
             d2r_optim_nparams(o), d2r_optim_nbuffers(o));
    return -1;
  }
  for (int i = 0; i < f->on; i++) {
    int64_t want = d2r_numel(d2r_optim_params(o)[i]);
    uint64_t got = d2r_le_get_u64(f->onumel + 8 * i);
    if (got != (uint64_t)want) {
      d2r_fail("%s: optimiser parameter %d has %llu elements in the "
               "file, %lld here", f->path, i + 1, (unsigned long long)got,
               (long long)want);
      return -1;
    }
  }
  return 0;
}

static int match_rng(const parsed *f, const d2r_rng *r) {
  if (f->rngs.p == NULL) return bad(f, "holds no generator state");
  if (f->rsize != d2r_rng_state_size(r)) {
    d2r_fail("%s: the generator state has %zu bytes in the file, %zu "
             "here", f->path, f->rsize, d2r_rng_state_size(r));
    return -1;
  }
  return 0;
}

static int match_all(const parsed *f, const d2r_checkpoint *ck) {
  if (ck->nparams > 0 && match_params(f, ck) != 0) return -1;
  if (ck->optim && match_optim(f, ck->optim) != 0) return -1;
  if (ck->rng && match_rng(f, ck->rng) != 0) return -1;
  return 0;
}

/* ---- applying -------------------------------------------------------- */

/* What a failed apply puts back. */
typedef struct undo {
  uint8_t *rng;
  d2r_tensor *optim;
  double lr;
} undo;

static void undo_free(undo *u) {
  free(u->rng);
  d2r_release(u->optim);
}

/* Sets the generator and optimiser (the steps that can fail). */
static int apply_state(const parsed *f, const d2r_checkpoint *ck,
                       undo *u) {
  d2r_tensor *s = NULL;
  if (ck->optim) {
    s = d2r_empty(1, &f->olen);
    u->optim = d2r_optim_state_flat(ck->optim);
    u->lr = d2r_optim_lr(ck->optim);
    if (s == NULL || u->optim == NULL) {
      d2r_release(s);
      return -1;
    }
    decode_values(f->ostate, f->olen, d2r_data(s));
  }
  if (ck->rng) {
    u->rng = malloc(f->rsize > 0 ? f->rsize : 1);
    if (u->rng == NULL ||
        d2r_rng_get_state(ck->rng, u->rng, f->rsize) != 0 ||
        d2r_rng_set_state(ck->rng, f->rstate, f->rsize) != 0) {
      d2r_release(s);
      return -1;
    }
  }
  if (ck->optim && (d2r_optim_set_state_flat(ck->optim, s) != 0 ||
                    d2r_optim_set_lr(ck->optim, f->lr) != 0)) {
    d2r_optim_set_state_flat(ck->optim, u->optim);
    d2r_optim_set_lr(ck->optim, u->lr);
    if (ck->rng) d2r_rng_set_state(ck->rng, u->rng, f->rsize);
    d2r_release(s);
    return -1;
  }
  d2r_release(s);
  return 0;
}

/* A NUL-terminated copy of the metadata, or NULL when out of memory. */
static char *copy_meta(const parsed *f) {
  char *m = malloc(f->meta.left + 1);
  if (m == NULL) return NULL;
  if (f->meta.left > 0) memcpy(m, f->meta.p, f->meta.left);
  m[f->meta.left] = '\0';
  return m;
}

int d2r_checkpoint_load(const char *path, d2r_checkpoint *ck, char **meta) {
  if (path == NULL || ck == NULL || ck->nparams < 0 ||
      (ck->nparams > 0 && ck->params == NULL)) {
    d2r_fail("checkpoint_load: no path, no checkpoint or a bad "
             "parameter list given");
    return -1;
  }
  parsed f;
  undo u = {NULL, NULL, 0};
  char *m = NULL;
  int rc = parse_file(path, &f);
  if (rc == 0) rc = match_all(&f, ck);
  if (rc == 0 && meta && (m = copy_meta(&f)) == NULL)
    rc = bad(&f, "out of memory");
  if (rc == 0 && apply_state(&f, ck, &u) != 0) {
    char why[512];
    snprintf(why, sizeof why, "%s", d2r_error());
    d2r_fail("%s: cannot restore the state: %s", path, why);
    rc = -1;
  }
  if (rc == 0) {
    for (int i = 0; i < ck->nparams; i++)
      decode_values(f.recs[i].data, f.recs[i].numel,
                    d2r_data(ck->params[i]));
    ck->epoch = f.epoch;
    ck->step = f.step;
    ck->meta_len = f.meta.left;
    if (meta) *meta = m;
  } else {
    free(m);
  }
  undo_free(&u);
  parsed_free(&f);
  return rc;
}
