// Backward passes of the model's elementwise and dense pieces, in float32 on plain row-major
// arrays (training keeps float master weights; the checkpoint is quantized when written).
// Each takes the forward's inputs and the gradient of the loss with respect to its output and
// returns (accumulates, for parameters) the gradients with respect to its inputs; each is
// checked against central finite differences of its forward (tests/test_train.cpp).
#pragma once

#include <span>
#include <vector>

namespace dsv4 {

// y [n, out] = x [n, in] . w [out, in]^T
void linear_forward(std::span<const float> x, std::span<const float> w, int n, int in, int out, std::span<float> y);
// dx [n, in] = dy . w (overwritten); dw [out, in] += dy^T . x
void linear_backward(std::span<const float> x, std::span<const float> w, std::span<const float> dy, int n, int in,
                     int out, std::span<float> dx, std::span<float> dw);

// y = x / sqrt(mean(x^2) + eps) * weight, per row of width dim (weight may be empty: no scale).
void rmsnorm_forward(std::span<const float> x, std::span<const float> weight, float eps, int dim, std::span<float> y);
// dx overwritten; dweight accumulated (when weight is not empty).
void rmsnorm_backward(std::span<const float> x, std::span<const float> weight, float eps, int dim,
                      std::span<const float> dy, std::span<float> dx, std::span<float> dweight);

// SwiGLU with DeepSeek-V4's clamp: u = clamp(up, -limit, limit), g = min(gate, limit),
// y = silu(g) * u (limit <= 0: no clamp). Clamped elements pass no gradient.
void swiglu_forward(std::span<const float> gate, std::span<const float> up, float limit, std::span<float> y);
void swiglu_backward(std::span<const float> gate, std::span<const float> up, float limit, std::span<const float> dy,
                     std::span<float> dgate, std::span<float> dup);

// Mean cross-entropy of logits [n, vocab] against targets [n] (targets < 0 are ignored); fills
// dlogits [n, vocab] with its gradient and returns the loss (mean over the counted rows).
double cross_entropy(std::span<const float> logits, std::span<const int> targets, int vocab, std::span<float> dlogits);

// Embedding rows: dtable [vocab, dim] += dy rows at their ids.
void embedding_backward(std::span<const int> ids, std::span<const float> dy, int dim, std::span<float> dtable);

}  // namespace dsv4
