// Fast Walsh-Hadamard transform: log2(d) butterfly passes, then one scaling.
#include "ops/hadamard.h"

#include <cmath>

#include "core/check.h"

namespace dsv4 {

void hadamard_rotate(std::span<float> x) {
  const size_t d = x.size();
  DSV4_CHECK(d > 0 && (d & (d - 1)) == 0, "hadamard_rotate: size ", d, " is not a power of two");
  for (size_t h = 1; h < d; h *= 2)
    for (size_t i = 0; i < d; i += 2 * h)
      for (size_t j = i; j < i + h; ++j) {
        const float a = x[j], b = x[j + h];
        x[j] = a + b;
        x[j + h] = a - b;
      }
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(d)));
  for (float& v : x) v *= scale;
}

}  // namespace dsv4
