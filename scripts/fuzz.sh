#!/usr/bin/env bash
# Fuzzes every reader of outside data with libFuzzer (clang, with
# AddressSanitizer and UBSan): the CSV reader, D2RP parameter files, D2RC
# checkpoints and D2RT datasets (tests/fuzz/fuzz_*.c).  Builds them into
# build-fuzz/ and runs each for a bounded time, starting from a copy of
# its seed corpus (tests/fuzz/corpus/NAME) plus the kept regressions.
# An input that crashes a reader is copied to tests/fuzz/regressions/NAME
# (replayed by ctest from then on) and the run fails.
#
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET [NAME...]]  (default 20, all)
# Without clang it prints a skip line and exits 0.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
budget=${1:-20}
shift || true
names=("$@")
if [ "${#names[@]}" -eq 0 ]; then names=(csv params checkpoint dataset); fi

say() { printf 'fuzz: %s\n' "$*"; }

cc=""
for c in clang-14 clang; do
  if command -v "$c" >/dev/null; then cc=$c; break; fi
done
if [ -z "$cc" ]; then
  say "SKIPPED: clang not found (apt-get install clang-14" \
      "libclang-rt-14-dev)"
  exit 0
fi
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
printf 'int LLVMFuzzerTestOneInput(const char *d, long n)' >"$probe/p.c"
printf ' { return d && n < 0; }\n' >>"$probe/p.c"
if ! "$cc" -fsanitize=fuzzer,address "$probe/p.c" -o "$probe/p" \
     2>/dev/null; then
  say "SKIPPED: $cc cannot link libFuzzer (apt-get install" \
      "libclang-rt-14-dev)"
  exit 0
fi

build=$root/build-fuzz
say "building the fuzz targets with $cc into build-fuzz/"
mkdir -p "$build"
cmake -S . -B "$build" -DCMAKE_C_COMPILER="$cc" -DCMAKE_BUILD_TYPE=Debug \
  -DD2R_FUZZ=ON -DD2R_FAULT_TESTS=OFF -DD2R_BUILD_EXAMPLES=OFF \
  -DD2R_BUILD_BENCH=OFF >"$build/build.log" 2>&1 ||
  { cat "$build/build.log"; exit 1; }
targets=()
for n in "${names[@]}"; do targets+=("fuzz_$n"); done
cmake --build "$build" -j"$(nproc)" --target "${targets[@]}" \
  >>"$build/build.log" 2>&1 || { tail -n 40 "$build/build.log"; exit 1; }

status=0
total=0
for n in "${names[@]}"; do
  work=$build/corpus/$n
  art=$build/artifacts/$n
  mkdir -p "$work" "$art"
  cp -n tests/fuzz/corpus/"$n"/* "$work"/ 2>/dev/null || true
  cp -n tests/fuzz/regressions/"$n"/* "$work"/ 2>/dev/null || true
  log=$build/fuzz_$n.log
  rc=0
  (cd "$build" && ASAN_OPTIONS=detect_leaks=1 \
     UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
     "$build/tests/fuzz/fuzz_$n" -max_total_time="$budget" -timeout=10 \
       -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
       -artifact_prefix="$art/" "$work") >"$log" 2>&1 || rc=$?
  runs=$(grep -E '^stat::number_of_executed_units' "$log" |
         awk '{print $2}' | tail -n 1)
  runs=${runs:-0}
  total=$((total + runs))
  inputs=$(find "$work" -type f | wc -l)
  if [ "$rc" -ne 0 ]; then
    status=1
    mkdir -p tests/fuzz/regressions/"$n"
    for a in "$art"/*; do
      [ -f "$a" ] || continue
      cp "$a" tests/fuzz/regressions/"$n"/
      say "$n: kept $(basename "$a") in tests/fuzz/regressions/$n/"
    done
    say "$n: FAILED after $runs executions (log: $log)"
    grep -E 'ERROR|SUMMARY|#[0-9]+ 0x' "$log" | head -n 20 || true
  else
    say "$n: $runs executions in ${budget}s, no failure" \
        "(corpus now $inputs inputs)"
  fi
done
say "total: $total executions over ${#names[@]} target(s)"
exit "$status"
