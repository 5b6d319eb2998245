#!/bin/bash
# dsv4 build/bench_kernels against ggml test-backend-ops MUL_MAT at the same shapes, interleaved
# in 3 rounds (this machine drifts by 2x within minutes). GGML_TOB: a test-backend-ops binary
# built from a ggml checkout outside this repository (cmake -B build && cmake --build build).
cd "$(dirname "$0")/.."
for r in 1 2 3; do
  echo "=== round $r $(date -u +%FT%TZ)"
  "${GGML_TOB:?set GGML_TOB to test-backend-ops}" perf -o MUL_MAT -b CPU -p 'type_a=(q8_0|mxfp4),type_b=f32,m=4096,n=(1|512),k=14336,' 2>&1 | grep "MUL_MAT(" | sed -E 's/,bs=.*\):/:/; s/\x1b\[[0-9;]*m//g'
  ./build/bench_kernels --benchmark_filter='BM_fp[48]/4096/14336/(1|512)/2/' 2>&1 | grep "^BM_" | sed 's/ \+/ /g'
done
