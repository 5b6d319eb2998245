#!/usr/bin/env bash
# README's main command: on a bare Debian machine, installs what building dsv4 needs
# (scripts/deps.sh build), builds the `dsv4` binary alone (no tests) in build/, and asks the
# default model a question. Arguments, if any, replace the default `dsv4 run` arguments.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/deps.sh build
[ -f build/build.ninja ] || cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
ninja -C build dsv4
(($#)) || set -- -m models/dsv4-tiny -p "Hello! Can you help me?" --reasoning high
exec build/dsv4 run "$@"
