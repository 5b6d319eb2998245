// The small ops against their definitions: RMSNorm, RoPE (inverse undoes it; YaRN leaves the
// high frequencies alone and divides the low ones by the factor), Hadamard (orthogonal, self-
// inverse), top-k (ties as the reference's torch.topk), mHC Sinkhorn (doubly stochastic), and
// the attention / indexer inner products (ops/dot.h): AVX2 against the scalar reference within
// 2 m 2^-24 sum |terms| per element (m terms), each path computing exactly its stated order
// (bitwise, against the order written out here with std::fma) whatever the shapes.
// Metrics: max-abs error, tolerances stated per test.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <array>
#include <atomic>
#include <random>
#include <thread>

#include "core/check.h"
#include "core/cpu.h"
#include "core/thread_pool.h"
#include "model/hc.h"
#include "ops/dot.h"
#include "ops/gemm_f32.h"
#include "ops/hadamard.h"
#include "ops/norm.h"
#include "ops/rope.h"
#include "ops/swiglu.h"
#include "ops/topk.h"
#include "test_util.h"

namespace dsv4 {
namespace {

std::vector<float> randn(int n, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd;
  std::vector<float> v(n);
  for (float& x : v) x = nd(rng);
  return v;
}

TEST(Ops, RmsNormUnitRms) {
  std::vector<float> x = randn(256, 1), y(256), w(128, 2.0f);
  rmsnorm(x, w, 1e-6f, 128, y);
  for (int r = 0; r < 2; ++r) {
    double ss = 0;
    for (int i = 0; i < 128; ++i) ss += double(y[r * 128 + i]) * y[r * 128 + i];
    EXPECT_NEAR(std::sqrt(ss / 128), 2.0, 1e-5);  // weight 2 -> rms 2
  }
}

TEST(Ops, SwigluClampsAsDeepSeekV4) {
  // Metric: exact values. silu(g) * u below the limit; up clamped to [-limit, limit] and the
  // gate only from above; limit <= 0 clamps nothing.
  EXPECT_EQ(swiglu(1.0f, 2.0f, 10.0f), 1.0f / (1.0f + std::exp(-1.0f)) * 2.0f);
  EXPECT_EQ(swiglu(12.0f, -30.0f, 10.0f), 10.0f / (1.0f + std::exp(-10.0f)) * -10.0f);
  EXPECT_EQ(swiglu(-30.0f, 1.0f, 10.0f), -30.0f / (1.0f + std::exp(30.0f)));
  EXPECT_EQ(swiglu(12.0f, 30.0f, 0.0f), 12.0f / (1.0f + std::exp(-12.0f)) * 30.0f);
  std::vector<float> gate{1, 2}, up{3}, y(2);
  EXPECT_THROW(swiglu(gate, up, 10.0f, y), Error);
}

TEST(Ops, RopeInverseUndoesRotation) {
  Rope rope(64, 160000.0, 64, 4, 32, 1);
  std::vector<float> x = randn(64, 2), y = x;
  rope.apply(y.data(), 12345);
  rope.apply(y.data(), 12345, true);
  EXPECT_LE(test::max_abs_err(y, x).err, 1e-5);
}

TEST(Ops, YarnScalesOnlyLowFrequencies) {
  Rope plain(64, 160000.0, 0, 4, 32, 1), yarn(64, 160000.0, 64, 4, 32, 1);
  EXPECT_EQ(yarn.freqs()[0], plain.freqs()[0]);  // fastest pair: untouched
  EXPECT_NEAR(yarn.freqs()[31], plain.freqs()[31] / 4, 1e-12);  // slowest: divided by factor
}

TEST(Ops, HadamardIsOrthogonalAndSelfInverse) {
  std::vector<float> x = randn(128, 3), y = x;
  hadamard_rotate(y);
  double nx = 0, ny = 0;
  for (int i = 0; i < 128; ++i) nx += double(x[i]) * x[i], ny += double(y[i]) * y[i];
  EXPECT_NEAR(nx, ny, 1e-4 * nx);
  hadamard_rotate(y);
  EXPECT_LE(test::max_abs_err(y, x).err, 1e-5);
}

TEST(Ops, TopkPicksLargestAndBreaksTiesLikeTorch) {
  const std::vector<float> s = {0.5f, 2.0f, -1.0f, 3.0f, 2.5f};
  EXPECT_EQ(topk_indices(s, 2), (std::vector<int>{3, 4}));
  EXPECT_EQ(topk_indices(s, 9).size(), 5u);
  // The tie of golden tiny, faithful, layer 3, position 42: blocks 0, 3, 5 score exactly 0;
  // the reference keeps block 5.
  const std::vector<float> g = {0, -0.22f, -0.14f, 0, 0.60f, 0, -0.04f, 0.53f, 1.19f, -0.28f};
  EXPECT_EQ(topk_indices(g, 4), (std::vector<int>{4, 5, 7, 8}));
}

// hc_pre's mixes (seen through post and comb) are the plain order's bits: per mix row, eight
// partial sums over k mod 8 (a tail of flat % 8 inputs into the first), a fixed tree, times
// 1 / sqrt(mean(x^2) + eps). On every path (AVX-512 or AVX2 lanes, or the compiler's loop), for token
// counts that fill and split hc_mixes' token groups and widths with and without a tail.
TEST(Ops, HcPreMixesFollowThePlainOrder) {
  const int hc = 4, n_mix = (2 + hc) * hc;
  for (const int dim : {35, 4096})
    for (const int n : {1, 5, 9}) {
      const int flat = hc * dim;
      const std::vector<float> fn = randn(n_mix * flat, 6), x = randn(n * flat, 7);
      const HcParams p = HcParams::from(fn, randn(n_mix, 8), {0.5f, 0.7f, 0.9f});
      std::vector<float> y(static_cast<size_t>(n) * dim);
      HcMix mix;
      hc_pre(p, x, n, hc, dim, 1e-6f, 20, 1e-6f, y, mix);
      for (int t = 0; t < n; ++t) {
        const float* xt = x.data() + static_cast<size_t>(t) * flat;
        const float rsqrt = 1.0f / std::sqrt(mean_square(xt, flat) + 1e-6f);
        std::vector<float> mixes(n_mix);
        for (int m = 0; m < n_mix; ++m) {
          const float* f = fn.data() + static_cast<size_t>(m) * flat;
          float a[8] = {};
          int k = 0;
          for (; k + 8 <= flat; k += 8)
            for (int j = 0; j < 8; ++j) a[j] += f[k + j] * xt[k + j];
          for (; k < flat; ++k) a[0] += f[k] * xt[k];
          mixes[m] = (((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]))) * rsqrt;
        }
        std::vector<float> pre(hc), post(hc), comb(hc * hc);
        hc_split_sinkhorn(mixes, p, hc, 20, 1e-6f, pre.data(), post.data(), comb.data());
        for (int j = 0; j < hc; ++j) EXPECT_EQ(post[j], mix.post[static_cast<size_t>(t) * hc + j]) << dim << " " << n << " " << t;
        for (int j = 0; j < hc * hc; ++j)
          EXPECT_EQ(comb[j], mix.comb[static_cast<size_t>(t) * hc * hc + j]) << dim << " " << n << " " << t;
      }
    }
}

// hc_post is the plain loop's bits on this CPU's path (AVX2's 8 lanes, with a tail of dim % 8):
// per output, the products comb[i][j] * residual[i] added in i order from zero, then
// post[j] * out. new_residual aliasing residual, as the model calls it.
TEST(Ops, HcPostFollowsThePlainOrder) {
  const int hc = 4;
  for (const int dim : {35, 256}) {
    const int n = 3;
    const std::vector<float> post = randn(n * hc, 1), comb = randn(n * hc * hc, 2), out = randn(n * dim, 3),
                             res = randn(static_cast<size_t>(n) * hc * dim, 4);
    std::vector<float> got = res;
    hc_post(HcMix{post, comb}, out, got, n, hc, dim, got);
    for (int t = 0; t < n; ++t)
      for (int j = 0; j < hc; ++j)
        for (int d = 0; d < dim; ++d) {
          float acc = 0;
          for (int i = 0; i < hc; ++i)
            acc += comb[(t * hc + i) * hc + j] * res[(static_cast<size_t>(t) * hc + i) * dim + d];
          const float want = post[t * hc + j] * out[static_cast<size_t>(t) * dim + d] + acc;
          ASSERT_EQ(got[(static_cast<size_t>(t) * hc + j) * dim + d], want) << dim << " " << t << " " << j << " " << d;
        }
  }
}

TEST(Ops, SinkhornCombIsDoublyStochastic) {
  const int hc = 4, mix = (2 + hc) * hc;
  HcParams p{{}, randn(mix, 4), {1.0f, 1.0f, 1.0f}};
  const std::vector<float> mixes = randn(mix, 5);
  std::vector<float> pre(hc), post(hc), comb(hc * hc);
  hc_split_sinkhorn(mixes, p, hc, 20, 1e-6f, pre.data(), post.data(), comb.data());
  for (int j = 0; j < hc; ++j) {
    float row = 0, col = 0;
    for (int k = 0; k < hc; ++k) row += comb[j * hc + k], col += comb[k * hc + j];
    EXPECT_NEAR(row, 1.0f, 1e-3);
    EXPECT_NEAR(col, 1.0f, 1e-5);  // the last normalisation is over columns
    EXPECT_GT(post[j], 0.0f);
    EXPECT_LT(post[j], 2.0f);
    EXPECT_GT(pre[j], 0.0f);
  }
}

// Shapes that exercise every register block and tail: n below, at and between multiples of 8
// and 16, a and b row counts around the 4 x 2 blocks and the 16-row key tiles.
struct DotCase {
  int na, nb, n;
};
const std::vector<DotCase> kDotCases = {{1, 1, 1},   {3, 2, 7},    {4, 17, 8},  {5, 33, 13}, {9, 3, 64},
                                        {4, 16, 128}, {64, 40, 128}, {7, 20, 100}, {2, 5, 512}, {16, 37, 24}};

struct DotData {
  std::vector<float> a, p, brows;
  std::vector<const float*> b;
};

DotData dot_data(const DotCase& c, unsigned seed) {
  DotData d;
  d.a = randn(c.na * c.n, seed);
  d.p = randn(c.na * c.nb, seed + 1);
  for (float& v : d.p) v = std::fabs(v);  // softmax weights are >= 0
  d.brows = randn((c.nb + 1) * c.n + 3, seed + 2);
  for (int j = 0; j < c.nb; ++j) d.b.push_back(d.brows.data() + 3 + ((j * 7) % (c.nb + 1)) * c.n);  // any order, unaligned
  return d;
}

TEST(Dot, Avx2WithinRoundingBoundOfScalar) {
  if (!use_avx2_fma()) GTEST_SKIP() << "no AVX2 + FMA on this CPU";
  double worst = 0;  // |avx2 - scalar| / (2 m 2^-24 sum |terms|), must stay <= 1
  for (const DotCase& c : kDotCases) {
    const DotData d = dot_data(c, 10 + c.n);
    std::vector<float> s(c.na * c.nb), v(s.size());
    scalar::dot_rows(d.a.data(), c.na, d.b.data(), c.nb, c.n, s.data());
    avx2::dot_rows(d.a.data(), c.na, d.b.data(), c.nb, c.n, v.data());
    for (int i = 0; i < c.na; ++i)
      for (int j = 0; j < c.nb; ++j) {
        double mag = 0;
        for (int k = 0; k < c.n; ++k) mag += std::fabs(double(d.a[i * c.n + k]) * d.b[j][k]);
        const double r = std::fabs(double(v[i * c.nb + j]) - s[i * c.nb + j]) / (2 * c.n * std::ldexp(1.0, -24) * mag + 1e-30);
        worst = std::max(worst, r);
        EXPECT_LE(r, 1.0) << "dot " << c.na << "x" << c.nb << "x" << c.n << " at " << i << "," << j << ": avx2 "
                          << v[i * c.nb + j] << ", scalar " << s[i * c.nb + j];
      }
    std::vector<float> ws(c.na * c.n), wv(ws.size());
    scalar::weighted_rows(d.p.data(), c.na, d.b.data(), c.nb, c.n, ws.data());
    avx2::weighted_rows(d.p.data(), c.na, d.b.data(), c.nb, c.n, wv.data());
    for (int i = 0; i < c.na; ++i)
      for (int k = 0; k < c.n; ++k) {
        double mag = 0;
        for (int j = 0; j < c.nb; ++j) mag += std::fabs(double(d.p[i * c.nb + j]) * d.b[j][k]);
        const double r = std::fabs(double(wv[i * c.n + k]) - ws[i * c.n + k]) / (2 * c.nb * std::ldexp(1.0, -24) * mag + 1e-30);
        worst = std::max(worst, r);
        EXPECT_LE(r, 1.0) << "weighted " << c.na << "x" << c.nb << "x" << c.n << " at " << i << "," << k << ": avx2 "
                          << wv[i * c.n + k] << ", scalar " << ws[i * c.n + k];
      }
  }
  std::printf("dot / weighted rows: worst |avx2 - scalar| = %.3g of the rounding bound\n", worst);
}

// The AVX2 orders of dot.h written out element by element.
float avx2_order_dot(const float* a, const float* b, int n) {
  float lane[8] = {};
  const int n8 = n / 8 * 8;
  for (int d = 0; d < n8; ++d) lane[d % 8] = std::fma(a[d], b[d], lane[d % 8]);
  float r = ((lane[0] + lane[4]) + (lane[2] + lane[6])) + ((lane[1] + lane[5]) + (lane[3] + lane[7]));
  for (int d = n8; d < n; ++d) r = std::fma(a[d], b[d], r);
  return r;
}

bool bits_equal(float x, float y) {
  uint32_t a, b;
  std::memcpy(&a, &x, 4);
  std::memcpy(&b, &y, 4);
  return a == b;
}

TEST(Dot, EachPathComputesItsStatedOrderWhateverTheShape) {
  // Metric: bitwise equality. An element's value may not depend on which other rows share the
  // call (prefill and decode pass different sets), nor on the register blocking or tiling.
  for (bool simd : {false, true}) {
    if (simd && !use_avx2_fma()) continue;
    for (const DotCase& c : kDotCases) {
      const DotData d = dot_data(c, 20 + c.nb);
      std::vector<float> dots(c.na * c.nb), w(c.na * c.n);
      (simd ? avx2::dot_rows : scalar::dot_rows)(d.a.data(), c.na, d.b.data(), c.nb, c.n, dots.data());
      (simd ? avx2::weighted_rows : scalar::weighted_rows)(d.p.data(), c.na, d.b.data(), c.nb, c.n, w.data());
      for (int i = 0; i < c.na; ++i) {
        const float* ai = d.a.data() + i * c.n;
        for (int j = 0; j < c.nb; ++j) {
          float want = 0;
          if (simd) {
            want = avx2_order_dot(ai, d.b[j], c.n);
          } else {
            for (int k = 0; k < c.n; ++k) want += ai[k] * d.b[j][k];
          }
          EXPECT_TRUE(bits_equal(dots[i * c.nb + j], want))
              << (simd ? "avx2" : "scalar") << " dot " << c.na << "x" << c.nb << "x" << c.n << " at " << i << "," << j
              << ": " << dots[i * c.nb + j] << " vs " << want;
        }
        // One row alone, as a decode step's head range may pass it.
        std::vector<float> one(c.n);
        (simd ? avx2::weighted_rows : scalar::weighted_rows)(d.p.data() + i * c.nb, 1, d.b.data(), c.nb, c.n, one.data());
        for (int k = 0; k < c.n; ++k) {
          float want = 0;
          for (int j = 0; j < c.nb; ++j)
            want = simd ? std::fma(d.p[i * c.nb + j], d.b[j][k], want) : want + d.p[i * c.nb + j] * d.b[j][k];
          EXPECT_TRUE(bits_equal(w[i * c.n + k], want) && bits_equal(one[k], want))
              << (simd ? "avx2" : "scalar") << " weighted " << c.na << "x" << c.nb << "x" << c.n << " at " << i << ","
              << k << ": " << w[i * c.n + k] << " / " << one[k] << " vs " << want;
        }
      }
    }
  }
}

TEST(GemmF32, EveryPathIsTheFmaChainBitwise) {
  // Metric: exact. The AVX-512 and AVX2 tiles against the std::fma reference, on shapes around
  // their tiles (12 x 32, 6 x 16: full, partial and single rows and columns; a chain of 700
  // in passes of 256; B read in place and, from 8 row tiles on, from packed panels unless it is
  // one panel already (n = 16 or 32, as wide as the tiles); row tile by
  // row tile when m > n, where a transposed A is copied per row tile), with A read directly,
  // transposed and every other element through its strides, overwriting
  // and accumulating into C, on 1 and 2 threads. The paths this CPU lacks are skipped by name (DSV4_NO_AVX512=1 / DSV4_NO_AVX2=1
  // select the others).
  std::mt19937 rng(11);
  std::normal_distribution<float> nd;
  std::vector<GemmPath> paths = {GemmPath::scalar};
  if (gemm_f32_path() != GemmPath::scalar) paths.push_back(GemmPath::avx2);
  if (gemm_f32_path() == GemmPath::avx512) paths.push_back(GemmPath::avx512);
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    for (const auto& [m, n, k] : std::vector<std::array<int, 3>>{{1, 1, 1}, {12, 32, 7}, {13, 33, 130}, {7, 17, 64},
                                                                   {25, 70, 256}, {6, 16, 0},
                                                                   {19, 40, 700}, {97, 33, 300}, {200, 64, 40},
                                                                   {150, 40, 600}, {60, 16, 50}, {100, 32, 20}}) {
      std::vector<float> a(size_t(m) * k), b(size_t(k) * n), c0(size_t(m) * n);
      for (float& v : a) v = nd(rng);
      for (float& v : b) v = nd(rng);
      for (float& v : c0) v = nd(rng);
      std::vector<float> at(a.size());  // A^T [k, m], read back as A through strides
      for (int i = 0; i < m; ++i)
        for (int kk = 0; kk < k; ++kk) at[size_t(kk) * m + i] = a[size_t(i) * k + kk];
      std::vector<float> a2(2 * a.size());  // A's elements at the even places
      for (size_t i = 0; i < a.size(); ++i) a2[2 * i] = a[i];
      for (bool accumulate : {false, true}) {
        std::vector<float> want = c0;
        gemm_f32_reference(m, n, k, a.data(), k, 1, b.data(), n, want.data(), n, accumulate);
        for (GemmPath p : paths)
          for (const char* layout : {"rows", "transposed", "strided"}) {
            std::vector<float> got = c0;
            if (layout[0] == 't') gemm_f32_with(p, m, n, k, at.data(), 1, m, b.data(), n, got.data(), n, accumulate);
            else if (layout[0] == 's') gemm_f32_with(p, m, n, k, a2.data(), 2 * size_t(k), 2, b.data(), n, got.data(), n, accumulate);
            else gemm_f32_with(p, m, n, k, a.data(), k, 1, b.data(), n, got.data(), n, accumulate);
            for (size_t i = 0; i < got.size(); ++i)
              ASSERT_EQ(got[i], want[i]) << "path " << int(p) << " " << m << "x" << n << "x" << k << " at " << i
                                         << " A " << layout << (accumulate ? " accumulating" : "") << " threads "
                                         << threads;
          }
      }
    }
  }
  set_num_threads(0);
  std::printf("gemm_f32: paths checked on this CPU: %zu of 3\n", paths.size());
}

TEST(ThreadPool, CoversTheRangeRunsNestedCallsInlineAndRethrows) {
  ThreadPool p(3);
  std::vector<int> hits(100, 0);
  p.parallel_for(hits.size(), [&](size_t b, size_t e) {
    for (size_t i = b; i < e; ++i) ++hits[i];
    p.parallel_for(4, [&](size_t, size_t) {});  // nested: inline, no deadlock
  });
  for (int h : hits) EXPECT_EQ(h, 1);
  // An error in a worker's chunk or in the caller's chunk reaches the caller after every
  // chunk has finished; the pool keeps working.
  for (size_t bad : {size_t(0), size_t(99)}) {
    std::atomic<int> finished{0};
    try {
      p.parallel_for(100, [&](size_t b, size_t e) {
        if (bad >= b && bad < e) fail("chunk with ", bad);
        ++finished;
      });
      ADD_FAILURE() << "no exception";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("chunk with " + std::to_string(bad)), std::string::npos);
    }
    EXPECT_EQ(finished.load(), 3 * static_cast<int>(ThreadPool::kChunksPerThread) - 1);  // every other chunk
  }
  // Chunks go to whoever is free: while one thread sits in a slow chunk (here: until every
  // other chunk has begun, or 10 s), the others run the rest.
  const int n_chunks = 3 * static_cast<int>(ThreadPool::kChunksPerThread);
  std::atomic<int> slow_chunks{0}, chunks{0};
  p.parallel_for(100, [&](size_t b, size_t) {
    ++chunks;
    if (b == 0) {
      const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      while (chunks.load() < n_chunks && std::chrono::steady_clock::now() < until) std::this_thread::yield();
      slow_chunks = chunks.load();
    }
  });
  EXPECT_EQ(chunks.load(), n_chunks);
  EXPECT_EQ(slow_chunks.load(), n_chunks) << "the other threads left chunks waiting for the slow one";
  int total = 0;
  p.parallel_for(1, [&](size_t, size_t) { ++total; });
  EXPECT_EQ(total, 1);
}

}  // namespace
}  // namespace dsv4
