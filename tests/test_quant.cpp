// Number formats and rounding against ../shared/golden/quant.safetensors (exact: max-abs 0),
// plus the quantized linear: its fast-to-be body against a plain double-precision dot product
// of dequantized values (relative 1e-5), and row independence (exact).
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "core/thread_pool.h"
#include "ops/hadamard.h"
#include "quant/act_quant.h"
#include "quant/formats.h"
#include "quant/linear.h"
#include "test_util.h"

namespace dsv4 {
namespace {

class QuantVectors : public ::testing::Test {
 protected:
  SafetensorsFile f{test::golden_dir("") + "quant.safetensors"};
  std::vector<float> x = test::floats(f, "x");  // [192, 128]
};

TEST_F(QuantVectors, Fp8RoundTripBlocks128And64Exact) {
  for (int block : {128, 64}) {
    std::vector<float> y = x;
    fp8_roundtrip(y, block);
    const test::MaxErr e = test::max_abs_err(y, test::floats(f, "fp8_roundtrip_b" + std::to_string(block)));
    EXPECT_EQ(e.err, 0.0) << "block " << block << ": " << e.str();
  }
}

TEST_F(QuantVectors, Fp4RoundTripBlock32Exact) {
  std::vector<float> y = x;
  fp4_roundtrip(y, 32);
  const test::MaxErr e = test::max_abs_err(y, test::floats(f, "fp4_roundtrip_b32"));
  EXPECT_EQ(e.err, 0.0) << e.str();
}

TEST_F(QuantVectors, Hadamard128) {
  std::vector<float> y = x;
  for (size_t r = 0; r < y.size() / 128; ++r) hadamard_rotate(std::span<float>(y).subspan(r * 128, 128));
  const std::vector<float> want = test::floats(f, "hadamard128");
  // Metric: |got - want| / ||x row||_2 (the rotation is orthogonal; rows span many magnitudes
  // and single outputs cancel). The butterfly order differs from the reference's matrix product
  // by float rounding only.
  double worst = 0;
  size_t at = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    double norm = 0;
    for (size_t k = i / 128 * 128; k < i / 128 * 128 + 128; ++k) norm += double(x[k]) * x[k];
    const double e = std::fabs(double(y[i]) - want[i]) / std::max(1e-30, std::sqrt(norm));
    if (e > worst) worst = e, at = i;
  }
  EXPECT_LE(worst, 1e-6) << "at " << at << ": got " << y[at] << ", want " << want[at];
  std::printf("hadamard128 worst relative err vs reference: %.3g\n", worst);
}

TEST(Formats, E4M3DecodeEncodeRoundTripsEveryCode) {
  for (int b = 0; b < 256; ++b) {
    const float v = e4m3_to_f32(static_cast<uint8_t>(b));
    if (std::isnan(v)) continue;
    EXPECT_EQ(round_e4m3(v), v) << "code " << b;
    EXPECT_EQ(e4m3_to_f32(encode_e4m3(v)), v) << "code " << b;
  }
  EXPECT_EQ(e4m3_to_f32(0x7E), 448.0f);
  EXPECT_EQ(e4m3_to_f32(0x01), std::ldexp(1.0f, -9));
}

TEST(Formats, RoundToNearestEven) {
  EXPECT_EQ(round_e2m1(0.25f), 0.0f);   // tie -> even (0)
  EXPECT_EQ(round_e2m1(0.75f), 1.0f);   // tie -> even (1.0)
  EXPECT_EQ(round_e2m1(2.5f), 2.0f);
  EXPECT_EQ(round_e2m1(5.0f), 4.0f);
  EXPECT_EQ(round_e2m1(-1.75f), -2.0f);
  EXPECT_EQ(round_e4m3(1.0625f), 1.0f);   // halfway between 1 and 1.125
  EXPECT_EQ(round_e4m3(1.1875f), 1.25f);  // halfway between 1.125 and 1.25
  EXPECT_EQ(round_e4m3(std::ldexp(1.5f, -10)), std::ldexp(2.0f, -10));  // subnormal tie
  EXPECT_EQ(ue8m0_to_f32(127), 1.0f);
  EXPECT_EQ(ue8m0_to_f32(130), 8.0f);
  EXPECT_EQ(pow2_ceil(1.0f), 1.0f);
  EXPECT_EQ(pow2_ceil(1.0000001f), 2.0f);
  EXPECT_EQ(pow2_ceil(0.3f), 0.5f);
}

// Random quantized weights of each format with both scale dtypes.
struct TestLinear {
  std::vector<uint8_t> w, s;
  Linear lin;
};

TestLinear make_linear(WeightFormat fmt, int out, int in, bool scale_f32, std::mt19937& rng) {
  TestLinear t;
  t.lin.format = fmt;
  t.lin.out = out;
  t.lin.in = in;
  t.lin.scale_f32 = scale_f32;
  const size_t n_w = fmt == WeightFormat::fp4 ? size_t(out) * in / 2 : size_t(out) * in;
  t.w.resize(n_w);
  for (auto& b : t.w) {
    b = static_cast<uint8_t>(rng());
    if (fmt == WeightFormat::fp8 && (b & 0x7F) == 0x7F) b = 0x30;  // no NaN weights
  }
  const size_t n_s = fmt == WeightFormat::fp4 ? size_t(out) * (in / 32) : size_t((out + 127) / 128) * ((in + 127) / 128);
  t.s.resize(n_s * (scale_f32 ? 4 : 1));
  for (size_t i = 0; i < n_s; ++i) {
    const uint8_t e = static_cast<uint8_t>(120 + rng() % 8);
    if (scale_f32) {
      const float v = ue8m0_to_f32(e) * (1.0f + (rng() % 100) / 100.0f);
      std::memcpy(t.s.data() + 4 * i, &v, 4);
    } else {
      t.s[i] = e;
    }
  }
  t.lin.weight = t.w.data();
  t.lin.scale = t.s.data();
  return t;
}

TEST(Linear, MatchesPlainDotOfDequantizedValues) {
  std::mt19937 rng(3);
  for (WeightFormat fmt : {WeightFormat::fp8, WeightFormat::fp4})
    for (bool sf32 : {false, true}) {
      TestLinear t = make_linear(fmt, 160, 256, sf32, rng);
      const int n = 3;
      std::vector<float> x(n * 256);
      std::normal_distribution<float> nd;
      for (float& v : x) v = nd(rng);
      for (bool q : {false, true}) {
        std::vector<float> y(n * 160);
        linear(t.lin, x, n, y, q);
        std::vector<float> xq = x, wrow(256);
        if (q)
          for (int r = 0; r < n; ++r) fp8_roundtrip(std::span<float>(xq).subspan(r * 256, 256), 128);
        double worst = 0;
        for (int r = 0; r < n; ++r)
          for (int o = 0; o < 160; ++o) {
            t.lin.dequant_row(o, wrow.data());
            double ref = 0, mag = 0;
            for (int k = 0; k < 256; ++k) {
              ref += double(xq[r * 256 + k]) * wrow[k];
              mag += std::fabs(double(xq[r * 256 + k]) * wrow[k]);
            }
            worst = std::max(worst, std::fabs(y[r * 160 + o] - ref) / (mag + 1e-30));
          }
        EXPECT_LE(worst, 1e-5) << "format " << int(fmt) << " f32 scales " << sf32 << " quantized input " << q;
      }
    }
}

// Float weights for the bf16 / f32 formats.
TestLinear make_float_linear(WeightFormat fmt, int out, int in, std::mt19937& rng) {
  TestLinear t;
  t.lin.format = fmt;
  t.lin.out = out;
  t.lin.in = in;
  std::normal_distribution<float> nd(0.0f, 0.1f);
  t.w.resize(size_t(out) * in * (fmt == WeightFormat::bf16 ? 2 : 4));
  for (size_t i = 0; i < size_t(out) * in; ++i) {
    const float v = nd(rng);
    if (fmt == WeightFormat::bf16) {
      const uint16_t b = static_cast<uint16_t>(f32_to_bits(v) >> 16);
      std::memcpy(t.w.data() + 2 * i, &b, 2);
    } else {
      std::memcpy(t.w.data() + 4 * i, &v, 4);
    }
  }
  t.lin.weight = t.w.data();
  return t;
}

TEST(Linear, Avx2PathMatchesScalarReference) {
  if (linear_path() != LinearPath::avx2) GTEST_SKIP() << "this CPU has no AVX2 + FMA + F16C";
  std::mt19937 rng(8);
  std::vector<TestLinear> cases;
  for (bool sf32 : {false, true}) {
    cases.push_back(make_linear(WeightFormat::fp8, 200, 384, sf32, rng));
    cases.push_back(make_linear(WeightFormat::fp4, 200, 384, sf32, rng));
  }
  cases.push_back(make_float_linear(WeightFormat::bf16, 67, 208, rng));
  cases.push_back(make_float_linear(WeightFormat::f32, 67, 208, rng));
  for (const auto& t : cases)
    for (int n : {1, 3, 70}) {
      std::vector<float> x(size_t(n) * t.lin.in);
      std::normal_distribution<float> nd;
      for (float& v : x) v = nd(rng) * 3;
      for (bool q : {false, true}) {
        std::vector<float> fast(size_t(n) * t.lin.out), ref(fast.size());
        linear_with(LinearPath::avx2, t.lin, x, n, fast, q);
        linear_with(LinearPath::scalar, t.lin, x, n, ref, q);
        // Metric: |fast - ref| / sum_k |x_k w_k| per output (summation order differs only).
        double worst = 0;
        std::vector<float> wrow(t.lin.in), xq = x;
        const bool quantized = t.lin.format == WeightFormat::fp8 || t.lin.format == WeightFormat::fp4;
        if (q && quantized)
          for (int r = 0; r < n; ++r) fp8_roundtrip(std::span<float>(xq).subspan(size_t(r) * t.lin.in, t.lin.in), 128);
        for (int o = 0; o < t.lin.out; ++o) {
          t.lin.dequant_row(o, wrow.data());
          for (int r = 0; r < n; ++r) {
            double mag = 0;
            for (int k = 0; k < t.lin.in; ++k) mag += std::fabs(double(xq[size_t(r) * t.lin.in + k]) * wrow[k]);
            worst = std::max(worst, std::fabs(double(fast[size_t(r) * t.lin.out + o]) - ref[size_t(r) * t.lin.out + o]) / (mag + 1e-30));
          }
        }
        EXPECT_LE(worst, 1e-6) << "format " << int(t.lin.format) << " n " << n << " quantized input " << q;
      }
    }
}

TEST(Linear, Avx2RowsAreIndependentOfBatchAndThreads) {
  if (linear_path() != LinearPath::avx2) GTEST_SKIP() << "this CPU has no AVX2 + FMA + F16C";
  std::mt19937 rng(12);
  for (WeightFormat fmt : {WeightFormat::fp8, WeightFormat::fp4}) {
    TestLinear t = make_linear(fmt, 130, 256, false, rng);
    const int n = 75;  // more than one token tile
    std::vector<float> x(size_t(n) * 256);
    std::normal_distribution<float> nd;
    for (float& v : x) v = nd(rng);
    std::vector<float> all(size_t(n) * 130);
    set_num_threads(2);
    linear_with(LinearPath::avx2, t.lin, x, n, all, true);
    set_num_threads(1);
    for (int r : {0, 1, 63, 64, 74}) {
      std::vector<float> one(130);
      linear_with(LinearPath::avx2, t.lin, std::span<const float>(x).subspan(size_t(r) * 256, 256), 1, one, true);
      EXPECT_EQ(test::max_abs_err(one, std::span<const float>(all).subspan(size_t(r) * 130, 130)).err, 0.0) << "row " << r;
    }
    // A slice of output rows equals the same rows of the full product.
    std::vector<float> part(size_t(n) * 7);
    linear_with(LinearPath::avx2, t.lin, x, n, part, true, 61, 7);
    for (int r = 0; r < n; ++r)
      for (int o = 0; o < 7; ++o) EXPECT_EQ(part[size_t(r) * 7 + o], all[size_t(r) * 130 + 61 + o]);
    set_num_threads(0);
  }
}

TEST(Linear, RowsAreIndependentOfBatchAndThreads) {
  std::mt19937 rng(4);
  TestLinear t = make_linear(WeightFormat::fp4, 256, 384, false, rng);
  const int n = 9;
  std::vector<float> x(n * 384);
  std::normal_distribution<float> nd;
  for (float& v : x) v = nd(rng);
  std::vector<float> all(n * 256);
  set_num_threads(2);
  linear(t.lin, x, n, all, true);
  set_num_threads(1);
  for (int r = 0; r < n; ++r) {
    std::vector<float> one(256);
    linear(t.lin, std::span<const float>(x).subspan(r * 384, 384), 1, one, true);
    EXPECT_EQ(test::max_abs_err(one, std::span<const float>(all).subspan(r * 256, 256)).err, 0.0) << "row " << r;
  }
  set_num_threads(0);
}

}  // namespace
}  // namespace dsv4
