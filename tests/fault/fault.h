/*
 * Allocation-failure injection for the fault tests.  The programs are
 * linked with -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc, so every
 * allocation the engine and binding objects make (and only theirs:
 * libc, GSL, OpenBLAS and Lua keep the real allocator) goes through the
 * counters here; a Lua state made with fault_lua_alloc counts on the
 * same counter.  Armed with n, the n-th counted allocation fails (and,
 * in persistent mode, every one after it too).  free is wrapped as well,
 * so the number of live blocks those objects hold is known exactly.
 */
#ifndef D2R_FAULT_H
#define D2R_FAULT_H

#include <stdbool.h>
#include <stddef.h>

/* Starts counting: allocation number n (from 0) fails; with persistent
 * set, so does every later one until fault_disarm. */
void fault_arm(long n, bool persistent);
/* Stops failing and counting; returns the number of allocations made
 * while armed. */
long fault_disarm(void);
/* Whether a failure was injected since the last fault_arm. */
bool fault_injected(void);

/* Blocks allocated through the wrapped functions and not yet freed. */
long fault_live(void);

/* A lua_Alloc that fails like the wrapped allocator (only requests to
 * allocate or grow; freeing and shrinking always succeed, as Lua
 * expects). */
void *fault_lua_alloc(void *ud, void *ptr, size_t osize, size_t nsize);

/* 0, or the number of leaked blocks found by LeakSanitizer (run now, as
 * a recoverable check; always 0 in a build without it). */
int fault_leak_check(void);

#endif
