#!/usr/bin/env bash
# Sets d2r up on a fresh Debian 12 machine: installs the Debian packages it
# needs (only those missing, through apt-get, as root or with sudo), builds
# everything into build/ (Release), then runs the main experiment,
# scripts/uci_classification.lua, passing it this script's arguments.
# With --no-run it stops after the build (scripts/test.sh uses that);
# with --bench it also installs PyTorch for bench/d2r_bench.
set -euo pipefail

# Every Debian package d2r needs to build, test and plot: add new ones here.
PACKAGES=(
  build-essential cmake pkg-config
  liblua5.4-dev lua5.4 libreadline-dev
  libopenblas-dev libgsl-dev
  libcriterion-dev
  gnuplot-nox
  libmujoco-dev
  libsqlite3-dev libopenmpi-dev openmpi-bin
  tmux
  clang-14 libclang-rt-14-dev valgrind
)

cd "$(dirname "${BASH_SOURCE[0]}")/.."

run=1
args=()
for a in "$@"; do
  case "$a" in
    --no-run) run=0 ;;
    # The benchmark's PyTorch side (bench/torch) needs Debian's torch; it
    # is large, so it is installed only when asked for.
    --bench) PACKAGES+=(python3-torch python3-numpy) ;;
    *) args+=("$a") ;;
  esac
done

say() { printf 'setup: %s\n' "$*"; }

missing_packages() {
  local p
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null |
      grep -q 'install ok installed' || printf '%s\n' "$p"
  done
}

# apt-get needs root: use sudo when we are not root and it exists.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null; then
    sudo "$@"
  else
    say "need root (or sudo) to run: $*" >&2
    exit 1
  fi
}

install_packages() {
  if ! command -v dpkg-query >/dev/null; then
    say "not a Debian system: make sure these are installed:" \
        "${PACKAGES[*]}" >&2
    return 0
  fi
  local missing
  mapfile -t missing < <(missing_packages)
  if [ "${#missing[@]}" -eq 0 ]; then
    say "all ${#PACKAGES[@]} Debian packages are installed"
    return 0
  fi
  say "installing ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y \
    --no-install-recommends "${missing[@]}"
}

build() {
  say "building into build/"
  cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
  cmake --build build -j"$(nproc)"
}

install_packages
build
if [ "$run" -eq 1 ]; then
  say "running scripts/uci_classification.lua"
  exec build/d2r scripts/uci_classification.lua "${args[@]}"
fi
