// Number formats of the checkpoints and of the model's rounding points, scalar and exact:
//   e4m3 (FP8, "fn": no inf, max 448), e2m1 (FP4, values {0, .5, 1, 1.5, 2, 3, 4, 6}),
//   ue8m0 (a power-of-two scale, byte = exponent + 127); bf16 and f16 in core/float_bits.h.
// Encoders round to nearest, ties to even, like the tilelang casts of the original kernels.
#pragma once

#include <cstdint>
#include <cstring>

#include "core/float_bits.h"  // bits_to_f32, bf16, f16

namespace dsv4 {

// Decode tables; index = stored byte (e4m3) or nibble (e2m1).
extern const float* const kE4M3;
extern const float kE2M1[16];

inline float e4m3_to_f32(uint8_t b) { return kE4M3[b]; }
inline float e2m1_to_f32(uint8_t nibble) { return kE2M1[nibble & 15]; }
inline float ue8m0_to_f32(uint8_t b) { return bits_to_f32(static_cast<uint32_t>(b) << 23); }

// Round an already clamped value (|x| <= 448, resp. <= 6) to the nearest representable value.
float round_e4m3(float x);
float round_e2m1(float x);
uint8_t encode_e4m3(float x);   // x must be exactly representable (output of round_e4m3)
uint8_t encode_e2m1(float x);

// 2^ceil(log2(x)) for a positive normal float, computed on the bits exactly like the original
// kernels' fast_round_scale (so the scale never disagrees with the reference at a boundary).
inline float pow2_ceil(float x) {
  uint32_t b = f32_to_bits(x);
  int e = static_cast<int>((b >> 23) & 0xFF) - 127 + ((b & 0x7FFFFF) != 0 ? 1 : 0);
  return bits_to_f32(static_cast<uint32_t>(e + 127) << 23);
}

}  // namespace dsv4
