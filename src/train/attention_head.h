// One query head of V4 attention over its key rows backward (the per-(token, head) piece of
// model/attention.cpp that training differentiates), its probabilities, and RoPE's backward.
#pragma once

#include <span>
#include <vector>

namespace dsv4 {

class Rope;

// The attention probabilities p [n_keys] of one query head over its keys and the sink (which
// takes mass and adds no value); returns the sink's.
double attention_probs(std::span<const float> q, std::span<const float> keys, int n_keys, int dim, float scale,
                       float sink, std::vector<double>& p);

// The backward of one query head of V4 attention over its key rows (the window and compressed
// entries; one kv row is both key and value), whose forward is model/attention.h's
// attend_heads: z_j = scale q.k_j, p = softmax over the keys and the sink, o = sum_j p_j k_j,
// then the rope dims of o rotated back (inverse RoPE at pos).
// dq overwritten, dkeys [n_keys, dim] accumulated, returns dsink; p is left holding the
// head's attention_probs (the indexer's target is built from them).
float attention_head_backward(std::span<const float> q, std::span<const float> keys, int n_keys, int dim, float scale,
                              float sink, const Rope& rope, long long pos, std::span<const float> dout,
                              std::span<float> dq, std::span<float> dkeys, std::vector<double>& p);

// RoPE is a rotation: its backward rotates the gradient the other way.
void rope_backward(const Rope& rope, std::span<float> dx, long long pos, bool inverse_in_forward);

}  // namespace dsv4
