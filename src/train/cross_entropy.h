// The language-model loss: mean cross-entropy of the logits against the next tokens, with its
// gradient.
#pragma once

#include <span>

namespace dsv4 {

// Mean cross-entropy of logits [n, vocab] against targets [n] (targets < 0 are ignored); fills
// dlogits [n, vocab] with its gradient and returns the loss (mean over the counted rows).
double cross_entropy(std::span<const float> logits, std::span<const int> targets, int vocab, std::span<float> dlogits);

}  // namespace dsv4
