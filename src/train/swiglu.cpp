#include "train/swiglu.h"

#include <algorithm>
#include <cmath>

#include "core/sigmoid.h"

namespace dsv4 {

void swiglu_backward(std::span<const float> gate, std::span<const float> up, float limit, std::span<const float> dy,
                     std::span<float> dgate, std::span<float> dup) {
  for (size_t i = 0; i < gate.size(); ++i) {
    double g = gate[i], u = up[i];
    bool g_clamped = false, u_clamped = false;
    if (limit > 0) {
      if (u > limit || u < -limit) u = std::clamp(u, double(-limit), double(limit)), u_clamped = true;
      if (g > limit) g = limit, g_clamped = true;
    }
    const double s = sigmoid(g);
    const double dsilu = s * (1 + g * (1 - s));  // d(g s(g))/dg
    dgate[i] = g_clamped ? 0.0f : static_cast<float>(dy[i] * u * dsilu);
    dup[i] = u_clamped ? 0.0f : static_cast<float>(dy[i] * g * s);
  }
}

}  // namespace dsv4
