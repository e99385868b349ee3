#!/usr/bin/env bash
# Runs every test twice: in the Release build that scripts/setup.sh makes
# (installing what is missing first), then in a Debug build with
# AddressSanitizer, LeakSanitizer and UBSan (build-asan/).  Sanitizer
# reports go to files, because Criterion runs each test in a child process
# whose leak report would not fail the test; any report fails the run.
# Exits non-zero if anything failed, after a line "tests: N passed, M
# failed" summing the ctest tests of both runs (and the Criterion cases
# inside the engine test binary).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
status=0
passed=0
failed=0
cases_passed=0
cases_failed=0

say() { printf 'test: %s\n' "$*"; }

# Adds the counts of a ctest log ("... tests failed out of N").
count() {
  local line total bad
  line=$(grep -E 'tests failed out of [0-9]+' "$1" | tail -n 1) || return 0
  bad=$(sed -E 's/.* ([0-9]+) tests failed out of.*/\1/' <<<"$line")
  total=$(sed -E 's/.*out of ([0-9]+).*/\1/' <<<"$line")
  passed=$((passed + total - bad))
  failed=$((failed + bad))
}

# Adds the Criterion case counts that ctest recorded in build dir $1.
count_cases() {
  local log="$1/Testing/Temporary/LastTest.log" p f c
  [ -f "$log" ] || return 0
  while read -r _ p f c; do
    cases_passed=$((cases_passed + p))
    cases_failed=$((cases_failed + f + c))
  done < <(grep -E 'Synthesis: Tested:' "$log" |
             sed -E 's/[^0-9]+/ /g; s/^ //')
}

# Runs ctest in build dir $1, keeping its log; a failure is recorded.
run_ctest() {
  local log="$1/ctest.log"
  if ! ctest --test-dir "$1" --output-on-failure 2>&1 | tee "$log"; then
    status=1
  fi
  count "$log"
  count_cases "$1"
}

bash scripts/setup.sh --no-run

say "release build"
run_ctest build

say "sanitized build (build-asan)"
cmake -S . -B build-asan -DD2R_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
cmake --build build-asan -j"$(nproc)"
logs=$root/build-asan/sanitizer-logs
rm -rf "$logs"
mkdir -p "$logs"
lsan=""
if [ -f tests/lsan.supp ]; then lsan="suppressions=$root/tests/lsan.supp"; fi
ASAN_OPTIONS="detect_leaks=1:log_path=$logs/asan" \
LSAN_OPTIONS="$lsan" \
UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$logs/ubsan" \
  run_ctest build-asan

nreports=$(find "$logs" -type f | wc -l)
if [ "$nreports" -gt 0 ]; then
  say "sanitizer reports:"
  find "$logs" -type f -exec cat {} +
  say "$nreports sanitizer report(s) in $logs"
  status=1
fi

# A short fuzzing round of every reader of outside data (skipped with a
# message when clang is missing); a crash found fails the run and is kept
# in tests/fuzz/regressions/ for the replay tests.
say "fuzzing (5 s per reader, scripts/fuzz.sh)"
bash scripts/fuzz.sh 5 || status=1

say "engine test cases inside those: $cases_passed passed," \
    "$cases_failed failed"
echo "tests: $passed passed, $failed failed"
exit "$status"
