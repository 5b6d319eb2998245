// Packing with a grid check per value; unpacking as a scalar reference (table lookup times
// scale) and an AVX2 version that builds the floats from the code bits. Both unpackers compute
// products that are exact, so they agree bit for bit.
#include "quant/block_pack.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/check.h"
#include "core/cpu.h"
#include "quant/formats.h"

namespace dsv4 {

namespace {

constexpr int kMinScaleExp = -126;  // the smallest normal float: ue8m0 byte 1

// The block's largest magnitude; throws on a non-finite value (never on a grid).
float finite_amax(const float* x, int n, const char* who, size_t offset) {
  float m = 0;
  for (int i = 0; i < n; ++i) {
    DSV4_CHECK(std::isfinite(x[i]), who, ": value ", x[i], " at index ", offset + i,
               " is not finite, so not on the grid");
    m = std::max(m, std::fabs(x[i]));
  }
  return m;
}

// The smallest k >= kMinScaleExp with amax <= qmax * 2^k (0 for an all-zero block).
// qmax * 2^k is exact (qmax has few mantissa bits) or overflows to infinity.
int scale_exponent(float amax, float qmax) {
  if (amax == 0) return 0;
  int k = std::max(std::ilogb(amax) - std::ilogb(qmax), kMinScaleExp);
  while (amax > std::ldexp(qmax, k)) ++k;
  while (k > kMinScaleExp && amax <= std::ldexp(qmax, k - 1)) --k;
  return k;
}

void check_sizes(const char* who, size_t n, int block, size_t n_codes, size_t codes_per_value_x2,
                 size_t n_scales) {
  DSV4_CHECK(block > 0 && n % block == 0 && n_codes * 2 == n * codes_per_value_x2 &&
                 n_scales == n / block,
             who, ": ", n, " values in blocks of ", block, " need ", n * codes_per_value_x2 / 2,
             " code bytes and ", n / block, " scales, got ", n_codes, " and ", n_scales);
}

// Packs one block: encode(x / s), then checks that the unpacked product is x, bit for bit.
template <typename Encode, typename Decode>
void pack_block(const float* x, int n, float qmax, const char* who, const char* format,
                size_t offset, Encode encode, Decode decode, uint8_t* scale_byte, uint8_t* codes) {
  const int k = scale_exponent(finite_amax(x, n, who, offset), qmax);
  const float s = std::ldexp(1.0f, k);
  *scale_byte = static_cast<uint8_t>(k + 127);
  for (int i = 0; i < n; ++i) {
    const uint8_t c = encode(x[i] / s);
    DSV4_CHECK(f32_to_bits(decode(c) * s) == f32_to_bits(x[i]), who, ": value ", x[i], " at index ",
               offset + i, " is not ", format, " times the block's power-of-two scale ", s,
               " (was the row round-tripped?)");
    codes[i] = c;
  }
}

}  // namespace

void pack_fp8_blocks(std::span<const float> x, int block, std::span<uint8_t> codes,
                     std::span<uint8_t> scales) {
  const char* who = "pack_fp8_blocks";
  check_sizes(who, x.size(), block, codes.size(), 2, scales.size());
  for (size_t b = 0; b < scales.size(); ++b)
    pack_block(
        x.data() + b * block, block, 448.0f, who, "an e4m3 number", b * block,
        [](float q) { return encode_e4m3(q); }, [](uint8_t c) { return e4m3_to_f32(c); },
        &scales[b], codes.data() + b * block);
}

void pack_fp4_blocks(std::span<const float> x, int block, std::span<uint8_t> codes,
                     std::span<uint8_t> scales) {
  const char* who = "pack_fp4_blocks";
  check_sizes(who, x.size(), block, codes.size(), 1, scales.size());
  DSV4_CHECK(block % 2 == 0, who, ": block ", block, " is odd");
  std::vector<uint8_t> nibbles(block);
  for (size_t b = 0; b < scales.size(); ++b) {
    pack_block(
        x.data() + b * block, block, 6.0f, who, "an e2m1 number", b * block,
        [](float q) { return encode_e2m1(q); }, [](uint8_t c) { return e2m1_to_f32(c); },
        &scales[b], nibbles.data());
    for (int i = 0; i < block; i += 2)
      codes[(b * block + i) / 2] = static_cast<uint8_t>(nibbles[i] | (nibbles[i + 1] << 4));
  }
}

void scalar::unpack_fp8_blocks(const uint8_t* codes, const uint8_t* scales, int block, int n, float* x) {
  for (int b = 0; b < n / block; ++b) {
    const float s = ue8m0_to_f32(scales[b]);
    for (int i = b * block; i < (b + 1) * block; ++i) x[i] = e4m3_to_f32(codes[i]) * s;
  }
}

void scalar::unpack_fp4_blocks(const uint8_t* codes, const uint8_t* scales, int block, int n, float* x) {
  for (int b = 0; b < n / block; ++b) {
    const float s = ue8m0_to_f32(scales[b]);
    for (int i = b * block; i < (b + 1) * block; ++i)
      x[i] = e2m1_to_f32(static_cast<uint8_t>(i % 2 ? codes[i / 2] >> 4 : codes[i / 2] & 15)) * s;
  }
}

// e4m3 bits 0 eeee mmm, moved to bits 30..20 of a float, read as a float with exponent bias
// 127 instead of 7 (subnormal codes land on float subnormals, exactly scaled too): times 2^120
// gives the e4m3 value exactly. NaN codes are never stored (the packer rejects NaN).
__attribute__((target("avx2,fma"))) void avx2::unpack_fp8_blocks(const uint8_t* codes, const uint8_t* scales,
                                                                  int block, int n, float* x) {
  const __m256i mag_mask = _mm256_set1_epi32(0x7F), sign_mask = _mm256_set1_epi32(0x80);
  const __m256 rebias = _mm256_set1_ps(0x1p120f);
  for (int b = 0; b < n / block; ++b) {
    const float s1 = ue8m0_to_f32(scales[b]);
    const __m256 s = _mm256_set1_ps(s1);
    int i = b * block;
    const int end = (b + 1) * block;
    for (; i + 8 <= end; i += 8) {
      const __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(codes + i)));
      const __m256i mag = _mm256_slli_epi32(_mm256_and_si256(v, mag_mask), 20);
      const __m256i sign = _mm256_slli_epi32(_mm256_and_si256(v, sign_mask), 24);
      const __m256 f = _mm256_or_ps(_mm256_mul_ps(_mm256_castsi256_ps(mag), rebias), _mm256_castsi256_ps(sign));
      _mm256_storeu_ps(x + i, _mm256_mul_ps(f, s));
    }
    for (; i < end; ++i) x[i] = e4m3_to_f32(codes[i]) * s1;
  }
}

// Eight values (four bytes) at a time: each byte duplicated, shifted by 0 / 4 for the low /
// high nibble, the magnitude looked up in-register from the eight e2m1 magnitudes, the sign bit
// (nibble bit 3) moved to bit 31.
__attribute__((target("avx2,fma"))) void avx2::unpack_fp4_blocks(const uint8_t* codes, const uint8_t* scales,
                                                                  int block, int n, float* x) {
  const __m256 mags = _mm256_setr_ps(0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f);
  const __m256i dup = _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3);
  const __m256i shifts = _mm256_setr_epi32(0, 4, 0, 4, 0, 4, 0, 4);
  const __m256i low4 = _mm256_set1_epi32(15), bit3 = _mm256_set1_epi32(8);
  for (int b = 0; b < n / block; ++b) {
    const float s1 = ue8m0_to_f32(scales[b]);
    const __m256 s = _mm256_set1_ps(s1);
    int i = b * block;
    const int end = (b + 1) * block;
    for (; i + 8 <= end; i += 8) {
      int32_t w;
      std::memcpy(&w, codes + i / 2, 4);
      __m256i v = _mm256_permutevar8x32_epi32(_mm256_cvtepu8_epi32(_mm_cvtsi32_si128(w)), dup);
      v = _mm256_and_si256(_mm256_srlv_epi32(v, shifts), low4);
      const __m256 mag = _mm256_permutevar8x32_ps(mags, v);  // index bits 2..0
      const __m256i sign = _mm256_slli_epi32(_mm256_and_si256(v, bit3), 28);
      _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_or_ps(mag, _mm256_castsi256_ps(sign)), s));
    }
    for (; i < end; ++i)
      x[i] = e2m1_to_f32(static_cast<uint8_t>(i % 2 ? codes[i / 2] >> 4 : codes[i / 2] & 15)) * s1;
  }
}

void unpack_fp8_blocks(std::span<const uint8_t> codes, std::span<const uint8_t> scales, int block,
                       std::span<float> x) {
  check_sizes("unpack_fp8_blocks", x.size(), block, codes.size(), 2, scales.size());
  const int n = static_cast<int>(x.size());
  if (use_avx2_fma()) avx2::unpack_fp8_blocks(codes.data(), scales.data(), block, n, x.data());
  else scalar::unpack_fp8_blocks(codes.data(), scales.data(), block, n, x.data());
}

void unpack_fp4_blocks(std::span<const uint8_t> codes, std::span<const uint8_t> scales, int block,
                       std::span<float> x) {
  check_sizes("unpack_fp4_blocks", x.size(), block, codes.size(), 1, scales.size());
  const int n = static_cast<int>(x.size());
  if (use_avx2_fma()) avx2::unpack_fp4_blocks(codes.data(), scales.data(), block, n, x.data());
  else scalar::unpack_fp4_blocks(codes.data(), scales.data(), block, n, x.data());
}

}  // namespace dsv4
