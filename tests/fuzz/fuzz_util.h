/*
 * Helpers shared by the fuzz targets: the engine's readers take a path,
 * so each input is written to a private temporary file first; and for
 * formats sealed by a trailing CRC-32, a copy with the checksum made
 * right lets the fuzzer reach the parsing behind the checksum check.
 * Include it in one file per program; its functions are static (inline
 * where a target may not use them).
 */
#ifndef D2R_FUZZ_UTIL_H
#define D2R_FUZZ_UTIL_H

#define _POSIX_C_SOURCE 200809L

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "d2r/nn.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char fuzz_path[256];

static void fuzz_remove(void) {
  if (fuzz_path[0]) unlink(fuzz_path);
}

/* Writes data to this process's temporary file; its path, or NULL. */
static const char *fuzz_file(const char *name, const uint8_t *data,
                             size_t size) {
  if (!fuzz_path[0]) {
    /* tmpfs when there is one: rewriting a file on disk is slow */
    const char *dir = getenv("TMPDIR");
    if (!dir || !*dir) dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm"
                                                           : "/tmp";
    snprintf(fuzz_path, sizeof fuzz_path, "%s/d2r-fuzz-%s-%ld", dir, name,
             (long)getpid());
    atexit(fuzz_remove);
  }
  FILE *f = fopen(fuzz_path, "wb");
  if (!f) return NULL;
  size_t put = size ? fwrite(data, 1, size, f) : 0;
  if (fclose(f) != 0 || put != size) return NULL;
  return fuzz_path;
}

/* A malloc'd copy of data whose last 4 bytes are the CRC-32 of the rest
 * (little-endian), or NULL when that changes nothing. */
static inline uint8_t *fuzz_fix_crc(const uint8_t *data, size_t size) {
  if (size < 8) return NULL;
  uint32_t crc = d2r_crc32(0, data, size - 4);
  uint8_t tail[4];
  for (int i = 0; i < 4; i++) tail[i] = (uint8_t)(crc >> (8 * i));
  if (memcmp(tail, data + size - 4, 4) == 0) return NULL;
  uint8_t *copy = malloc(size);
  if (!copy) return NULL;
  memcpy(copy, data, size - 4);
  memcpy(copy + size - 4, tail, 4);
  return copy;
}

#endif
