#!/bin/bash
# dsv4 build/bench_kernels against ggml test-backend-ops MUL_MAT at the same shapes, interleaved
# in 3 rounds (this machine drifts by 2x within minutes). GGML_TOB: a test-backend-ops binary
# built from a ggml checkout outside this repository (cmake -B build && cmake --build build);
# GGML_TOB_AVX2 (optional): one built with -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON
# -DGGML_F16C=ON, compared with dsv4's AVX2 path.
cd "$(dirname "$0")/.."
params='type_a=(q8_0|mxfp4),type_b=f32,m=4096,n=(1|512),k=14336,'
ggml() { "$1" perf -o MUL_MAT -b CPU -p "$params" 2>&1 | grep "MUL_MAT(" | sed -E 's/,bs=.*\):/:/; s/\x1b\[[0-9;]*m//g'; }
for r in 1 2 3; do
  echo "=== round $r $(date -u +%FT%TZ)"
  echo "--- ggml native"; ggml "${GGML_TOB:?set GGML_TOB to test-backend-ops}"
  echo "--- dsv4 production path"
  ./build/bench_kernels --benchmark_filter='BM_fp[48]/4096/14336/(1|512)/2/' 2>&1 | grep "^BM_" | sed 's/ \+/ /g'
  if [ -n "$GGML_TOB_AVX2" ]; then
    echo "--- ggml AVX2 only"; ggml "$GGML_TOB_AVX2"
    echo "--- dsv4 AVX2 path"
    ./build/bench_kernels --benchmark_filter='BM_fp[48]_avx2/4096/14336/(1|512)/2/' 2>&1 | grep "^BM_" | sed 's/ \+/ /g'
  fi
done
