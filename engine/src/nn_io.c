/*
 * Parameter files in the D2RP format (documented in d2r/nn.h): encoding,
 * atomic writes, and loads that validate everything before touching a
 * parameter.
 */
#define _POSIX_C_SOURCE 200809L

#include "file_io.h"
#include "d2r/nn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HEADER_SIZE 24
#define TRAILER_SIZE 4
#define MAX_TENSORS 1000000

uint32_t d2r_crc32(uint32_t crc, const void *buf, size_t size) {
  const uint8_t *p = buf;
  crc = ~crc;
  for (size_t i = 0; i < size; i++) {
    crc ^= p[i];
    for (int k = 0; k < 8; k++)
      crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
  }
  return ~crc;
}

/* ---- encoding a parameter list ------------------------------------------ */

static size_t record_size(const d2r_tensor *t) {
  return 4 + 8 * (size_t)d2r_ndim(t) + 8 * (size_t)d2r_numel(t);
}

/* Appends the record of t at p; returns the end, or NULL on failure. */
static uint8_t *put_record(uint8_t *p, d2r_tensor *t) {
  int nd = d2r_ndim(t);
  d2r_le_put_u32(p, (uint32_t)nd);
  p += 4;
  for (int d = 0; d < nd; d++, p += 8)
    d2r_le_put_u64(p, (uint64_t)d2r_shape(t)[d]);
  d2r_tensor *c = d2r_contiguous(t);
  if (c == NULL) return NULL;
  const double *v = d2r_data(c);
  for (int64_t i = 0; i < d2r_numel(c); i++, p += 8) d2r_le_put_f64(p, v[i]);
  d2r_release(c);
  return p;
}

/* The whole file image of params[0..n): malloc'd, size in *size. */
static uint8_t *encode(const char *path, int n, d2r_tensor *const *params,
                       size_t *size) {
  size_t total = HEADER_SIZE + TRAILER_SIZE;
  for (int i = 0; i < n; i++) {
    if (params[i] == NULL) return NULL;
    total += record_size(params[i]);
  }
  uint8_t *buf = malloc(total), *p = buf + HEADER_SIZE;
  if (buf == NULL) return d2r_fail("%s: out of memory", path);
  memcpy(buf, D2R_PARAMS_MAGIC, 4);
  d2r_le_put_u32(buf + 4, D2R_PARAMS_VERSION);
  d2r_le_put_u32(buf + 8, (uint32_t)n);
  d2r_le_put_u32(buf + 12, 0);
  d2r_le_put_u64(buf + 16, (uint64_t)total);
  for (int i = 0; i < n && p != NULL; i++) p = put_record(p, params[i]);
  if (p == NULL) {
    free(buf);
    return NULL;
  }
  d2r_le_put_u32(p, d2r_crc32(0, buf, total - TRAILER_SIZE));
  *size = total;
  return buf;
}

/* ---- atomic writes ------------------------------------------------------ */

int d2r_params_save(const char *path, int n, d2r_tensor *const *params) {
  if (path == NULL || n < 0 || (n > 0 && params == NULL) ||
      n > MAX_TENSORS) {
    d2r_fail("params_save: invalid path or parameter list");
    return -1;
  }
  size_t size = 0;
  uint8_t *buf = encode(path, n, params, &size);
  if (buf == NULL) return -1;
  int rc = d2r_file_write_atomic(path, buf, size);
  free(buf);
  return rc;
}

/* ---- reading and validating a file -------------------------------------- */

typedef struct record {
  int ndim;
  int64_t shape[D2R_MAXDIM];
  int64_t numel;
  const uint8_t *data;
} record;

typedef struct image {
  uint8_t *buf;
  size_t size;
  int count;
  record *recs;
} image;

static void image_free(image *im) {
  free(im->buf);
  free(im->recs);
}

/* Reads the whole file into im->buf; 0 or -1. */
static int slurp(const char *path, image *im) {
  im->buf = d2r_file_read(path, &im->size);
  return im->buf ? 0 : -1;
}

/* Magic, version, declared length and checksum; 0 or -1. */
static int check_frame(const char *path, const image *im) {
  const uint8_t *b = im->buf;
  if (im->size >= 4 && memcmp(b, D2R_PARAMS_MAGIC, 4) != 0) {
    d2r_fail("%s: not a d2r parameter file (bad magic)", path);
    return -1;
  }
  if (im->size < HEADER_SIZE + TRAILER_SIZE) {
    d2r_fail("%s: truncated (%zu bytes, shorter than a header)", path,
             im->size);
    return -1;
  }
  uint32_t version = d2r_le_get_u32(b + 4);
  if (version != D2R_PARAMS_VERSION) {
    d2r_fail("%s: unsupported format version %u (expected %d)", path,
             (unsigned)version, D2R_PARAMS_VERSION);
    return -1;
  }
  uint64_t declared = d2r_le_get_u64(b + 16);
  if (declared != im->size) {
    d2r_fail("%s: %s: %zu bytes, the header declares %llu", path,
             declared > im->size ? "truncated" : "wrong length",
             im->size, (unsigned long long)declared);
    return -1;
  }
  size_t body = im->size - TRAILER_SIZE;
  if (d2r_crc32(0, b, body) != d2r_le_get_u32(b + body)) {
    d2r_fail("%s: checksum mismatch (file corrupted)", path);
    return -1;
  }
  return 0;
}

/* Parses the record at *pos (bounded by end) into r; 0 or -1. */
static int parse_record(const image *im, size_t *pos, size_t end,
                        record *r) {
  const uint8_t *b = im->buf;
  if (end - *pos < 4) return -1;
  uint32_t nd = d2r_le_get_u32(b + *pos);
  *pos += 4;
  if (nd > D2R_MAXDIM || (end - *pos) / 8 < nd) return -1;
  r->ndim = (int)nd;
  r->numel = 1;
  uint64_t span = 1;    /* product of the non-zero sizes: a shape with a
                         * zero holds nothing but must still have strides */
  for (uint32_t d = 0; d < nd; d++, *pos += 8) {
    uint64_t dim = d2r_le_get_u64(b + *pos);
    if (dim != 0 && span > (UINT64_C(1) << 50) / dim) return -1;
    span *= dim != 0 ? dim : 1;
    r->shape[d] = (int64_t)dim;
    if (dim != 0 && (uint64_t)r->numel > (end - *pos) / 8 / dim) return -1;
    r->numel *= (int64_t)dim;
  }
  if ((end - *pos) / 8 < (uint64_t)r->numel) return -1;
  r->data = b + *pos;
  *pos += 8 * (size_t)r->numel;
  return 0;
}

static int parse_records(const char *path, image *im) {
  uint32_t count = d2r_le_get_u32(im->buf + 8);
  if (count > MAX_TENSORS) {
    d2r_fail("%s: malformed (declares %u tensors)", path, (unsigned)count);
    return -1;
  }
  im->recs = calloc(count > 0 ? count : 1, sizeof *im->recs);
  if (im->recs == NULL) {
    d2r_fail("%s: out of memory", path);
    return -1;
  }
  size_t pos = HEADER_SIZE, end = im->size - TRAILER_SIZE;
  for (uint32_t i = 0; i < count; i++) {
    if (parse_record(im, &pos, end, &im->recs[i]) != 0) {
      d2r_fail("%s: malformed record %u", path, (unsigned)i);
      return -1;
    }
  }
  if (pos != end) {
    d2r_fail("%s: malformed (%zu stray bytes after the last tensor)", path,
             end - pos);
    return -1;
  }
  im->count = (int)count;
  return 0;
}

/* Reads and validates path into im (free it with image_free). */
static int image_read(const char *path, image *im) {
  *im = (image){NULL, 0, 0, NULL};
  if (path == NULL) {
    d2r_fail("params_load: no path given");
    return -1;
  }
  if (slurp(path, im) != 0) return -1;
  if (check_frame(path, im) != 0 || parse_records(path, im) != 0) {
    image_free(im);
    return -1;
  }
  return 0;
}

/* ---- loading into tensors ----------------------------------------------- */

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

/* Every record fits its parameter; 0 or -1 with a message. */
static int check_against(const char *path, const image *im, int n,
                         d2r_tensor *const *params) {
  if (im->count != n) {
    d2r_fail("%s: holds %d tensors, expected %d", path, im->count, n);
    return -1;
  }
  for (int i = 0; i < n; i++) {
    if (params[i] == NULL) return -1;
    char fs[96], ms[96];
    if (!d2r_is_contiguous(params[i])) {
      d2r_fail("%s: parameter %d is not contiguous", path, i);
      return -1;
    }
    if (!record_matches(&im->recs[i], params[i])) {
      record_shape_str(&im->recs[i], fs, sizeof fs);
      d2r_shape_str(params[i], ms, sizeof ms);
      d2r_fail("%s: tensor %d has shape %s in the file, expected %s",
               path, i, fs, ms);
      return -1;
    }
  }
  return 0;
}

static void record_decode(const record *r, double *out) {
  for (int64_t i = 0; i < r->numel; i++)
    out[i] = d2r_le_get_f64(r->data + 8 * i);
}

int d2r_params_load(const char *path, int n, d2r_tensor *const *params) {
  if (n < 0 || (n > 0 && params == NULL)) {
    d2r_fail("params_load: invalid parameter list");
    return -1;
  }
  image im;
  if (image_read(path, &im) != 0) return -1;
  int rc = check_against(path, &im, n, params);
  for (int i = 0; i < n && rc == 0; i++)
    record_decode(&im.recs[i], d2r_data(params[i]));
  image_free(&im);
  return rc;
}

static d2r_tensor *record_tensor(const record *r) {
  d2r_tensor *t = d2r_empty(r->ndim, r->shape);
  if (t != NULL) record_decode(r, d2r_data(t));
  return t;
}

int d2r_params_read(const char *path, int *count, d2r_tensor ***tensors) {
  image im;
  if (image_read(path, &im) != 0) return -1;
  d2r_tensor **ts = calloc(im.count > 0 ? (size_t)im.count : 1, sizeof *ts);
  int made = 0;
  while (ts != NULL && made < im.count) {
    ts[made] = record_tensor(&im.recs[made]);
    if (ts[made] == NULL) break;
    made++;
  }
  image_free(&im);
  if (ts == NULL || made < im.count) {
    for (int i = 0; ts != NULL && i < made; i++) d2r_release(ts[i]);
    free(ts);
    if (ts == NULL) d2r_fail("%s: out of memory", path);
    return -1;
  }
  *count = made;
  *tensors = ts;
  return 0;
}

int d2r_model_save(d2r_model *m, const char *path) {
  if (m == NULL) return -1;
  return d2r_params_save(path, d2r_model_nparams(m), d2r_model_params(m));
}

int d2r_model_load(d2r_model *m, const char *path) {
  if (m == NULL) return -1;
  return d2r_params_load(path, d2r_model_nparams(m), d2r_model_params(m));
}
