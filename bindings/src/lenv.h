/*
 * Declarations shared by the binding files of environments, datasets,
 * planners (lenv.c) and dynamics models (ldynamics.c).
 */
#ifndef LENV_H
#define LENV_H

#include <stdbool.h>

#include "lua.h"

#include "d2r/dataset.h"
#include "d2r/env.h"

#define LD2R_ENV "d2r.Env"
#define LD2R_DATASET "d2r.Dataset"
#define LD2R_PLANNER "d2r.Planner"
#define LD2R_DYNAMICS "d2r.Dynamics"

d2r_env *ld2r_checkenv(lua_State *L, int arg);

/* Whether a Lua callback of an engine call (a policy, a model, a reward,
 * a Lua environment's function) is running on this thread; objects that
 * call may hold cannot be closed then.  ld2r_refuse_close raises the
 * error that says so for a `what`. */
int ld2r_in_callback(void);
int ld2r_refuse_close(lua_State *L, const char *what);
d2r_dataset *ld2r_checkdataset(lua_State *L, int arg);

/* An environment written in Lua runs its callbacks on the thread of the
 * binding call in progress: bind before calling into the engine with e
 * (returns the previous thread), unbind after (before raising).  Both
 * do nothing for other environments and for NULL. */
lua_State *ld2r_env_bind(lua_State *L, d2r_env *e);
void ld2r_env_unbind(d2r_env *e, lua_State *prev);

/* When the value at idx is a d2r.Dynamics, fills *out with it as a
 * planner's model, sets *reward_env to the env whose reward function it
 * plans with (to bind), and returns true. */
bool ld2r_testdynamics(lua_State *L, int idx, d2r_dynamics *out,
                       d2r_env **reward_env);
/* Registers d2r.Dynamics and its functions (module table at the top). */
int ld2r_open_dynamics(lua_State *L);

#endif
