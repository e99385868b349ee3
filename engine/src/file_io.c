/*
 * Whole-file reads and atomic writes (file_io.h): the durable way to
 * replace a file is to write a temporary sibling, sync it, rename it
 * over the old name and sync the directory, so a crash at any point
 * leaves either the old file or the new one, never a mixture.
 */
#define _POSIX_C_SOURCE 200809L

#include "file_io.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "d2r/tensor.h"

static int write_all(int fd, const uint8_t *p, size_t size) {
  while (size > 0) {
    ssize_t k = write(fd, p, size);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) {
      if (k == 0) errno = EIO;
      return -1;
    }
    p += k;
    size -= (size_t)k;
  }
  return 0;
}

/* Creates a new file "<path>.tmp-<pid>-<n>"; its name goes to tmp. */
static int open_temp(const char *path, char *tmp, size_t cap) {
  for (int n = 0; n < 100; n++) {
    int k = snprintf(tmp, cap, "%s.tmp-%ld-%d", path, (long)getpid(), n);
    if (k < 0 || (size_t)k >= cap) {
      errno = ENAMETOOLONG;
      return -1;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd >= 0 || errno != EEXIST) return fd;
  }
  return -1;
}

/* Best effort: makes a rename durable by syncing its directory. */
static void sync_dir(const char *path) {
  char dir[4096];
  const char *slash = strrchr(path, '/');
  size_t len = slash == NULL ? 1 : (size_t)(slash - path);
  if (slash == path) len = 1;
  if (len >= sizeof dir) return;
  memcpy(dir, slash == NULL ? "." : path, len);
  dir[len] = '\0';
  int fd = open(dir, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  fsync(fd);
  close(fd);
}

int d2r_file_write_atomic(const char *path, const void *buf, size_t size) {
  char tmp[4096];
  int fd = open_temp(path, tmp, sizeof tmp);
  if (fd < 0) {
    d2r_fail("%s: cannot create a temporary file (%s)", path,
             strerror(errno));
    return -1;
  }
  int rc = write_all(fd, buf, size) == 0 && fsync(fd) == 0 ? 0 : -1;
  int err = errno;
  if (close(fd) != 0 && rc == 0) {
    rc = -1;
    err = errno;
  }
  if (rc == 0 && rename(tmp, path) != 0) {
    rc = -1;
    err = errno;
  }
  if (rc != 0) {
    unlink(tmp);
    d2r_fail("%s: cannot write (%s)", path, strerror(err));
    return -1;
  }
  sync_dir(path);
  return 0;
}

uint8_t *d2r_file_read(const char *path, size_t *size) {
  FILE *f = fopen(path, "rb");
  if (f == NULL)
    return d2r_fail("%s: cannot open (%s)", path, strerror(errno));
  size_t cap = 1 << 16, n = 0;
  uint8_t *buf = malloc(cap);
  while (buf != NULL) {
    n += fread(buf + n, 1, cap - n, f);
    if (n < cap) break;
    uint8_t *bigger = cap <= SIZE_MAX / 2 ? realloc(buf, cap * 2) : NULL;
    if (bigger == NULL) free(buf);
    buf = bigger;
    cap *= 2;
  }
  int err = ferror(f) ? errno : 0;
  fclose(f);
  if (buf == NULL) return d2r_fail("%s: out of memory reading", path);
  if (err != 0) {
    free(buf);
    return d2r_fail("%s: cannot read (%s)", path, strerror(err));
  }
  *size = n;
  return buf;
}
