// partial_sort on (score desc, index desc), then the winners sorted by index.
#include "ops/topk.h"

#include <algorithm>
#include <numeric>

namespace dsv4 {

std::vector<int> topk_indices(std::span<const float> scores, int k) {
  const int n = static_cast<int>(scores.size());
  k = std::min(k, n);
  std::vector<int> idx(n);
  std::iota(idx.begin(), idx.end(), 0);
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int a, int b) {
    if (scores[a] != scores[b]) return scores[a] > scores[b];
    return a > b;
  });
  idx.resize(k);
  std::sort(idx.begin(), idx.end());
  return idx;
}

}  // namespace dsv4
