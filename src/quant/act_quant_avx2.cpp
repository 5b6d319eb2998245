// fp8_quantize's block, 8 lanes at a time, by the scalar reference's own operations: the same
// amax (NaNs ignored, as std::max ignores them), scale, division, clamp (NaN passes through)
// and rounding on the e4m3 grid by adding and subtracting a magic number (formats.cpp's
// round_grid: the spacing of x's binade, or of the smallest normal binade below it). Each
// operation is an IEEE one with the same operands, so the bits match.
#include "quant/act_quant_avx2.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "core/cpu.h"
#include "quant/formats.h"

namespace dsv4 {

namespace {

constexpr float kFp8Max = 448.0f, kFp8MaxInv = 1.0f / 448.0f;

// round_grid(v, 3, -6) per lane.
DSV4_AVX2 inline __m256 round_e4m3_8(__m256 v) {
  const __m256i bits = _mm256_castps_si256(v);
  const __m256i biased = _mm256_and_si256(_mm256_srli_epi32(bits, 23), _mm256_set1_epi32(0xFF));
  const __m256i step = _mm256_sub_epi32(_mm256_max_epi32(biased, _mm256_set1_epi32(-6 + 127)), _mm256_set1_epi32(3));
  const __m256 magic = _mm256_castsi256_ps(
      _mm256_or_si256(_mm256_slli_epi32(_mm256_add_epi32(step, _mm256_set1_epi32(23)), 23), _mm256_set1_epi32(0x400000)));
  const __m256 r = _mm256_sub_ps(_mm256_add_ps(v, magic), magic);
  const __m256 sign = _mm256_castsi256_ps(_mm256_set1_epi32(static_cast<int>(0x80000000u)));
  const __m256 signed_r = _mm256_or_ps(_mm256_andnot_ps(sign, r), _mm256_and_ps(sign, v));  // copysign(r, v)
  const __m256 special = _mm256_castsi256_ps(_mm256_cmpeq_epi32(biased, _mm256_set1_epi32(0xFF)));  // NaN: as is
  return _mm256_blendv_ps(signed_r, v, special);
}

}  // namespace

DSV4_AVX2 float max_magnitude_avx2(const float* x, int n) {
  const __m256 magnitude = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
  __m256 most[4];
  for (auto& m : most) m = _mm256_setzero_ps();
  int k = 0;
  for (; k + 32 <= n; k += 32)
    for (int j = 0; j < 4; ++j)  // max(|x|, most): max_ps returns its second operand for a NaN
      most[j] = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(x + k + 8 * j), magnitude), most[j]);
  alignas(32) float lanes[32];
  for (int j = 0; j < 4; ++j) _mm256_store_ps(lanes + 8 * j, most[j]);
  float m = 0.0f;
  for (const float v : lanes) m = std::max(m, v);
  for (; k < n; ++k) m = std::max(m, std::fabs(x[k]));
  return m;
}

DSV4_AVX2 float fp8_quantize_block_avx2(const float* x, int block, float* q) {
  const float amax = max_magnitude_avx2(x, block);
  const float s = pow2_ceil(std::max(amax, 1e-4f) * kFp8MaxInv);
  const __m256 sv = _mm256_set1_ps(s), lo = _mm256_set1_ps(-kFp8Max), hi = _mm256_set1_ps(kFp8Max);
  for (int i = 0; i < block; i += 8) {
    const __m256 v = _mm256_div_ps(_mm256_loadu_ps(x + i), sv);
    // std::clamp: the operand order makes a NaN lane come out as itself.
    const __m256 c = _mm256_min_ps(hi, _mm256_max_ps(lo, v));
    _mm256_storeu_ps(q + i, round_e4m3_8(c));
  }
  return s;
}

}  // namespace dsv4
