// Backward passes of the model's elementwise and dense pieces, in float32 on plain row-major
// arrays (training keeps float master weights; the checkpoint is quantized when written).
// Each takes the forward's inputs and the gradient of the loss with respect to its output and
// returns (accumulates, for parameters) the gradients with respect to its inputs; each is
// checked against central finite differences of its forward (tests/test_train.cpp).
#pragma once

#include <span>
#include <vector>

namespace dsv4 {

class Rope;

// C [m, p] = A [m, k] . B [p, k]^T in float through the production F32 kernels of
// quant/linear.h (threaded, SIMD; k padded with zeros to their width): every matrix product of
// the trainer goes through it.
void matmul_nt(std::span<const float> a, std::span<const float> b, int m, int p, int k, std::span<float> c);

// dst += src, elementwise (gradients of one tensor summed over its uses); sizes must match.
void add_to(std::span<float> dst, std::span<const float> src);

// y [n, out] = x [n, in] . w [out, in]^T
void linear_forward(std::span<const float> x, std::span<const float> w, int n, int in, int out, std::span<float> y);
// dx [n, in] = dy . w (overwritten); dw [out, in] += dy^T . x
void linear_backward(std::span<const float> x, std::span<const float> w, std::span<const float> dy, int n, int in,
                     int out, std::span<float> dx, std::span<float> dw);
// The same as plain double-accumulating loops: the definition the fast ones are tested against.
void linear_forward_reference(std::span<const float> x, std::span<const float> w, int n, int in, int out,
                              std::span<float> y);
void linear_backward_reference(std::span<const float> x, std::span<const float> w, std::span<const float> dy, int n,
                               int in, int out, std::span<float> dx, std::span<float> dw);

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

// The attention probabilities p [n_keys] of one query head over its keys and the sink (which
// takes mass and adds no value); returns the sink's.
double attention_probs(std::span<const float> q, std::span<const float> keys, int n_keys, int dim, float scale,
                       float sink, std::vector<double>& p);

// One query head of V4 attention over its key rows (the window and compressed entries; one kv
// row is both key and value): z_j = scale q.k_j, p = softmax over the keys and the sink,
// o = sum_j p_j k_j, then the rope dims of o rotated back (inverse RoPE at pos) — the
// computation of model/attention.cpp for one (token, head).
void attention_head_forward(std::span<const float> q, std::span<const float> keys, int n_keys, int dim, float scale,
                            float sink, const Rope& rope, long long pos, std::span<float> o);
// dq overwritten, dkeys [n_keys, dim] accumulated, returns dsink.
float attention_head_backward(std::span<const float> q, std::span<const float> keys, int n_keys, int dim, float scale,
                              float sink, const Rope& rope, long long pos, std::span<const float> dout,
                              std::span<float> dq, std::span<float> dkeys);

// RoPE is a rotation: its backward rotates the gradient the other way.
void rope_backward(const Rope& rope, std::span<float> dx, long long pos, bool inverse_in_forward);

// MoE routing weights of one token: s_e = sqrt(softplus(z_e)) of the gate logits z for the chosen
// experts (chosen by the biased scores, not differentiated), w = route_scale * s / sum(s).
// Given dL/dw for the chosen experts, accumulates dL/dz into dlogits.
void routing_weights_backward(std::span<const float> logits, std::span<const int> chosen, float route_scale,
                              std::span<const float> dweights, std::span<float> dlogits);

// The compressor's pooling of one block, per dimension d: entry[d] = sum_i softmax_i(score[:, d])
// kv[i, d] over its rows i (score already includes the position embedding ape). scores and kv
// are [n_rows, dim]; dscore and dkv (same shape) are overwritten.
void compressor_pool_forward(std::span<const float> score, std::span<const float> kv, int n_rows, int dim,
                             std::span<float> entry);
void compressor_pool_backward(std::span<const float> score, std::span<const float> kv, int n_rows, int dim,
                              std::span<const float> dentry, std::span<float> dscore, std::span<float> dkv);

// The lightning indexer's training signal for one token (as DeepSeek trains it): its scores
// I_b = sum_h w_h relu(q_h . k_b) over blocks b (w already scaled) define q = softmax(I), and
// the loss is KL(target || q) toward the main attention's distribution over the same blocks
// (the top-k choice itself is not differentiated; a target that sums to less than 1, e.g.
// restricted to the chosen blocks, is allowed). Returns the loss; dq [heads, dim], dw
// [heads] overwritten, dkeys [blocks, dim] accumulated.
double indexer_kl_backward(std::span<const float> q, std::span<const float> w, int heads, std::span<const float> keys,
                           int blocks, int dim, std::span<const float> target, std::span<float> dq, std::span<float> dw,
                           std::span<float> dkeys);

// DeepSeek's auxiliary-loss-free balancing: after a step whose tokens were routed `load[e]`
// times to expert e, bias[e] += gamma * sign(mean load - load[e]).
void update_routing_bias(std::span<float> bias, std::span<const long long> load, float gamma);

}  // namespace dsv4
