#!/usr/bin/env bash
# The Debian packages dsv4 needs, in one place, and their installation (only the missing ones).
#   bash scripts/deps.sh build        what building `dsv4` needs (the main job)
#   bash scripts/deps.sh build test   that, and what the tests and benchmarks need too
# As root it runs apt-get; otherwise it uses sudo when there is one, else says what to run.
set -euo pipefail

build=(cmake ninja-build g++ pkg-config git nlohmann-json3-dev libcli11-dev libpcre2-dev
       libcpp-httplib-dev libgd-dev libedit-dev libxxhash-dev)
# GoogleTest, Google Benchmark, OpenMPI (the model-parallel tests), Node and npm (the server
# tests drive it with the real openai npm client), clang (libFuzzer, for the fuzz targets).
test=(libgtest-dev libgmock-dev libbenchmark-dev openmpi-bin libopenmpi-dev nodejs npm clang)

wanted=()
for group in "$@"; do
  case "$group" in
    build) wanted+=("${build[@]}") ;;
    test) wanted+=("${test[@]}") ;;
    *) echo "scripts/deps.sh: unknown group '$group' (build, test)" >&2; exit 2 ;;
  esac
done
((${#wanted[@]})) || { echo "usage: bash scripts/deps.sh build [test]" >&2; exit 2; }

missing=()
for p in "${wanted[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node may come from elsewhere than Debian (the CI machines have Node 20 of their own).
if command -v node >/dev/null && command -v npm >/dev/null; then
  kept=()
  for p in "${missing[@]}"; do [[ "$p" == nodejs || "$p" == npm ]] || kept+=("$p"); done
  missing=("${kept[@]}")
fi
((${#missing[@]})) || exit 0

echo "installing Debian packages: ${missing[*]}" >&2
if ((EUID == 0)); then
  sudo=()
elif command -v sudo >/dev/null; then
  sudo=(sudo)
else
  echo "scripts/deps.sh: not root and no sudo; as root run: apt-get update && apt-get install -y ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
