// SwiGLU with DeepSeek-V4's clamp, the experts' activation: u = clamp(up, -limit, limit),
// g = min(gate, limit), y = silu(g) * u (limit <= 0: no clamp), in float as the reference
// computes it. Inference and training both call it.
#pragma once

#include <algorithm>
#include <cmath>
#include <span>

namespace dsv4 {

inline float swiglu(float gate, float up, float limit) {
  if (limit > 0) {
    up = std::clamp(up, -limit, limit);
    gate = std::min(gate, limit);
  }
  return gate / (1.0f + std::exp(-gate)) * up;
}

// y [n] = swiglu(gate [n], up [n]); y may alias gate or up.
void swiglu(std::span<const float> gate, std::span<const float> up, float limit, std::span<float> y);

}  // namespace dsv4
