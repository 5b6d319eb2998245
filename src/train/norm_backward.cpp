#include "train/norm_backward.h"

#include <cmath>
#include <vector>

#include "train/row_chunks.h"

namespace dsv4 {

void rmsnorm_backward(std::span<const float> x, std::span<const float> weight, float eps, int dim,
                      std::span<const float> dy, std::span<float> dx, std::span<float> dweight) {
  // y_i = x_i r w_i with r = (mean(x^2) + eps)^-1/2; dr/dx_j = -r^3 x_j / dim, so
  // dx_j = r w_j dy_j - r^3 x_j / dim * sum_i dy_i w_i x_i. Rows in fixed chunks, each with
  // its own dweight, added in chunk order.
  constexpr size_t kChunk = 64;
  const size_t rows = x.size() / dim;
  std::vector<std::vector<float>> part(weight.empty() ? 0 : row_chunk_count(rows, kChunk));
  for_row_chunks(rows, kChunk, [&](size_t k, size_t r0, size_t r1) {
    if (!weight.empty()) part[k].assign(dim, 0.0f);
    for (size_t row = r0; row < r1; ++row) {
      const float* xr = x.data() + row * dim;
      const float* g = dy.data() + row * dim;
      double ms = 0, dot = 0;
      for (int i = 0; i < dim; ++i) ms += double(xr[i]) * xr[i];
      const double r = 1.0 / std::sqrt(ms / dim + eps);
      for (int i = 0; i < dim; ++i) dot += double(g[i]) * (weight.empty() ? 1.0 : weight[i]) * xr[i];
      for (int i = 0; i < dim; ++i) {
        const double wi = weight.empty() ? 1.0 : weight[i];
        dx[row * dim + i] = static_cast<float>(r * wi * g[i] - r * r * r * xr[i] * dot / dim);
        if (!weight.empty()) part[k][i] += static_cast<float>(g[i] * xr[i] * r);
      }
    }
  });
  for (const std::vector<float>& p : part)
    for (int i = 0; i < dim; ++i) dweight[i] += p[i];
}

}  // namespace dsv4
