// The quantized linear kernels (Google Benchmark), at the shapes ggml's test-backend-ops
// reports for MUL_MAT so the two can be compared side by side: GEMV of a 4096 x 14336 weight
// (k = 14336, one token) and GEMM with 512 tokens, plus V4-Flash's decode shapes (a routed
// expert's w1 / w3 and w2, wq_b). Counters: weight bytes (scales included) moved per second in
// decimal GB/s, as ggml prints them (Google Benchmark's bytes_per_second is binary, GiB/s),
// and GFLOP/s (2 * m * n * k). Paths: the production one (linear(): AVX-512
// BF16 where the CPU has it), AVX2 and the scalar reference. Run: build/bench_kernels [--benchmark_filter=...].
#include <benchmark/benchmark.h>

#include <cmath>
#include <random>
#include <vector>

#include "core/thread_pool.h"
#include "ops/gemm_f32.h"
#include "quant/formats.h"
#include "quant/linear.h"

namespace {

using namespace dsv4;

struct Weights {
  std::vector<uint8_t> w, s;
  Linear lin;
};

// Random codes of the format, random ue8m0 scales around 2^-7 (values as a real layer's).
Weights make(WeightFormat fmt, int out, int in) {
  Weights m;
  std::mt19937_64 rng(1);
  m.lin.format = fmt;
  m.lin.out = out;
  m.lin.in = in;
  const size_t wbytes = fmt == WeightFormat::fp4 ? size_t(out) * in / 2
                        : fmt == WeightFormat::bf16 ? size_t(out) * in * 2
                        : fmt == WeightFormat::f32  ? size_t(out) * in * 4
                                                    : size_t(out) * in;
  m.w.resize(wbytes);
  if (fmt == WeightFormat::f32) {  // float weights as the trainer initializes them: N(0, 1 / in)
    std::normal_distribution<float> nd(0.0f, 1.0f / std::sqrt(float(in)));
    float* f = reinterpret_cast<float*>(m.w.data());
    for (size_t i = 0; i < size_t(out) * in; ++i) f[i] = nd(rng);
    m.lin.weight = m.w.data();
    return m;
  }
  for (size_t i = 0; i < wbytes; i += 8) {
    uint64_t r = rng();
    for (size_t k = i; k < std::min(wbytes, i + 8); ++k, r >>= 8) m.w[k] = static_cast<uint8_t>(r & 0xBF);  // no NaN codes
  }
  const size_t sn = fmt == WeightFormat::fp4 ? size_t(out) * (in / 32) : size_t((out + 127) / 128) * ((in + 127) / 128);
  m.s.resize(sn);
  for (auto& b : m.s) b = static_cast<uint8_t>(117 + rng() % 7);  // 2^-10 .. 2^-4, varied as a real layer's
  m.lin.weight = m.w.data();
  m.lin.scale = m.s.data();
  return m;
}

void run(benchmark::State& state, WeightFormat fmt, LinearPath path, bool quantize_input = true) {
  const int m_out = static_cast<int>(state.range(0)), k_in = static_cast<int>(state.range(1));
  const int n = static_cast<int>(state.range(2));
  set_num_threads(static_cast<int>(state.range(3)));
  const Weights w = make(fmt, m_out, k_in);
  std::vector<float> x(size_t(n) * k_in), y(size_t(n) * m_out);
  std::mt19937 rng(2);
  std::normal_distribution<float> nd;
  for (float& v : x) v = nd(rng);
  // One untimed call: it allocates the per-thread staging buffers (core/scratch.h), as ggml
  // sizes its work buffer before timing.
  linear_with(path, w.lin, x, n, y, quantize_input);
  for (auto _ : state) {
    linear_with(path, w.lin, x, n, y, quantize_input);
    benchmark::DoNotOptimize(y.data());
  }
  const double iters = static_cast<double>(state.iterations());
  state.counters["weight_GBps"] =
      benchmark::Counter(iters * static_cast<double>(w.w.size() + w.s.size()) / 1e9, benchmark::Counter::kIsRate);
  state.counters["GFLOPS"] = benchmark::Counter(2.0 * m_out * double(k_in) * n * iters / 1e9, benchmark::Counter::kIsRate);
  state.counters["threads"] = pool().size();
}

// A batched decode step's experts: n tokens through each of 32 FP4 experts' [2048, 4096]
// matrices in turn (136 MB, far beyond L3, as in a real step), one expert per thread at a time.
void BM_fp4_experts(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  set_num_threads(static_cast<int>(state.range(1)));
  std::vector<Weights> experts;
  for (int e = 0; e < 32; ++e) experts.push_back(make(WeightFormat::fp4, 2048, 4096));
  std::vector<float> x(size_t(n) * 4096);
  std::mt19937 rng(2);
  std::normal_distribution<float> nd;
  for (float& v : x) v = nd(rng);
  auto step = [&] {
    pool().parallel_for(experts.size(), [&](size_t e0, size_t e1) {
      std::vector<float> y(size_t(n) * 2048);
      for (size_t e = e0; e < e1; ++e) linear(experts[e].lin, x, n, y, true);
    });
  };
  step();
  for (auto _ : state) step();
  const double iters = static_cast<double>(state.iterations());
  const double bytes = 32.0 * (experts[0].w.size() + experts[0].s.size());
  state.counters["weight_GBps"] = benchmark::Counter(iters * bytes / 1e9, benchmark::Counter::kIsRate);
  state.counters["GFLOPS"] = benchmark::Counter(32.0 * 2 * 2048 * 4096.0 * n * iters / 1e9, benchmark::Counter::kIsRate);
}
BENCHMARK(BM_fp4_experts)->ArgsProduct({{1, 2, 3, 4, 8}, {2}})->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_fp8(benchmark::State& s) { run(s, WeightFormat::fp8, linear_path()); }
void BM_fp4(benchmark::State& s) { run(s, WeightFormat::fp4, linear_path()); }
void BM_bf16(benchmark::State& s) { run(s, WeightFormat::bf16, linear_path()); }
// F32 weights through linear() (a checkpoint's plain F32 tensors), beside gemm_f32, which the
// trainer's products take (train/matmul.h): the same product both ways.
void BM_f32(benchmark::State& s) { run(s, WeightFormat::f32, linear_path(), false); }

// y [n, out] = x [n, in] . w^T through ops/gemm_f32.h, w^T given as [in, out] (the trainer's
// forward transposes w once per product; that copy is left out here).
void BM_gemm_f32(benchmark::State& state) {
  const int out = static_cast<int>(state.range(0)), in = static_cast<int>(state.range(1));
  const int n = static_cast<int>(state.range(2));
  set_num_threads(static_cast<int>(state.range(3)));
  std::mt19937 rng(2);
  std::normal_distribution<float> nd;
  std::vector<float> x(size_t(n) * in), wt(size_t(in) * out), y(size_t(n) * out);
  for (float& v : x) v = nd(rng);
  for (float& v : wt) v = nd(rng) / std::sqrt(float(in));
  for (auto _ : state) {
    gemm_f32(n, out, in, x.data(), in, 1, wt.data(), out, y.data(), out);
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["GFLOPS"] =
      benchmark::Counter(2.0 * out * double(in) * n * state.iterations() / 1e9, benchmark::Counter::kIsRate);
  state.counters["threads"] = pool().size();
}
// FP8 weights on float inputs, as wo_a applies them (no activation quantization).
void BM_fp8_float(benchmark::State& s) { run(s, WeightFormat::fp8, linear_path(), false); }
void BM_fp8_avx2(benchmark::State& s) { run(s, WeightFormat::fp8, LinearPath::avx2); }
void BM_fp4_avx2(benchmark::State& s) { run(s, WeightFormat::fp4, LinearPath::avx2); }
void BM_fp8_scalar(benchmark::State& s) { run(s, WeightFormat::fp8, LinearPath::scalar); }
void BM_fp4_scalar(benchmark::State& s) { run(s, WeightFormat::fp4, LinearPath::scalar); }

// Args: {m (out), k (in), n (tokens), threads}
#define SHAPES(B)                                                                          \
  BENCHMARK(B)->Args({4096, 14336, 1, 2})->Args({4096, 14336, 1, 1})                      \
      ->Args({4096, 14336, 512, 2})->Unit(benchmark::kMillisecond)->UseRealTime()
SHAPES(BM_fp8);
SHAPES(BM_fp4);
SHAPES(BM_fp8_avx2);
SHAPES(BM_fp4_avx2);
// V4-Flash decode: expert w1 / w3 [2048, 4096] and w2 [4096, 2048] (FP4), wq_b [32768, 1024] (FP8).
BENCHMARK(BM_fp4)->Args({2048, 4096, 1, 2})->Args({4096, 2048, 1, 2})->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_fp8)->Args({32768, 1024, 1, 2})->Args({2048, 4096, 1, 2})->Unit(benchmark::kMicrosecond)->UseRealTime();
// Batched decode steps (dsv4 serve, dsv4 bench --sessions): 1 .. 16 rows share each weight read.
BENCHMARK(BM_fp8)->ArgsProduct({{4096}, {14336}, {1, 2, 4, 8, 16}, {2}})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_fp4)->ArgsProduct({{2048}, {4096}, {1, 2, 4, 8, 16}, {2}})->Unit(benchmark::kMicrosecond)->UseRealTime();
// One 8-token product whose weights fit in L2, in L3 and only in memory: the same GFLOP/s in
// all three says the arithmetic bounds a batched step's FP8 products, not the reads.
BENCHMARK(BM_fp8)->ArgsProduct({{256, 2048, 16384}, {4096}, {8}, {2}})->Unit(benchmark::kMicrosecond)->UseRealTime();
// wo_a: one output group's [1024, 4096] (FP8 on float inputs); the compressor's BF16 [1024, 4096].
BENCHMARK(BM_fp8_float)->ArgsProduct({{1024}, {4096}, {1, 2, 4, 8, 16}, {2}})->Args({4096, 1024, 8, 2})->Args({4096, 512, 8, 2})->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_bf16)->ArgsProduct({{1024}, {4096}, {1, 2, 4, 8, 16}, {2}})->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_bf16)->Args({4096, 14336, 1, 2})->Unit(benchmark::kMillisecond)->UseRealTime();
// The trainer's products on the default model (dsv4-tiny): a step's 4 sequences of 256 tokens
// through wq_b [512, 128] and w1 [128, 256]; the backward's weight gradient [256, 256] over 256 tokens.
BENCHMARK(BM_f32)->ArgsProduct({{512}, {128}, {256, 1024}, {1, 2}})->Args({128, 256, 1024, 2})->Args({256, 256, 256, 1})->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_gemm_f32)->ArgsProduct({{512}, {128}, {256, 1024}, {1, 2}})->Args({128, 256, 1024, 2})->Args({256, 256, 256, 1})->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_fp8_scalar)->Args({4096, 14336, 1, 2})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_fp4_scalar)->Args({4096, 14336, 1, 2})->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
