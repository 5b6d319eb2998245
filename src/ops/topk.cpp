// Selection as torch's CPU topk_impl_loop does it (largest = true), then sorted by index.
#include "ops/topk.h"

#include <algorithm>
#include <utility>

namespace dsv4 {

std::vector<int> topk_indices(std::span<const float> scores, int k) {
  const int n = static_cast<int>(scores.size());
  k = std::min(k, n);
  if (k <= 0) return {};
  std::vector<std::pair<float, int>> q(n);
  for (int i = 0; i < n; ++i) q[i] = {scores[i], i};
  auto greater = [](const std::pair<float, int>& x, const std::pair<float, int>& y) {
    return x.first > y.first;
  };
  if (static_cast<long long>(k) * 64 <= n) std::partial_sort(q.begin(), q.begin() + k, q.end(), greater);
  else std::nth_element(q.begin(), q.begin() + k - 1, q.end(), greater);
  std::vector<int> idx(k);
  for (int i = 0; i < k; ++i) idx[i] = q[i].second;
  std::sort(idx.begin(), idx.end());
  return idx;
}

}  // namespace dsv4
