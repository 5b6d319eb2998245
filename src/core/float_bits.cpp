#include "core/float_bits.h"

#include <cmath>

namespace dsv4 {

float f16_to_f32(uint16_t v) {
  const int sign = v >> 15, exp = (v >> 10) & 31, man = v & 1023;
  float f;
  if (exp == 0) f = std::ldexp(static_cast<float>(man), -24);
  else if (exp == 31) f = man ? NAN : INFINITY;
  else f = std::ldexp(1.0f + man / 1024.0f, exp - 15);
  return sign ? -f : f;
}

}  // namespace dsv4
