// SwiGLU's backward. Its forward is the inference one (ops/swiglu.h: the clamp, then silu(g) * u
// in float), which the backward differentiates elementwise in double.
#pragma once

#include <span>

namespace dsv4 {

// Given the forward's gate and up and dL/dy: dgate, dup overwritten. Clamped elements pass no
// gradient.
void swiglu_backward(std::span<const float> gate, std::span<const float> up, float limit, std::span<const float> dy,
                     std::span<float> dgate, std::span<float> dup);

}  // namespace dsv4
