// Log-probabilities of generated tokens, as OpenAI's logprobs report them: the model's own
// distribution (log-softmax of its logits, in double), before temperature, top-k / top-p /
// min-p, penalties and biases, so they agree with `dsv4 logits` for the same tokens.
#pragma once

#include <span>
#include <utility>
#include <vector>

namespace dsv4 {

struct TokenLogprob {
  int token = 0;
  float logprob = 0;
  std::vector<std::pair<int, float>> top;  // the k most likely tokens, most likely first (ties: lower id)
};

inline constexpr int kMaxTopLogprobs = 20;

// token's log-probability under softmax(logits), and the top k (0 <= k <= kMaxTopLogprobs).
TokenLogprob token_logprob(std::span<const float> logits, int token, int k);

}  // namespace dsv4
