// Float bit patterns and the two 16-bit float formats checkpoints store (bf16, f16), exact.
// Below quant/formats.h (which adds the model's FP8 / FP4 formats), so that reading a
// checkpoint (src/io) needs nothing of the quantization code.
#pragma once

#include <cstdint>
#include <cstring>

namespace dsv4 {

inline float bits_to_f32(uint32_t b) {
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}
inline uint32_t f32_to_bits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}

inline float bf16_to_f32(uint16_t v) { return bits_to_f32(static_cast<uint32_t>(v) << 16); }
// Round to nearest even on the upper 16 bits (finite values).
inline uint16_t f32_to_bf16(float f) {
  const uint32_t b = f32_to_bits(f);
  return static_cast<uint16_t>((b + 0x7FFF + ((b >> 16) & 1)) >> 16);
}
float f16_to_f32(uint16_t v);

}  // namespace dsv4
