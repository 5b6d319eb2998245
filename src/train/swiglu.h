// The experts' SwiGLU with DeepSeek-V4's clamp, forward and backward, elementwise in double.
#pragma once

#include <span>

namespace dsv4 {

// SwiGLU with DeepSeek-V4's clamp: u = clamp(up, -limit, limit), g = min(gate, limit),
// y = silu(g) * u (limit <= 0: no clamp). Clamped elements pass no gradient.
void swiglu_forward(std::span<const float> gate, std::span<const float> up, float limit, std::span<float> y);

void swiglu_backward(std::span<const float> gate, std::span<const float> up, float limit, std::span<const float> dy,
                     std::span<float> dgate, std::span<float> dup);

}  // namespace dsv4
