#include "train/compressor_pool.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace dsv4 {

void compressor_pool_backward(std::span<const float> score, std::span<const float> kv, int n_rows, int dim,
                              std::span<const float> dentry, std::span<float> dscore, std::span<float> dkv) {
  std::vector<double> p(n_rows);
  for (int d = 0; d < dim; ++d) {
    double mx = score[d];
    for (int i = 1; i < n_rows; ++i) mx = std::max(mx, double(score[size_t(i) * dim + d]));
    double sum = 0, entry = 0;
    for (int i = 0; i < n_rows; ++i) sum += (p[i] = std::exp(score[size_t(i) * dim + d] - mx));
    for (int i = 0; i < n_rows; ++i) entry += (p[i] /= sum) * kv[size_t(i) * dim + d];
    for (int i = 0; i < n_rows; ++i) {
      dkv[size_t(i) * dim + d] = static_cast<float>(p[i] * dentry[d]);
      dscore[size_t(i) * dim + d] = static_cast<float>(p[i] * (kv[size_t(i) * dim + d] - entry) * dentry[d]);
    }
  }
}

}  // namespace dsv4
