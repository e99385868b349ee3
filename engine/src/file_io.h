/*
 * Whole-file reads and atomic file writes for the engine's own file
 * formats (internal: nothing outside engine/src includes this).
 */
#ifndef D2R_FILE_IO_H
#define D2R_FILE_IO_H

#include <stddef.h>
#include <stdint.h>

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

#endif
