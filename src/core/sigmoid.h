// The logistic function: in float for the inference ops, in double for their backward passes.
#pragma once

#include <cmath>

namespace dsv4 {

inline float sigmoid(float v) { return 1.0f / (1.0f + std::exp(-v)); }
inline double sigmoid(double v) { return 1.0 / (1.0 + std::exp(-v)); }

}  // namespace dsv4
