// What every optimizer step shares: the learning rate's warmup + cosine schedule and global
// gradient-norm clipping.
#pragma once

#include <span>

namespace dsv4 {

// Linear warmup from 0 over `warmup` steps, then cosine decay to final_fraction * peak at `total`.
float lr_at(long long step, long long warmup, long long total, float peak, float final_fraction = 0.1f);

// Scales every gradient by min(1, max_norm / global L2 norm); returns the norm before clipping.
double clip_grad_norm(std::span<const std::span<float>> grads, double max_norm);

}  // namespace dsv4
