#include "train/cross_entropy.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/check.h"
#include "train/row_chunks.h"

namespace dsv4 {

double cross_entropy(std::span<const float> logits, std::span<const int> targets, int vocab, std::span<float> dlogits) {
  const size_t n = targets.size();
  DSV4_CHECK(logits.size() == n * vocab && dlogits.size() == logits.size(), "cross_entropy: sizes do not match");
  size_t counted = 0;
  for (int t : targets) counted += t >= 0;
  if (counted == 0) {
    std::fill(dlogits.begin(), dlogits.end(), 0.0f);
    return 0;
  }
  for (size_t r = 0; r < n; ++r)
    DSV4_CHECK(targets[r] < vocab, "cross_entropy: target ", targets[r], " outside the vocabulary");
  // Rows in fixed chunks; the loss summed per chunk, then over the chunks in order.
  constexpr size_t kChunk = 64;
  std::vector<double> part(row_chunk_count(n, kChunk), 0.0);
  for_row_chunks(n, kChunk, [&](size_t k, size_t r0, size_t r1) {
    std::vector<double> e(vocab);  // exp(l - max) of the row, once for the sum and the softmax
    for (size_t r = r0; r < r1; ++r) {
      if (targets[r] < 0) {
        std::fill_n(dlogits.begin() + r * vocab, vocab, 0.0f);
        continue;
      }
      const float* l = logits.data() + r * vocab;
      const double mx = *std::max_element(l, l + vocab);
      double sum = 0;
      for (int v = 0; v < vocab; ++v) sum += (e[v] = std::exp(l[v] - mx));
      part[k] += mx + std::log(sum) - l[targets[r]];
      for (int v = 0; v < vocab; ++v)
        dlogits[r * vocab + v] = static_cast<float>((e[v] / sum - (v == targets[r])) / counted);
    }
  });
  double loss = 0;
  for (double p : part) loss += p;
  return loss / counted;
}

}  // namespace dsv4
