// Number formats and rounding against ../shared/golden/quant.safetensors (exact: max-abs 0),
// the block packing of rounded rows (exact: bit for bit, scalar and AVX2 unpackers alike; off-
// grid values throw), plus the quantized linear: its fast-to-be body against a plain
// double-precision dot product of dequantized values (relative 1e-5), and row independence
// (exact).
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "core/check.h"
#include "core/cpu.h"
#include "core/thread_pool.h"
#include "ops/hadamard.h"
#include "quant/act_quant.h"
#include "quant/block_pack.h"
#include "quant/formats.h"
#include "quant/fp4_avx2.h"
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

// The definition round_e4m3 / round_e2m1 implement without library calls: frexp for the
// binade, the subnormal binade's spacing below it, nearbyint (half to even).
float round_grid_definition(float x, int mantissa_bits, int min_normal_exp) {
  if (x == 0 || std::isnan(x)) return x;
  int e;
  std::frexp(x, &e);
  const float step = std::ldexp(1.0f, std::max(e - 1, min_normal_exp) - mantissa_bits);
  return std::nearbyint(x / step) * step;
}

TEST(Rounding, MatchesTheDefinitionEverywhere) {
  std::vector<float> xs = {0.0f, -0.0f, 448.0f, -448.0f, 6.0f, -6.0f, 1e-30f, -1e-30f, 1e-45f};
  for (int b = 0; b < 256; ++b) {  // every code, and the midpoints and neighbours around it
    const float v = e4m3_to_f32(static_cast<uint8_t>(b));
    if (std::isnan(v)) continue;
    for (float d : {0.0f, std::ldexp(1.0f, -10), std::ldexp(1.0f, -12), std::ldexp(1.0f, -4)})
      for (float sgn : {1.0f, -1.0f}) xs.push_back(sgn * (std::fabs(v) + d)), xs.push_back(sgn * std::nextafter(std::fabs(v) + d, 0.0f));
  }
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> mant(-1.0f, 1.0f);
  std::uniform_int_distribution<int> ex(-30, 9);
  for (int i = 0; i < 200000; ++i) xs.push_back(std::ldexp(mant(rng), ex(rng)));
  for (float x : xs) {
    const float x8 = std::clamp(x, -448.0f, 448.0f), x4 = std::clamp(x, -6.0f, 6.0f);
    const float want8 = round_grid_definition(x8, 3, -6), want4 = round_grid_definition(x4, 1, 0);
    ASSERT_EQ(f32_to_bits(round_e4m3(x8)), f32_to_bits(want8)) << "e4m3 of " << x8;
    ASSERT_EQ(f32_to_bits(round_e2m1(x4)), f32_to_bits(want4)) << "e2m1 of " << x4;
  }
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

// Rows with every kind of block: normal data, zeros (+0 and -0), a block of zeros only, tiny
// values (below the FP8 amax floor, float subnormals), huge values (near the float maximum)
// and blocks spanning many binades.
std::vector<float> awkward_rows(int n, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd;
  std::uniform_int_distribution<int> ex(-140, 120);
  std::vector<float> x(n);
  for (int i = 0; i < n; ++i) {
    switch ((i / 64) % 6) {
      case 0: x[i] = nd(rng); break;
      case 1: x[i] = i % 3 == 0 ? 0.0f : i % 3 == 1 ? -0.0f : nd(rng); break;
      case 2: x[i] = i % 2 ? 0.0f : -0.0f; break;
      case 3: x[i] = nd(rng) * std::ldexp(1.0f, -130 + (i % 20)); break;  // tiny, subnormal floats
      case 4: x[i] = nd(rng) * std::ldexp(1.0f, 120 + (i % 6)); break;    // huge
      case 5: x[i] = std::ldexp(nd(rng), ex(rng)); break;                 // wide spread
    }
  }
  return x;
}

bool same_bits(std::span<const float> a, std::span<const float> b, std::string& where) {
  for (size_t i = 0; i < a.size(); ++i)
    if (f32_to_bits(a[i]) != f32_to_bits(b[i])) {
      where = "index " + std::to_string(i) + ": got " + std::to_string(a[i]) + ", want " + std::to_string(b[i]);
      return false;
    }
  return true;
}

// fp8_quantize's AVX2 body against the scalar reference, bit for bit (scales and values), on
// blocks of every magnitude with the special values mixed in.
TEST(Rounding, Fp8QuantizeSimdMatchesScalarBitForBit) {
  if (!use_avx2_fma()) GTEST_SKIP() << "no AVX2 + FMA on this CPU";
  std::mt19937 rng(17);
  std::normal_distribution<float> nd;
  const float specials[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, std::ldexp(1.0f, -140), -std::ldexp(3.0f, -130),
                            448.0f, 1e38f, -1e-38f, std::ldexp(1.0f, -10), std::ldexp(1.5f, -10)};
  for (int trial = 0; trial < 400; ++trial) {
    const int block = trial % 3 == 0 ? 64 : 128, n_blocks = 3;
    std::vector<float> x(size_t(block) * n_blocks);
    const float magnitude = std::ldexp(1.0f, static_cast<int>(rng() % 120) - 60);
    for (float& v : x) v = nd(rng) * magnitude;
    if (trial % 2)
      for (int k = 0; k < 5; ++k) x[rng() % x.size()] = specials[rng() % std::size(specials)];
    if (trial % 7 == 0) std::fill(x.begin(), x.begin() + block, 0.0f);  // an all-zero block
    std::vector<float> q_fast(x.size()), q_ref(x.size()), s_fast(n_blocks), s_ref(n_blocks);
    fp8_quantize(x, block, q_fast, s_fast);
    fp8_quantize_scalar(x, block, q_ref, s_ref);
    for (size_t i = 0; i < x.size(); ++i)
      ASSERT_EQ(f32_to_bits(q_fast[i]), f32_to_bits(q_ref[i])) << "trial " << trial << " x " << x[i];
    for (int b = 0; b < n_blocks; ++b) ASSERT_EQ(f32_to_bits(s_fast[b]), f32_to_bits(s_ref[b])) << "trial " << trial;
  }
}

TEST(BlockPack, Fp8RoundTrippedRowsUnpackBitForBit) {
  // Metric: bitwise equality of unpack(pack(fp8_roundtrip(x))) with fp8_roundtrip(x).
  for (unsigned seed : {1u, 2u, 3u}) {
    std::vector<float> x = awkward_rows(64 * 6 * 4, seed);
    fp8_roundtrip(x, 64);
    std::vector<uint8_t> codes(x.size()), scales(x.size() / 64);
    pack_fp8_blocks(x, 64, codes, scales);
    std::vector<float> y(x.size()), ys(x.size()), yv(x.size());
    unpack_fp8_blocks(codes, scales, 64, y);
    scalar::unpack_fp8_blocks(codes.data(), scales.data(), 64, static_cast<int>(x.size()), ys.data());
    std::string where;
    EXPECT_TRUE(same_bits(y, x, where)) << "seed " << seed << " " << where;
    EXPECT_TRUE(same_bits(ys, x, where)) << "scalar, seed " << seed << " " << where;
    if (use_avx2_fma()) {
      avx2::unpack_fp8_blocks(codes.data(), scales.data(), 64, static_cast<int>(x.size()), yv.data());
      EXPECT_TRUE(same_bits(yv, x, where)) << "avx2, seed " << seed << " " << where;
    }
  }
  // The reference's own round-trip vectors.
  SafetensorsFile f{test::golden_dir("") + "quant.safetensors"};
  const std::vector<float> want = test::floats(f, "fp8_roundtrip_b64");
  std::vector<uint8_t> codes(want.size()), scales(want.size() / 64);
  pack_fp8_blocks(want, 64, codes, scales);
  std::vector<float> got(want.size());
  unpack_fp8_blocks(codes, scales, 64, got);
  std::string where;
  EXPECT_TRUE(same_bits(got, want, where)) << where;
}

TEST(BlockPack, Fp4RoundTrippedRowsUnpackBitForBit) {
  for (unsigned seed : {4u, 5u, 6u}) {
    std::vector<float> x = awkward_rows(64 * 6 * 4, seed);
    fp4_roundtrip(x, 32);
    std::vector<uint8_t> codes(x.size() / 2), scales(x.size() / 32);
    pack_fp4_blocks(x, 32, codes, scales);
    std::vector<float> y(x.size()), ys(x.size()), yv(x.size());
    unpack_fp4_blocks(codes, scales, 32, y);
    scalar::unpack_fp4_blocks(codes.data(), scales.data(), 32, static_cast<int>(x.size()), ys.data());
    std::string where;
    EXPECT_TRUE(same_bits(y, x, where)) << "seed " << seed << " " << where;
    EXPECT_TRUE(same_bits(ys, x, where)) << "scalar, seed " << seed << " " << where;
    if (use_avx2_fma()) {
      avx2::unpack_fp4_blocks(codes.data(), scales.data(), 32, static_cast<int>(x.size()), yv.data());
      EXPECT_TRUE(same_bits(yv, x, where)) << "avx2, seed " << seed << " " << where;
    }
  }
  SafetensorsFile f{test::golden_dir("") + "quant.safetensors"};
  const std::vector<float> want = test::floats(f, "fp4_roundtrip_b32");
  std::vector<uint8_t> codes(want.size() / 2), scales(want.size() / 32);
  pack_fp4_blocks(want, 32, codes, scales);
  std::vector<float> got(want.size());
  unpack_fp4_blocks(codes, scales, 32, got);
  std::string where;
  EXPECT_TRUE(same_bits(got, want, where)) << where;
}

TEST(BlockPack, Avx2UnpackersMatchScalarOnEveryCodeAndScale) {
  if (!use_avx2_fma()) GTEST_SKIP() << "no AVX2 + FMA on this CPU";
  // Every byte (e4m3 NaN codes excepted: never stored) under every scale byte 1 .. 254.
  std::vector<uint8_t> codes(256), scales(254);
  for (int i = 0; i < 256; ++i) codes[i] = static_cast<uint8_t>((i & 0x7F) == 0x7F ? 0 : i);
  for (int s = 1; s <= 254; ++s) scales[s - 1] = static_cast<uint8_t>(s);
  std::vector<uint8_t> all8, all4, sc8, sc4;
  for (int s = 0; s < 254; ++s) {
    all8.insert(all8.end(), codes.begin(), codes.end());  // blocks of 256 e4m3 codes
    sc8.push_back(scales[s]);
    all4.insert(all4.end(), codes.begin(), codes.end());  // blocks of 512 e2m1 nibbles
    sc4.push_back(scales[s]);
  }
  std::vector<float> a(all8.size()), b(all8.size());
  scalar::unpack_fp8_blocks(all8.data(), sc8.data(), 256, static_cast<int>(a.size()), a.data());
  avx2::unpack_fp8_blocks(all8.data(), sc8.data(), 256, static_cast<int>(b.size()), b.data());
  std::string where;
  EXPECT_TRUE(same_bits(b, a, where)) << "e4m3 " << where;
  std::vector<float> c(all4.size() * 2), d(all4.size() * 2);
  scalar::unpack_fp4_blocks(all4.data(), sc4.data(), 512, static_cast<int>(c.size()), c.data());
  avx2::unpack_fp4_blocks(all4.data(), sc4.data(), 512, static_cast<int>(d.size()), d.data());
  EXPECT_TRUE(same_bits(d, c, where)) << "e2m1 " << where;
}

TEST(BlockPack, OffGridValuesThrow) {
  // Not on the grid: a value between two e4m3 steps of its block, NaN, infinity, a float
  // subnormal below the finest step of a block with large values; for FP4, 0.75 * max.
  auto fp8_throws = [](std::vector<float> x, const std::string& fragment) {
    std::vector<uint8_t> codes(x.size()), scales(x.size() / 64);
    try {
      pack_fp8_blocks(x, 64, codes, scales);
      ADD_FAILURE() << "no error for " << fragment;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
  };
  std::vector<float> row(128, 1.0f);
  row[70] = 1.0f + 1.0f / 64;  // the block scale becomes 2^-8, so its e4m3 steps near 1 are 1/8
  fp8_throws(row, "index 70");
  row[70] = NAN;
  fp8_throws(row, "not finite");
  row[70] = INFINITY;
  fp8_throws(row, "not finite");
  row[70] = 1.0f;
  row[3] = std::ldexp(1.0f, -140);
  fp8_throws(row, "index 3");
  std::vector<float> f4(32, 6.0f);
  f4[5] = 4.5f;
  std::vector<uint8_t> codes(16), scales(1);
  EXPECT_THROW(pack_fp4_blocks(f4, 32, codes, scales), Error);
  // Sizes that do not fit the row.
  EXPECT_THROW(pack_fp4_blocks(f4, 32, std::span<uint8_t>(codes).first(8), scales), Error);
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

class LinearPaths : public ::testing::TestWithParam<LinearPath> {
 protected:
  void SetUp() override {
    if (!linear_path_available(GetParam())) GTEST_SKIP() << "this CPU cannot run the path";
  }
};

TEST_P(LinearPaths, MatchesScalarReference) {
  std::mt19937 rng(8);
  std::vector<TestLinear> cases;
  for (bool sf32 : {false, true}) {
    cases.push_back(make_linear(WeightFormat::fp8, 200, 384, sf32, rng));
    cases.push_back(make_linear(WeightFormat::fp4, 200, 384, sf32, rng));
  }
  cases.push_back(make_float_linear(WeightFormat::bf16, 67, 208, rng));
  cases.push_back(make_float_linear(WeightFormat::bf16, 67, 256, rng));  // whole 128-blocks: AVX-512 float kernel
  cases.push_back(make_float_linear(WeightFormat::f32, 67, 208, rng));
  cases.push_back(make_float_linear(WeightFormat::f32, 67, 256, rng));  // whole 128-blocks: AVX-512 float kernel
  for (const auto& t : cases)
    for (int n : {1, 3, 70}) {
      std::vector<float> x(size_t(n) * t.lin.in);
      std::normal_distribution<float> nd;
      for (float& v : x) v = nd(rng) * 3;
      for (bool q : {false, true}) {
        std::vector<float> fast(size_t(n) * t.lin.out), ref(fast.size());
        linear_with(GetParam(), t.lin, x, n, fast, q);
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

// Float weights with their transposed copy (the trainer's masters, train/master_views.h) take
// gemm_f32: one fused multiply-add chain per output, so every path, every row count and every
// row range is bitwise the std::fma chain, whatever the thread count.
TEST_P(LinearPaths, TransposedFloatWeightsAreTheFmaChainBitwise) {
  std::mt19937 rng(31);
  const int out = 70, in = 136;
  TestLinear t = make_float_linear(WeightFormat::f32, out, in, rng);
  std::vector<float> wt(size_t(in) * out);
  for (int o = 0; o < out; ++o)
    for (int k = 0; k < in; ++k) std::memcpy(&wt[size_t(k) * out + o], t.w.data() + 4 * (size_t(o) * in + k), 4);
  t.lin.transposed = wt.data();
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    for (int n : {1, 5, 29})
      for (auto [row_begin, rows] : {std::pair{0, out}, std::pair{13, 40}}) {
        std::vector<float> x(size_t(n) * in), y(size_t(n) * rows);
        std::normal_distribution<float> nd;
        for (float& v : x) v = nd(rng);
        linear_with(GetParam(), t.lin, x, n, y, /*quantize_input=*/true, row_begin, rows);
        std::vector<float> wrow(in);
        for (int r = 0; r < rows; ++r) {
          t.lin.dequant_row(row_begin + r, wrow.data());
          for (int i = 0; i < n; ++i) {
            float acc = 0;
            for (int k = 0; k < in; ++k) acc = std::fma(x[size_t(i) * in + k], wrow[k], acc);
            ASSERT_EQ(f32_to_bits(y[size_t(i) * rows + r]), f32_to_bits(acc))
                << "threads " << threads << " n " << n << " row " << row_begin + r << " token " << i;
          }
        }
      }
  }
  set_num_threads(0);
}

// The AVX2 decoders build floats from bit tricks (FP8: w * 2^-120 with the inputs rescaled per
// token; FP4: 2w, the scales applied per lane after the sums), so every code, a wide range of
// scales and inputs of extreme magnitude are checked against the scalar reference, and a batch
// against single tokens.
TEST_P(LinearPaths, EveryCodeScaleAndInputMagnitude) {
  std::mt19937 rng(21);
  std::vector<TestLinear> cases;
  cases.push_back(make_linear(WeightFormat::fp8, 256, 256, false, rng));
  for (size_t i = 0; i < cases[0].w.size(); ++i) {
    const uint8_t code = static_cast<uint8_t>(i * 7 + i / 256);
    cases[0].w[i] = (code & 0x7F) == 0x7F ? 0 : code;  // every code but NaN, subnormals included
  }
  for (size_t i = 0; i < cases[0].s.size(); ++i) cases[0].s[i] = static_cast<uint8_t>(115 + 4 * i);  // 2^-12 .. 2^0: 1e30 inputs stay finite
  cases.push_back(make_linear(WeightFormat::fp4, 200, 256, false, rng));
  for (size_t i = 0; i < cases[1].w.size(); ++i) cases[1].w[i] = static_cast<uint8_t>(i * 13 + i / 128);
  for (size_t i = 0; i < cases[1].s.size(); ++i) cases[1].s[i] = static_cast<uint8_t>(1 + i % 200);  // 2^-126 .. 2^73
  for (const auto& t : cases)
    for (bool q : {false, true}) {
      const int n = 5, in = t.lin.in, out = t.lin.out;
      std::vector<float> x(size_t(n) * in);
      std::normal_distribution<float> nd;
      // (FP4's largest scales, 2^73, would overflow float with 1e30 inputs: 1e10 instead.)
      const float big = t.lin.format == WeightFormat::fp4 ? 1e10f : 1e30f;
      const float magnitude[n] = {1.0f, 1e-30f, big, 448.0f, 3e-3f};
      for (int r = 0; r < n; ++r)
        for (int k = 0; k < in; ++k) x[size_t(r) * in + k] = nd(rng) * magnitude[r];
      std::vector<float> fast(size_t(n) * out), ref(fast.size());
      linear_with(GetParam(), t.lin, x, n, fast, q);
      linear_with(LinearPath::scalar, t.lin, x, n, ref, q);
      std::vector<float> xq = x, wrow(in);
      if (q)
        for (int r = 0; r < n; ++r) fp8_roundtrip(std::span<float>(xq).subspan(size_t(r) * in, in), 128);
      for (int o = 0; o < out; ++o) {
        t.lin.dequant_row(o, wrow.data());
        for (int r = 0; r < n; ++r) {
          double mag = 0;
          for (int k = 0; k < in; ++k) mag += std::fabs(double(xq[size_t(r) * in + k]) * wrow[k]);
          const double err = std::fabs(double(fast[size_t(r) * out + o]) - ref[size_t(r) * out + o]);
          ASSERT_TRUE(std::isfinite(fast[size_t(r) * out + o])) << "row " << o << " token " << r;
          // Plus float's subnormal spacing: products under 2^-126 round on a fixed grid.
          ASSERT_LE(err, 1e-6 * mag + 1e-40) << "format " << int(t.lin.format) << " quantized " << q << " row " << o << " token " << r;
        }
      }
      for (int r = 0; r < n; ++r) {  // one token alone gives the batch's bits
        std::vector<float> one(out);
        linear_with(GetParam(), t.lin, std::span<const float>(x).subspan(size_t(r) * in, in), 1, one, q);
        for (int o = 0; o < out; ++o) ASSERT_EQ(one[o], fast[size_t(r) * out + o]) << "row " << o << " token " << r;
      }
    }
}

// The AVX2 path scales each token's FP8 inputs by 2^K from their largest magnitude; a token whose
// largest inputs are negative (and huge) must get the K of their magnitude, or they overflow.
// Metric: finite results within 1e-6 sum_k |x_k w_k| of the scalar reference, quantized or not.
TEST_P(LinearPaths, Fp8TokensWhoseLargestInputsAreNegative) {
  std::mt19937 rng(44);
  const TestLinear t = make_linear(WeightFormat::fp8, 64, 256, false, rng);
  std::vector<float> x(256);
  std::normal_distribution<float> nd;
  for (int k = 0; k < 256; ++k) x[k] = k % 9 == 0 ? -1e30f * (1 + std::fabs(nd(rng))) : std::fabs(nd(rng));
  for (bool q : {false, true}) {
    std::vector<float> fast(64), ref(64), xq = x, wrow(256);
    linear_with(GetParam(), t.lin, x, 1, fast, q);
    linear_with(LinearPath::scalar, t.lin, x, 1, ref, q);
    if (q) fp8_roundtrip(xq, 128);
    for (int o = 0; o < 64; ++o) {
      t.lin.dequant_row(o, wrow.data());
      double mag = 0;
      for (int k = 0; k < 256; ++k) mag += std::fabs(double(xq[k]) * wrow[k]);
      ASSERT_TRUE(std::isfinite(fast[o])) << "quantized " << q << " row " << o;
      ASSERT_LE(std::fabs(double(fast[o]) - ref[o]), 1e-6 * mag) << "quantized " << q << " row " << o;
    }
  }
}

// The AVX2 FP4 GEMV sums a "narrow" input block (every 64 x an integer, as when each e4m3 value is
// 0 or >= 2^-3) with integers and a wide one with float FMAs, the GEMM always with floats; the
// two must give the same bits. Token 0: Gaussian (mostly narrow blocks); 1: blocks 0 and 2 wide
// (a value quantized to an e4m3 subnormal, 64 x = k / 8); 2: every input +-448, the largest
// sums (narrow); 3: wide blocks. Metric: exact equality of a token alone and in the batch, and
// |fast - scalar| <= 1e-6 sum_k |x_k w_k| per output.
TEST_P(LinearPaths, Fp4NarrowAndWideInputBlocksAgree) {
  std::mt19937 rng(33);
  for (bool sf32 : {false, true}) {
    TestLinear t = make_linear(WeightFormat::fp4, 96, 512, sf32, rng);
    const int n = 4, in = 512, out = 96;
    std::vector<float> x(size_t(n) * in);
    std::normal_distribution<float> nd;
    for (float& v : x) v = nd(rng);
    for (int b = 0; b < in / 128; b += 2) x[size_t(1) * in + b * 128 + 5] = 1e-4f;  // wide: ~7 * 2^-9 after scaling
    for (int k = 0; k < in; ++k) x[size_t(2) * in + k] = k % 3 ? 448.0f : -448.0f;     // narrow, largest sums
    for (int k = 0; k < in; ++k) x[size_t(3) * in + k] = k % 7 == 0 ? 0.0f : nd(rng) * (k % 128 < 64 ? 1.0f : 1e-3f);
    std::vector<float> all(size_t(n) * out), ref(all.size());
    linear_with(GetParam(), t.lin, x, n, all, true);
    linear_with(LinearPath::scalar, t.lin, x, n, ref, true);
    std::vector<float> xq = x, wrow(in);
    for (int r = 0; r < n; ++r) fp8_roundtrip(std::span<float>(xq).subspan(size_t(r) * in, in), 128);
    for (int r = 0; r < n; ++r) {
      std::vector<float> one(out);
      linear_with(GetParam(), t.lin, std::span<const float>(x).subspan(size_t(r) * in, in), 1, one, true);
      for (int o = 0; o < out; ++o) {
        ASSERT_EQ(one[o], all[size_t(r) * out + o]) << "f32 scales " << sf32 << " token " << r << " row " << o;
        t.lin.dequant_row(o, wrow.data());
        double mag = 0;
        for (int k = 0; k < in; ++k) mag += std::fabs(double(xq[size_t(r) * in + k]) * wrow[k]);
        ASSERT_LE(std::fabs(double(one[o]) - ref[size_t(r) * out + o]), 1e-6 * mag) << "token " << r << " row " << o;
      }
    }
  }
}

// The two FP4 decoders of fp4_avx2.h, one block at a time: on narrow inputs the integer one
// (vpmaddwd, minus the bias) and the float one (FMA chains) give every lane the exact sum of its
// 16 products, bit for bit. Metric: exact equality with each other and with a double-precision
// sum per lane, over random codes (all 16) and inputs up to the int16 limit.
DSV4_AVX2 void fp4_lanes(const uint8_t* block, const float* x, float integer[8], float floating[8], bool* narrow) {
  using namespace fp4_avx2;
  alignas(32) int16_t codes[kWeights];
  alignas(32) int32_t bias[8];
  alignas(32) float xf[kWeights];
  *narrow = to_codes(x, kNarrow, codes, bias);
  to_floats(x, kNarrow, xf);
  _mm256_storeu_ps(integer, lanes_int(block, codes, bias));
  _mm256_storeu_ps(floating, lanes_float(block, xf));
}

TEST(Fp4Avx2, IntegerAndFloatDecodersGiveTheSameLanes) {
  if (!linear_path_available(LinearPath::avx2)) GTEST_SKIP() << "this CPU cannot run the path";
  std::mt19937 rng(5);
  for (int trial = 0; trial < 200; ++trial) {
    uint8_t block[64];
    for (auto& b : block) b = static_cast<uint8_t>(rng());
    float x[128];
    for (int i = 0; i < 128; ++i) {
      const int k = trial % 4 == 0 ? (i % 2 ? 32767 : -32767) : static_cast<int>(rng() % 65535) - 32767;
      x[i] = trial % 4 == 1 && i % 5 == 0 ? 0.0f : static_cast<float>(k) / 64;
    }
    float integer[8], floating[8];
    bool narrow = false;
    fp4_lanes(block, x, integer, floating, &narrow);
    ASSERT_TRUE(narrow) << "trial " << trial;
    double exact[8] = {};
    for (int p = 0; p < 128; ++p) {  // the float decoder's vector p / 8, lane p % 8
      const int i = fp4_avx2::kFloatOrder[p];
      const uint8_t nibble = i % 2 ? block[i / 2] >> 4 : block[i / 2] & 15;
      exact[p % 8] += double(x[i]) * 64 * (2 * e2m1_to_f32(nibble));
    }
    for (int l = 0; l < 8; ++l) {
      ASSERT_EQ(integer[l], floating[l]) << "trial " << trial << " lane " << l;
      ASSERT_EQ(double(integer[l]), exact[l]) << "trial " << trial << " lane " << l;
    }
  }
}

// Which input blocks count as narrow (fp4_avx2::to_codes, 64 x an integer of at most 15 bits).
// Metric: the exact verdict per case.
TEST(Fp4Avx2, NarrowBlocksAreExactlyTheInt16Ones) {
  if (!linear_path_available(LinearPath::avx2)) GTEST_SKIP() << "this CPU cannot run the path";
  const auto verdict = [](float value, float rest) {
    float x[128];
    for (float& v : x) v = rest;
    x[77] = value;
    alignas(32) int16_t codes[128];
    alignas(32) int32_t bias[8];
    return fp4_avx2::to_codes(x, fp4_avx2::kNarrow, codes, bias);
  };
  EXPECT_TRUE(verdict(0.0f, 0.0f));
  EXPECT_TRUE(verdict(448.0f, -448.0f));     // the e4m3 extremes
  EXPECT_TRUE(verdict(0.125f, 1.5f));        // 2^-3, the smallest normal step that always fits
  EXPECT_TRUE(verdict(0.0625f, 1.5f));       // 2^-4: 64 x = 4, still an integer
  EXPECT_TRUE(verdict(32767.0f / 64, 1.0f));  // the int16 limit
  EXPECT_FALSE(verdict(std::ldexp(1.0f, -9), 1.5f));  // an e4m3 subnormal: 64 x = 1/8
  EXPECT_FALSE(verdict(1.0f / 3, 1.0f));
  EXPECT_FALSE(verdict(512.0f, 1.0f));        // 64 x = 32768
  EXPECT_FALSE(verdict(std::nanf(""), 1.0f));
  EXPECT_FALSE(verdict(INFINITY, 1.0f));
}

TEST_P(LinearPaths, RowsAreIndependentOfBatchAndThreads) {
  std::mt19937 rng(12);
  struct Case {
    TestLinear t;
    bool quantize_input;
  };
  std::vector<Case> cases;
  cases.push_back({make_linear(WeightFormat::fp8, 130, 256, false, rng), true});
  cases.push_back({make_linear(WeightFormat::fp4, 130, 256, false, rng), true});
  cases.push_back({make_linear(WeightFormat::fp8, 130, 256, false, rng), false});  // wo_a, smooth mode
  cases.push_back({make_float_linear(WeightFormat::bf16, 130, 256, rng), false});
  // Inputs wider than the float kernels' L1 chunk (512 inputs at 8 tokens, 256 at 16): sums
  // carried over chunks, the last one partial.
  cases.push_back({make_linear(WeightFormat::fp8, 130, 1280, false, rng), false});
  cases.push_back({make_float_linear(WeightFormat::bf16, 130, 1280, rng), false});
  cases.push_back({make_float_linear(WeightFormat::f32, 130, 256, rng), false});
  cases.push_back({make_float_linear(WeightFormat::f32, 130, 1280, rng), false});
  for (const auto& [t, q] : cases)
  // 2 .. 16: the few-token kernels of batched decode steps (every remainder of their token
  // groups); 75: more than one token tile.
  for (const int n : {2, 3, 4, 5, 8, 16, 17, 75}) {
    const int in = t.lin.in;
    std::vector<float> x(size_t(n) * in);
    std::normal_distribution<float> nd;
    for (float& v : x) v = nd(rng);
    std::vector<float> all(size_t(n) * 130);
    set_num_threads(2);
    linear_with(GetParam(), t.lin, x, n, all, q);
    set_num_threads(1);
    for (int r : {0, 1, n - 1, 63, 64}) {
      if (r >= n) continue;
      std::vector<float> one(130);
      linear_with(GetParam(), t.lin, std::span<const float>(x).subspan(size_t(r) * in, in), 1, one, q);
      EXPECT_EQ(test::max_abs_err(one, std::span<const float>(all).subspan(size_t(r) * 130, 130)).err, 0.0)
          << "format " << int(t.lin.format) << " quantized input " << q << " row " << r << " of " << n;
    }
    // A slice of output rows equals the same rows of the full product.
    std::vector<float> part(size_t(n) * 7);
    linear_with(GetParam(), t.lin, x, n, part, q, 61, 7);
    for (int r = 0; r < n; ++r)
      for (int o = 0; o < 7; ++o) EXPECT_EQ(part[size_t(r) * 7 + o], all[size_t(r) * 130 + 61 + o]);
    set_num_threads(0);
  }
}

INSTANTIATE_TEST_SUITE_P(Fast, LinearPaths, ::testing::Values(LinearPath::avx2, LinearPath::avx512_bf16),
                         [](const auto& info) { return info.param == LinearPath::avx2 ? "avx2" : "avx512_bf16"; });

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
