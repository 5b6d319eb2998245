#include "train/norm_backward.h"

#include <cmath>

namespace dsv4 {

void rmsnorm_backward(std::span<const float> x, std::span<const float> weight, float eps, int dim,
                      std::span<const float> dy, std::span<float> dx, std::span<float> dweight) {
  // y_i = x_i r w_i with r = (mean(x^2) + eps)^-1/2; dr/dx_j = -r^3 x_j / dim, so
  // dx_j = r w_j dy_j - r^3 x_j / dim * sum_i dy_i w_i x_i.
  for (size_t row = 0; row < x.size() / dim; ++row) {
    const float* xr = x.data() + row * dim;
    const float* g = dy.data() + row * dim;
    double ms = 0, dot = 0;
    for (int i = 0; i < dim; ++i) ms += double(xr[i]) * xr[i];
    const double r = 1.0 / std::sqrt(ms / dim + eps);
    for (int i = 0; i < dim; ++i) dot += double(g[i]) * (weight.empty() ? 1.0 : weight[i]) * xr[i];
    for (int i = 0; i < dim; ++i) {
      const double wi = weight.empty() ? 1.0 : weight[i];
      dx[row * dim + i] = static_cast<float>(r * wi * g[i] - r * r * r * xr[i] * dot / dim);
      if (!weight.empty()) dweight[i] += static_cast<float>(g[i] * xr[i] * r);
    }
  }
}

}  // namespace dsv4
