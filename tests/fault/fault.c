/*
 * The failing allocator of fault.h: __wrap_malloc, __wrap_calloc and
 * __wrap_realloc count the allocations of the objects linked with
 * --wrap and fail the chosen one, and with __wrap_free keep the count of
 * live blocks; the Lua allocator counts on the same failure counter (its
 * blocks are not in the live count).  A failure never touches the block
 * it would have replaced.
 */
#include "fault.h"

#include <stdlib.h>

#if defined(__SANITIZE_ADDRESS__)
#define FAULT_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FAULT_LSAN 1
#endif
#endif
#ifdef FAULT_LSAN
#include <sanitizer/lsan_interface.h>
#endif

void *__real_malloc(size_t size);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t size);
void __real_free(void *p);
void *__wrap_malloc(size_t size);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t size);
void __wrap_free(void *p);

static bool armed, persistent, injected;
static long target, counted, live;

void fault_arm(long n, bool keep_failing) {
  target = n;
  persistent = keep_failing;
  counted = 0;
  injected = false;
  armed = true;
}

long fault_disarm(void) {
  armed = false;
  return counted;
}

bool fault_injected(void) { return injected; }

long fault_live(void) { return live; }

/* Counts one allocation; true when it must fail. */
static bool fail_now(void) {
  if (!armed) return false;
  long k = counted++;
  if (k == target || (persistent && k > target)) {
    injected = true;
    return true;
  }
  return false;
}

/* Counts a new block when q is one. */
static void *track(void *q) {
  if (q != NULL) live++;
  return q;
}

void *__wrap_malloc(size_t size) {
  return fail_now() ? NULL : track(__real_malloc(size));
}

void *__wrap_calloc(size_t n, size_t size) {
  return fail_now() ? NULL : track(__real_calloc(n, size));
}

void *__wrap_realloc(void *p, size_t size) {
  if (p == NULL) return __wrap_malloc(size);
  if (size == 0) {
    live--;
    return __real_realloc(p, size);
  }
  return fail_now() ? NULL : __real_realloc(p, size);
}

void __wrap_free(void *p) {
  if (p != NULL) live--;
  __real_free(p);
}

void *fault_lua_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  (void)ud;
  if (nsize == 0) {
    __real_free(ptr);
    return NULL;
  }
  if (ptr == NULL || nsize > osize) {
    if (fail_now()) return NULL;
  }
  return __real_realloc(ptr, nsize);
}

int fault_leak_check(void) {
#ifdef FAULT_LSAN
  return __lsan_do_recoverable_leak_check();
#else
  return 0;
#endif
}
