/*
 * Replays inputs through a fuzz target without libFuzzer: each argument
 * is a file or a directory of files, each file one input to
 * LLVMFuzzerTestOneInput.  Used by ctest to run the seed corpora and the
 * kept regression inputs in every build.  Exits 1 when given nothing to
 * run (a missing corpus is an error, not a pass).
 */
#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "replay: cannot open %s\n", path);
    return -1;
  }
  size_t cap = 4096, n = 0;
  uint8_t *buf = malloc(cap);
  while (buf) {
    n += fread(buf + n, 1, cap - n, f);
    if (n < cap) break;
    uint8_t *bigger = realloc(buf, cap * 2);
    if (!bigger) free(buf);
    buf = bigger;
    cap *= 2;
  }
  fclose(f);
  if (!buf) return -1;
  LLVMFuzzerTestOneInput(buf, n);
  free(buf);
  return 0;
}

/* Runs path (a file, or every regular file in a directory); returns the
 * number of inputs run, or -1. */
static int run_path(const char *path) {
  struct stat st;
  if (stat(path, &st) != 0) {
    fprintf(stderr, "replay: no such file or directory: %s\n", path);
    return -1;
  }
  if (!S_ISDIR(st.st_mode)) return run_file(path) == 0 ? 1 : -1;
  DIR *d = opendir(path);
  if (!d) return -1;
  int count = 0;
  for (struct dirent *e; (e = readdir(d));) {
    if (e->d_name[0] == '.') continue;
    char full[4096];
    snprintf(full, sizeof full, "%s/%s", path, e->d_name);
    if (stat(full, &st) != 0 || !S_ISREG(st.st_mode)) continue;
    if (run_file(full) != 0) {
      count = -1;
      break;
    }
    count++;
  }
  closedir(d);
  return count;
}

int main(int argc, char **argv) {
  int total = 0;
  for (int i = 1; i < argc; i++) {
    int k = run_path(argv[i]);
    if (k < 0) return 1;
    total += k;
  }
  printf("replay: %d inputs run\n", total);
  return total > 0 ? 0 : 1;
}
