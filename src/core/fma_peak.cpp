#include "core/fma_peak.h"

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>

#include "core/cpu.h"
#include "core/thread_pool.h"

namespace dsv4 {

namespace {

constexpr int kChains = 12;
constexpr long kSteps = 100000;  // per unit of work: kChains x kSteps FMAs

// Returns a value that depends on every chain, so none is optimized away.
__attribute__((target("avx512f"))) float fma_unit_avx512() {
  __m512 acc[kChains];
  for (int c = 0; c < kChains; ++c) acc[c] = _mm512_set1_ps(static_cast<float>(c));
  const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
  for (long i = 0; i < kSteps; ++i)
    for (int c = 0; c < kChains; ++c) acc[c] = _mm512_fmadd_ps(acc[c], a, b);
  __m512 s = acc[0];
  for (int c = 1; c < kChains; ++c) s = _mm512_add_ps(s, acc[c]);
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, s);
  return lanes[0] + lanes[15];
}

__attribute__((target("avx2,fma"))) float fma_unit_avx2() {
  __m256 acc[kChains];
  for (int c = 0; c < kChains; ++c) acc[c] = _mm256_set1_ps(static_cast<float>(c));
  const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
  for (long i = 0; i < kSteps; ++i)
    for (int c = 0; c < kChains; ++c) acc[c] = _mm256_fmadd_ps(acc[c], a, b);
  __m256 s = acc[0];
  for (int c = 1; c < kChains; ++c) s = _mm256_add_ps(s, acc[c]);
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, s);
  return lanes[0] + lanes[7];
}

float fma_unit_scalar() {
  float acc[kChains];
  for (int c = 0; c < kChains; ++c) acc[c] = static_cast<float>(c);
  for (long i = 0; i < kSteps; ++i)
    for (int c = 0; c < kChains; ++c) acc[c] = std::fma(acc[c], 0.999999f, 1e-7f);
  float s = 0;
  for (float v : acc) s += v;
  return s;
}

}  // namespace

double measure_fma_peak_gflops() {
  const bool avx512 = use_avx512();
  const int lanes = avx512 ? 16 : use_avx2_fma() ? 8 : 1;
  const size_t units = static_cast<size_t>(pool().size()) * 16;
  std::atomic<float> sink{0};
  double best = 1e30;
  for (int pass = 0; pass < 5; ++pass) {
    const auto t0 = std::chrono::steady_clock::now();
    pool().parallel_for(units, [&](size_t u0, size_t u1) {
      float s = 0;
      for (size_t u = u0; u < u1; ++u) s += avx512 ? fma_unit_avx512() : lanes == 8 ? fma_unit_avx2() : fma_unit_scalar();
      sink.fetch_add(s, std::memory_order_relaxed);
    });
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return static_cast<double>(units) * kSteps * kChains * lanes * 2 / best / 1e9;
}

}  // namespace dsv4
