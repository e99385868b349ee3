#!/usr/bin/env bash
# Counts heap allocations per step of d2r's benchmark workloads: runs
# `d2r_bench --child W --steps N` under valgrind for two step counts and
# divides the difference of valgrind's "total heap usage" by the
# difference of the counts, so set-up cost cancels out.
#
# usage: bench/alloc_count.sh [BENCH_EXE] [WORKLOADS]
#   BENCH_EXE  the d2r_bench executable (default build/bench/d2r_bench)
#   WORKLOADS  space-separated workload numbers (default "1 2 3 4 5 8")
# Needs valgrind (apt-get install valgrind).  Slow: memcheck runs the
# program some 20-50 times slower.
set -euo pipefail

exe=${1:-build/bench/d2r_bench}
workloads=${2:-1 2 3 4 5 8}

if ! command -v valgrind >/dev/null; then
  echo "alloc_count: valgrind not found (apt-get install valgrind)" >&2
  exit 1
fi

# Steps per run for each workload: small ones need more to average out.
steps_for() {
  case $1 in
    1 | 8) echo "5 15" ;;
    2) echo "100 300" ;;
    *) echo "2 4" ;;
  esac
}

# "allocs bytes" of one valgrind run.
usage_of() {
  OPENBLAS_NUM_THREADS=1 valgrind --leak-check=no "$exe" --child "$1" \
    --steps "$2" 2>&1 >/dev/null |
    sed -n 's/.*heap usage: \([0-9,]*\) allocs.*, \([0-9,]*\) bytes.*/\1 \2/p' |
    tr -d ,
}

printf '%-3s %8s %14s %16s\n' w steps allocs/step "bytes/step"
for w in $workloads; do
  read -r n1 n2 <<<"$(steps_for "$w")"
  read -r a1 b1 <<<"$(usage_of "$w" "$n1")"
  read -r a2 b2 <<<"$(usage_of "$w" "$n2")"
  awk -v w="$w" -v n1="$n1" -v n2="$n2" -v a1="$a1" -v a2="$a2" \
      -v b1="$b1" -v b2="$b2" 'BEGIN {
    d = n2 - n1
    printf "%-3s %8s %14.1f %16.0f\n", w, n1 "-" n2, (a2 - a1) / d,
           (b2 - b1) / d
  }'
done
