// Scalar reference implementations of the number formats.
#include "quant/formats.h"

#include <algorithm>
#include <array>
#include <cmath>

namespace dsv4 {

namespace {

constexpr float pow2(int e) {
  float v = 1;
  for (; e > 0; --e) v *= 2;
  for (; e < 0; ++e) v /= 2;
  return v;
}

constexpr float decode_e4m3(int b) {
  const int sign = b >> 7, exp = (b >> 3) & 15, man = b & 7;
  float v;
  if (exp == 15 && man == 7) v = __builtin_nanf("");  // the only NaN pattern of e4m3fn
  else if (exp == 0) v = (man / 8.0f) * pow2(-6);     // subnormal: man * 2^-9
  else v = (1.0f + man / 8.0f) * pow2(exp - 7);
  return sign ? -v : v;
}

constexpr std::array<float, 256> make_e4m3() {
  std::array<float, 256> t{};
  for (int i = 0; i < 256; ++i) t[i] = decode_e4m3(i);
  return t;
}

// Rounds x to a grid whose spacing is 2^(exponent - mantissa_bits), with the spacing of the
// smallest normal binade below it (subnormals), half to even. Adding then subtracting
// magic = 1.5 * 2^23 * spacing makes the float adder itself round at the spacing (x + magic
// stays in magic's binade for |x| < 2^(exponent + 1)); no library calls, since activation
// quantization runs on every linear input. The sign of zero is kept, as nearbyint(x / step)
// would. The test checks it against that definition.
float round_grid(float x, int mantissa_bits, int min_normal_exp) {
  const uint32_t biased = (f32_to_bits(x) >> 23) & 0xFF;
  if (biased == 0xFF) return x;  // NaN, inf
  const int step = std::max(static_cast<int>(biased), min_normal_exp + 127) - mantissa_bits;  // biased
  const float magic = bits_to_f32(static_cast<uint32_t>(step + 23) << 23 | 0x400000u);
  const float r = (x + magic) - magic;
  return std::copysign(r, x);
}

}  // namespace

constexpr std::array<float, 256> e4m3_table = make_e4m3();
const float* const kE4M3 = e4m3_table.data();
const float kE2M1[16] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f,
                         -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f};

float round_e4m3(float x) { return round_grid(x, 3, -6); }
float round_e2m1(float x) { return round_grid(x, 1, 0); }

uint8_t encode_e4m3(float x) {
  if (std::isnan(x)) return 0x7F;
  const uint8_t sign = std::signbit(x) ? 0x80 : 0;
  const float a = std::fabs(x);
  if (a < std::ldexp(1.0f, -6)) return sign | static_cast<uint8_t>(a * 512.0f);  // subnormal: m * 2^-9
  int e;
  const float m = std::frexp(a, &e);  // a = m * 2^e, m in [0.5, 1)
  const int exp_field = e - 1 + 7, man = static_cast<int>((m * 2.0f - 1.0f) * 8.0f);
  return sign | static_cast<uint8_t>(exp_field << 3) | static_cast<uint8_t>(man);
}

uint8_t encode_e2m1(float x) {
  for (int i = 0; i < 16; ++i)
    if (kE2M1[i] == x && std::signbit(kE2M1[i]) == std::signbit(x)) return static_cast<uint8_t>(i);
  return 0;
}

}  // namespace dsv4
