// Best of `repeats` passes; each thread works on its own contiguous chunk (first touched by it).
#include "core/membench.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>

#include "core/thread_pool.h"

namespace dsv4 {

MemBandwidth measure_memory_bandwidth(size_t bytes_per_array, int repeats) {
  const size_t n = bytes_per_array / sizeof(float);
  std::unique_ptr<float[]> a(new float[n]), b(new float[n]), c(new float[n]);
  pool().parallel_for(n, [&](size_t i0, size_t i1) {
    for (size_t i = i0; i < i1; ++i) a[i] = 0.0f, b[i] = 1.0f, c[i] = 2.0f;
  });
  auto time = [&](auto&& body) {
    double best = 1e30;
    for (int r = 0; r < repeats; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      body();
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    return best;
  };
  MemBandwidth m;
  const double triad = time([&] {
    pool().parallel_for(n, [&](size_t i0, size_t i1) {
      float* __restrict pa = a.get();
      const float* __restrict pb = b.get();
      const float* __restrict pc = c.get();
      for (size_t i = i0; i < i1; ++i) pa[i] = pb[i] + 3.0f * pc[i];
    });
  });
  m.triad_gbps = 3.0 * static_cast<double>(n) * sizeof(float) / triad / 1e9;
  std::atomic<float> sink{0};  // keeps the reads observable; one add per chunk
  const double read = time([&] {
    pool().parallel_for(n, [&](size_t i0, size_t i1) {
      float s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
      const float* p = b.get();
      size_t i = i0;
      for (; i + 8 <= i1; i += 8) {
        s0 += p[i], s1 += p[i + 1], s2 += p[i + 2], s3 += p[i + 3];
        s4 += p[i + 4], s5 += p[i + 5], s6 += p[i + 6], s7 += p[i + 7];
      }
      for (; i < i1; ++i) s0 += p[i];
      sink.fetch_add(s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7, std::memory_order_relaxed);
    });
  });
  m.read_gbps = static_cast<double>(n) * sizeof(float) / read / 1e9;
  return m;
}

}  // namespace dsv4
