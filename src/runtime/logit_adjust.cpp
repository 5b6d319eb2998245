// Penalties and biases on the logits (logit_adjust.h).
#include "runtime/logit_adjust.h"

namespace dsv4 {

LogitAdjuster::LogitAdjuster(LogitAdjust a, std::span<const int> prompt) : a_(std::move(a)) {
  if (a_.repetition != 1) seen_.insert(prompt.begin(), prompt.end());
}

void LogitAdjuster::took(int token) {
  ++counts_[token];
  if (a_.repetition != 1) seen_.insert(token);
}

void LogitAdjuster::apply(std::span<float> logits) const {
  const auto in_range = [&](int t) { return t >= 0 && static_cast<size_t>(t) < logits.size(); };
  for (const auto& [t, b] : a_.bias)
    if (in_range(t)) logits[t] += b;
  if (a_.repetition != 1)
    for (const int t : seen_)
      if (in_range(t)) logits[t] = logits[t] > 0 ? logits[t] / a_.repetition : logits[t] * a_.repetition;
  if (a_.presence != 0 || a_.frequency != 0)
    for (const auto& [t, n] : counts_)
      if (in_range(t)) logits[t] -= a_.frequency * static_cast<float>(n) + a_.presence;
}

}  // namespace dsv4
