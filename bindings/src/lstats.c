/*
 * Distribution functions for the statistics in bindings/lua/stats.lua,
 * taken from GSL: Student's t cumulative distribution and its inverse
 * (for Welch's test and t intervals).  Arguments are checked here, since
 * GSL's error handler would otherwise abort on a bad one.
 */
#include <math.h>

#include <gsl/gsl_cdf.h>
#include <gsl/gsl_errno.h>

#include "lua.h"
#include "lauxlib.h"

#include "ld2r.h"

static double checkdf(lua_State *L, int arg) {
  double df = luaL_checknumber(L, arg);
  luaL_argcheck(L, df > 0 && !isinf(df), arg,
                "degrees of freedom must be positive and finite");
  return df;
}

/* d2r.tdist_cdf(t, df [, upper]): P(T <= t) for Student's t with df
 * degrees of freedom (df need not be an integer); P(T > t) when upper
 * is true.  NaN gives NaN. */
static int f_tdist_cdf(lua_State *L) {
  double t = luaL_checknumber(L, 1), df = checkdf(L, 2);
  int upper = lua_toboolean(L, 3);
  gsl_set_error_handler_off();
  if (isnan(t))
    lua_pushnumber(L, t);
  else
    lua_pushnumber(L, upper ? gsl_cdf_tdist_Q(t, df)
                            : gsl_cdf_tdist_P(t, df));
  return 1;
}

/* d2r.tdist_quantile(p, df): the t with P(T <= t) = p, for 0 < p < 1. */
static int f_tdist_quantile(lua_State *L) {
  double p = luaL_checknumber(L, 1), df = checkdf(L, 2);
  luaL_argcheck(L, p > 0 && p < 1, 1, "probability must be in (0, 1)");
  gsl_set_error_handler_off();
  lua_pushnumber(L, gsl_cdf_tdist_Pinv(p, df));
  return 1;
}

/* With the module table at the top: registers the functions above. */
int ld2r_open_statfns(lua_State *L) {
  lua_pushcfunction(L, f_tdist_cdf);
  lua_setfield(L, -2, "tdist_cdf");
  lua_pushcfunction(L, f_tdist_quantile);
  lua_setfield(L, -2, "tdist_quantile");
  return 0;
}
