#!/usr/bin/env bash
# Runs the Lua tests (tests/lua/test_*.lua) and the examples (the Lua
# scripts and the C programs of examples/) under Valgrind's memcheck:
# any invalid read or write, use of uninitialised memory, or leaked block
# (definitely or indirectly lost) fails the run.  Builds into
# build-valgrind/ with the engine's memory caches off (D2R_NO_CACHE), so
# that every block the engine frees really goes back to the allocator.
# Runs nproc programs at a time; one log per program in
# build-valgrind/valgrind/.  Exits non-zero if any program failed, after
# a line "valgrind: N passed, M failed".
#
# Usage: scripts/valgrind.sh [PATTERN]   (only programs whose name
# contains PATTERN, e.g. test_nn)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
pattern=${1:-}
say() { printf 'valgrind: %s\n' "$*"; }

if ! command -v valgrind >/dev/null; then
  say "valgrind not found: apt-get install valgrind" >&2
  exit 1
fi

build=$root/build-valgrind
say "building into build-valgrind/ (D2R_NO_CACHE)"
mkdir -p "$build"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_FLAGS=-DD2R_NO_CACHE -DD2R_FAULT_TESTS=OFF \
  -DD2R_BUILD_BENCH=OFF >"$build/build.log" 2>&1 ||
  { cat "$build/build.log"; exit 1; }
cmake --build "$build" -j"$(nproc)" >>"$build/build.log" 2>&1 ||
  { tail -n 40 "$build/build.log"; exit 1; }

logs=$build/valgrind
rm -rf "$logs"
mkdir -p "$logs" "$build/misuse"

# One line per program: name, working directory, command.
jobs=$logs/jobs
: >"$jobs"
for t in tests/lua/test_*.lua; do
  name=$(basename "$t" .lua)
  wd=$root
  if [ "$name" = test_misuse ]; then wd=$build/misuse; fi
  printf '%s\t%s\t%s\n' "$name" "$wd" "$build/d2r $root/$t" >>"$jobs"
done
for ex in examples/*.lua; do
  printf '%s\t%s\t%s\n' "example_$(basename "$ex" .lua)" "$root" \
    "$build/d2r $root/$ex" >>"$jobs"
done
printf '%s\t%s\t%s\n' example_c_train "$root" \
  "$build/examples/c_train/c_train $root/data/uci/iris.csv" >>"$jobs"
printf '%s\t%s\t%s\n' example_lua_host "$root" \
  "$build/examples/lua_host/lua_host" >>"$jobs"
if [ -n "$pattern" ]; then
  grep -F -- "$pattern" "$jobs" >"$jobs.sel" || true
  mv "$jobs.sel" "$jobs"
fi

supp=()
if [ -f tests/valgrind.supp ]; then
  supp=(--suppressions="$root/tests/valgrind.supp")
fi

# Runs one job line; writes NAME.log and NAME.status.
run_one() {
  local name wd cmd rc=0
  IFS=$'\t' read -r name wd cmd <<<"$1"
  (cd "$wd" && OPENBLAS_NUM_THREADS=1 valgrind --quiet \
     --leak-check=full --show-leak-kinds=definite,indirect \
     --errors-for-leak-kinds=definite,indirect --error-exitcode=99 \
     --track-origins=yes --trace-children=no "${supp[@]}" \
     $cmd) >"$logs/$name.log" 2>&1 || rc=$?
  echo "$rc" >"$logs/$name.status"
}
n=$(wc -l <"$jobs")
say "running $n programs under memcheck, $(nproc) at a time"
started=$(date +%s)
while IFS= read -r line; do
  while [ "$(jobs -rp | wc -l)" -ge "$(nproc)" ]; do wait -n || true; done
  run_one "$line" </dev/null &
done <"$jobs"
wait

passed=0
failed=0
while IFS=$'\t' read -r name _ _; do
  rc=$(cat "$logs/$name.status" 2>/dev/null || echo "not run")
  if [ "$rc" = 0 ]; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    if [ "$rc" = 99 ]; then
      say "$name: memcheck errors (log: $logs/$name.log)"
      grep -E '^==[0-9]+== (Invalid|Conditional|Use of|[0-9,]+ .*lost)' \
        -A 8 "$logs/$name.log" | head -n 40 || true
    else
      say "$name: exit status $rc (log: $logs/$name.log)"
      tail -n 15 "$logs/$name.log"
    fi
  fi
done <"$jobs"
say "$(( $(date +%s) - started ))s"
echo "valgrind: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
