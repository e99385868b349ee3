/*
 * Whole-file reads and atomic file writes for the engine's own file
 * formats (internal: nothing outside engine/src includes this).
 */
#ifndef D2R_FILE_IO_H
#define D2R_FILE_IO_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/*
 * Writes buf[0..size) to path atomically: a new temporary file next to
 * path is written, synced and renamed over it, then the directory is
 * synced.  On failure path is untouched and the temporary file removed.
 * The file gets mode 0666 minus the umask.  0 or -1 with a message
 * naming path.
 */
int d2r_file_write_atomic(const char *path, const void *buf, size_t size);

/* The whole file (malloc'd; free it) with its size in *size, or NULL
 * with a message naming path. */
uint8_t *d2r_file_read(const char *path, size_t *size);

/* Little-endian encoding of the file formats, independent of the host's
 * byte order. */
static inline void d2r_le_put_u32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static inline void d2r_le_put_u64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint32_t d2r_le_get_u32(const uint8_t *p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

static inline uint64_t d2r_le_get_u64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

static inline void d2r_le_put_f64(uint8_t *p, double x) {
  uint64_t bits;
  memcpy(&bits, &x, sizeof bits);
  d2r_le_put_u64(p, bits);
}

static inline double d2r_le_get_f64(const uint8_t *p) {
  uint64_t bits = d2r_le_get_u64(p);
  double x;
  memcpy(&x, &bits, sizeof x);
  return x;
}

#endif
