#!/usr/bin/env bash
# Installs the build into a temporary prefix, then uses that copy as a
# host project would: builds and runs examples/c_train and
# examples/lua_host with find_package(d2r), builds both again with
# pkg-config (d2r, d2r-lua), loads the module from stock lua5.4 through
# LUA_CPATH, and runs the installed executable.
# Usage: test_install.sh BUILD_DIR SOURCE_DIR [SANITIZE(ON|OFF)]
set -euo pipefail

build=$1
src=$2
case "${3:-OFF}" in
  ON|on|On|1|TRUE|true|True|YES|yes|Y|y) sanitize=ON ;;
  *) sanitize=OFF ;;
esac
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
iris=$src/data/uci/iris.csv
cflags=""
preload=""
if [ "$sanitize" = ON ]; then
  cflags="-fsanitize=address,undefined"
  # A stock interpreter loading a sanitized module needs the runtime
  # loaded first.
  preload=$(${CC:-cc} -print-file-name=libasan.so)
fi

say() { printf 'install test: %s\n' "$*"; }
fail() { say "FAILED: $*" >&2; exit 1; }

say "cmake --install into $prefix"
cmake --install "$build" --prefix "$prefix" >"$tmp/install.log" ||
  { cat "$tmp/install.log"; fail "cmake --install"; }

# Finds the one installed file matching a path pattern under the prefix.
find_one() {
  local f
  f=$(find "$prefix" -path "$prefix/$1" | head -n 1)
  [ -n "$f" ] || fail "nothing installed matches $1"
  printf '%s\n' "$f"
}
find_one "include/d2r/d2r.h" >/dev/null
find_one "include/d2r/tensor.h" >/dev/null
find_one "include/d2r_lua.h" >/dev/null
find_one "bin/d2r" >/dev/null
lib=$(find_one "lib*/libd2r.so")
libdir=$(dirname "$lib")
find_one "lib*/libd2r_lua.so" >/dev/null
module=$(find_one "lib*/lua/5.4/d2r.so")
pcdir=$(dirname "$(find_one "lib*/pkgconfig/d2r.pc")")
find_one "lib*/pkgconfig/d2r-lua.pc" >/dev/null
find_one "lib*/cmake/d2r/d2rConfig.cmake" >/dev/null
find_one "lib*/cmake/d2r/d2rTargets.cmake" >/dev/null

# Every engine header is part of the umbrella header.
for h in "$prefix"/include/d2r/*.h; do
  name=$(basename "$h")
  [ "$name" = d2r.h ] && continue
  grep -q "#include \"d2r/$name\"" "$prefix/include/d2r/d2r.h" ||
    fail "d2r/d2r.h does not include d2r/$name"
done

# Runs an example binary and checks its output for a pattern.
run_check() {
  local what=$1 pattern=$2 out
  shift 2
  local rc=0
  out=$("$@" 2>&1) || rc=$?
  [ "$rc" -eq 0 ] || { printf '%s\n' "$out"; fail "$what exited $rc"; }
  printf '%s\n' "$out" | grep -q -- "$pattern" ||
    { printf '%s\n' "$out"; fail "$what: no '$pattern' in its output"; }
  say "$what: ok"
}

for ex in c_train lua_host; do
  say "building examples/$ex with find_package(d2r)"
  cmake -S "$src/examples/$ex" -B "$tmp/$ex" -DCMAKE_PREFIX_PATH="$prefix" \
    -DCMAKE_C_FLAGS="$cflags" -DCMAKE_FIND_PACKAGE_NO_PACKAGE_REGISTRY=ON \
    >"$tmp/$ex.log" 2>&1 || { cat "$tmp/$ex.log"; fail "configure $ex"; }
  cmake --build "$tmp/$ex" >>"$tmp/$ex.log" 2>&1 ||
    { cat "$tmp/$ex.log"; fail "build $ex"; }
  grep -q "$prefix" "$tmp/$ex/CMakeCache.txt" ||
    fail "$ex did not find the installed package"
done
run_check "c_train (find_package)" "test accuracy" "$tmp/c_train/c_train" \
  "$iris"
run_check "lua_host (find_package)" "still alive" "$tmp/lua_host/lua_host"

say "building both examples with pkg-config"
export PKG_CONFIG_PATH=$pcdir
# shellcheck disable=SC2046,SC2086
${CC:-cc} -std=c11 $cflags -o "$tmp/c_train_pc" \
  "$src/examples/c_train/c_train.c" $(pkg-config --cflags --libs d2r) ||
  fail "cc with pkg-config d2r"
# shellcheck disable=SC2046,SC2086
${CC:-cc} -std=c11 $cflags -o "$tmp/lua_host_pc" \
  "$src/examples/lua_host/lua_host.c" \
  $(pkg-config --cflags --libs d2r-lua) || fail "cc with pkg-config d2r-lua"
run_check "c_train (pkg-config)" "test accuracy" \
  env LD_LIBRARY_PATH="$libdir" "$tmp/c_train_pc" "$iris"
run_check "lua_host (pkg-config)" "still alive" \
  env LD_LIBRARY_PATH="$libdir" "$tmp/lua_host_pc"

if command -v lua5.4 >/dev/null; then
  run_check "stock lua5.4 loads the module" "module ok" \
    env LUA_CPATH="$(dirname "$module")/?.so" LD_PRELOAD="$preload" \
    lua5.4 -e '
      local d2r = require "d2r"
      assert(package.searchpath("d2r", package.cpath):find("/lua/5.4/"))
      assert((d2r.ones(2, 3) * 2):sum():item() == 12)
      print("module ok", d2r.version)'
else
  say "no lua5.4 interpreter: skipping the stock-interpreter check"
fi
run_check "installed d2r executable" "zeros" "$prefix/bin/d2r" -e \
  'print(assert(d2r.doc("d2r.zeros")))'
say "all passed"
