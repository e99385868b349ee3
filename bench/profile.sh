#!/usr/bin/env bash
# Shows where the time of one d2r benchmark workload goes: samples
# `d2r_bench --child W --steps N` with perf (the cpu-clock software event,
# which works in virtual machines without hardware counters) and prints
# the functions by self time, then by inclusive time (DWARF call graphs).
#
# usage: bench/profile.sh W [STEPS] [BENCH_EXE]
#   W          workload number (1-5 or 8; workloads 6 and 7 run in
#              processes of their own, profile `d2r bench/toy_sweep.lua
#              --workers 0`)
#   STEPS      steps to run (default: 5000 for 1, 2 and 8, 300 for 5,
#              20 for 3-4)
#   BENCH_EXE  default build/bench/d2r_bench
# Needs perf (apt-get install linux-perf).  Build with debug information
# (RelWithDebInfo, the default) for readable call graphs.
set -euo pipefail

w=${1:?usage: bench/profile.sh W [STEPS] [BENCH_EXE]}
case $w in
  1 | 2 | 8) steps=${2:-5000} ;;
  5) steps=${2:-300} ;;
  *) steps=${2:-20} ;;
esac
exe=${3:-build/bench/d2r_bench}

if ! command -v perf >/dev/null; then
  echo "profile: perf not found (apt-get install linux-perf)" >&2
  exit 1
fi

data=$(mktemp /tmp/d2r_profile.XXXXXX)
trap 'rm -f "$data"' EXIT
OPENBLAS_NUM_THREADS=1 perf record -q -e cpu-clock -F 4000 \
  --call-graph dwarf,16384 -o "$data" "$exe" --child "$w" \
  --steps "$steps" >/dev/null
echo "== workload $w, $steps steps: self time by shared object"
perf report -i "$data" --stdio --no-children --sort dso -g none 2>/dev/null |
  grep -v '^#' | grep -v '^$' | head -8
echo "== self time by function (>= 1%)"
perf report -i "$data" --stdio --no-children --sort dso,symbol -g none \
  --percent-limit 1 2>/dev/null | grep -v '^#' | grep -v '^$' | head -30
echo "== inclusive time by function (>= 3%)"
perf report -i "$data" --stdio --children --sort symbol -g none \
  --percent-limit 3 2>/dev/null | grep -v '^#' | grep -v '^$' | head -45
