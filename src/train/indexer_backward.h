// The lightning indexer's training signal: a KL loss toward the main attention's distribution
// over the blocks, and its gradients.
#pragma once

#include <span>

namespace dsv4 {

// The lightning indexer's training signal for one token (as DeepSeek trains it): its scores
// I_b = sum_h w_h relu(q_h . k_b) over blocks b (w already scaled) define q = softmax(I), and
// the loss is KL(target || q) toward the main attention's distribution over the same blocks
// (the top-k choice itself is not differentiated; a target that sums to less than 1, e.g.
// restricted to the chosen blocks, is allowed). Returns the loss; dq [heads, dim], dw
// [heads] overwritten, dkeys [blocks, dim] accumulated.
double indexer_kl_backward(std::span<const float> q, std::span<const float> w, int heads, std::span<const float> keys,
                           int blocks, int dim, std::span<const float> target, std::span<float> dq, std::span<float> dw,
                           std::span<float> dkeys);

}  // namespace dsv4
