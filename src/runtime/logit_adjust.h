// What a request asks to change in the model's logits before sampling: OpenAI's presence and
// frequency penalties and logit_bias, and the repetition penalty of vLLM and llama.cpp.
//
//   logit[t] += bias[t]
//   logit[t]  = logit[t] > 0 ? logit[t] / repetition : logit[t] * repetition
//                                                                   for t in the prompt or output
//   logit[t] -= frequency * count[t] + presence * (count[t] > 0)    count: t in the output so far
//
// in vLLM's order, with OpenAI's formula for the last line. The logits reported as
// logprobs are the model's, before these.
#pragma once

#include <span>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

namespace dsv4 {

struct LogitAdjust {
  float presence = 0, frequency = 0;  // [-2, 2]
  float repetition = 1;               // > 0; 1 = off
  std::vector<std::pair<int, float>> bias;  // token id, added to its logit
  bool active() const { return presence != 0 || frequency != 0 || repetition != 1 || !bias.empty(); }
};

class LogitAdjuster {
 public:
  LogitAdjuster(LogitAdjust a, std::span<const int> prompt);
  void took(int token);                   // a token of the output
  void apply(std::span<float> logits) const;  // in place; ids past the span are skipped

 private:
  LogitAdjust a_;
  std::unordered_map<int, int> counts_;   // in the output
  std::unordered_set<int> seen_;          // in the prompt or the output (repetition)
};

}  // namespace dsv4
