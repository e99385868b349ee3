/*
 * The whole public C API of the d2r engine in one include.  Each header
 * documents its own part; the conventions they share are set out in
 * d2r/tensor.h:
 *
 *   Ownership.  A function returning a d2r_tensor * returns a new
 *   reference (give it back with d2r_release); tensor arguments are
 *   borrowed.  Other objects come from a *_new function and go back
 *   through the matching *_free (or *_release for the reference-counted
 *   models and environments).  A borrowed pointer an object hands out
 *   (its parameters, a buffer, a name) stays valid while the object is
 *   alive.
 *
 *   Errors.  A failure returns NULL or a negative status and leaves a
 *   message in d2r_error() (per thread); a NULL tensor argument is taken
 *   for an earlier failure and passed on.  Nothing prints, exits or
 *   aborts.
 *
 *   Threads.  Error messages, the gradient-recording switch and the
 *   allocator's caches are per thread; a tensor, model or generator must
 *   not be used by two threads at once.
 *
 * Link with -ld2r (pkg-config d2r, or CMake find_package(d2r) and the
 * target d2r::d2r).
 */
#ifndef D2R_D2R_H
#define D2R_D2R_H

#include "d2r/tensor.h"
#include "d2r/linalg.h"
#include "d2r/rng.h"
#include "d2r/nn.h"
#include "d2r/dist.h"
#include "d2r/policy.h"
#include "d2r/objective.h"
#include "d2r/closed_form.h"
#include "d2r/theory.h"
#include "d2r/optim.h"
#include "d2r/bilevel.h"
#include "d2r/checkpoint.h"
#include "d2r/data.h"
#include "d2r/dataset.h"
#include "d2r/env.h"
#include "d2r/planner.h"
#include "d2r/dynamics.h"

#endif
