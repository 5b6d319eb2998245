// Scalar reference of the activation rounding (fp8_quantize runs act_quant_avx2.cpp's body where
// it can). The reciprocals are float constants multiplied
// in, as in the kernels (amax * (1/448)), not divisions: at an exact power of two the two can
// pick different scales.
#include "quant/act_quant.h"

#include <algorithm>
#include <cmath>

#include "core/check.h"
#include "core/cpu.h"
#include "quant/act_quant_avx2.h"
#include "quant/formats.h"

namespace dsv4 {

namespace {

constexpr float kFp8Max = 448.0f, kFp8MaxInv = 1.0f / 448.0f;
constexpr float kFp4Max = 6.0f, kFp4MaxInv = 1.0f / 6.0f;
const float kFp4AmaxFloor = 6.0f * std::ldexp(1.0f, -126);

float block_amax(const float* x, int n) {
  float m = 0;
  for (int i = 0; i < n; ++i) m = std::max(m, std::fabs(x[i]));
  return m;
}

// fp8_quantize's contract on the sizes, for both of its bodies.
void check_quantize_sizes(std::span<const float> x, int block, std::span<float> q, std::span<float> scale) {
  DSV4_CHECK(block > 0 && x.size() % block == 0 && q.size() == x.size() && scale.size() == x.size() / block,
             "fp8_quantize: size ", x.size(), " is not a multiple of block ", block);
}

}  // namespace

void fp8_quantize(std::span<const float> x, int block, std::span<float> q, std::span<float> scale) {
  check_quantize_sizes(x, block, q, scale);
  if (use_avx2_fma() && block % 8 == 0) {
    for (size_t b = 0; b < scale.size(); ++b)
      scale[b] = fp8_quantize_block_avx2(x.data() + b * block, block, q.data() + b * block);
    return;
  }
  fp8_quantize_scalar(x, block, q, scale);
}

void fp8_quantize_scalar(std::span<const float> x, int block, std::span<float> q, std::span<float> scale) {
  check_quantize_sizes(x, block, q, scale);
  for (size_t b = 0; b < scale.size(); ++b) {
    const float* xb = x.data() + b * block;
    float* qb = q.data() + b * block;
    const float s = pow2_ceil(std::max(block_amax(xb, block), 1e-4f) * kFp8MaxInv);
    for (int i = 0; i < block; ++i) qb[i] = round_e4m3(std::clamp(xb[i] / s, -kFp8Max, kFp8Max));
    scale[b] = s;
  }
}

void fp8_roundtrip(std::span<float> x, int block) {
  DSV4_CHECK(block > 0 && x.size() % block == 0, "fp8_roundtrip: size ", x.size(),
             " is not a multiple of block ", block);
  for (size_t b = 0; b < x.size(); b += block) {
    float* xb = x.data() + b;
    const float s = pow2_ceil(std::max(block_amax(xb, block), 1e-4f) * kFp8MaxInv);
    for (int i = 0; i < block; ++i) xb[i] = round_e4m3(std::clamp(xb[i] / s, -kFp8Max, kFp8Max)) * s;
  }
}

void fp4_roundtrip(std::span<float> x, int block) {
  DSV4_CHECK(block > 0 && x.size() % block == 0, "fp4_roundtrip: size ", x.size(),
             " is not a multiple of block ", block);
  for (size_t b = 0; b < x.size(); b += block) {
    float* xb = x.data() + b;
    const float s = pow2_ceil(std::max(block_amax(xb, block), kFp4AmaxFloor) * kFp4MaxInv);
    for (int i = 0; i < block; ++i) xb[i] = round_e2m1(std::clamp(xb[i] / s, -kFp4Max, kFp4Max)) * s;
  }
}

}  // namespace dsv4
