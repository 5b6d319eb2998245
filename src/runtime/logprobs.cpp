// Log-softmax of one row of logits (logprobs.h).
#include "runtime/logprobs.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/check.h"

namespace dsv4 {

TokenLogprob token_logprob(std::span<const float> logits, int token, int k) {
  DSV4_CHECK(token >= 0 && static_cast<size_t>(token) < logits.size(), "token ", token, " outside the logits");
  DSV4_CHECK(k >= 0 && k <= kMaxTopLogprobs, "top logprobs must be in [0, ", kMaxTopLogprobs, "], got ", k);
  const double m = *std::max_element(logits.begin(), logits.end());
  double sum = 0;
  for (const float l : logits) sum += std::exp(static_cast<double>(l) - m);
  const double lse = m + std::log(sum);
  const auto lp = [&](int id) { return static_cast<float>(static_cast<double>(logits[id]) - lse); };
  TokenLogprob out{token, lp(token), {}};
  std::vector<int> ids(logits.size());
  std::iota(ids.begin(), ids.end(), 0);
  const size_t n = std::min<size_t>(k, ids.size());
  std::partial_sort(ids.begin(), ids.begin() + n, ids.end(),
                    [&](int a, int b) { return logits[a] != logits[b] ? logits[a] > logits[b] : a < b; });
  for (size_t i = 0; i < n; ++i) out.top.emplace_back(ids[i], lp(ids[i]));
  return out;
}

}  // namespace dsv4
