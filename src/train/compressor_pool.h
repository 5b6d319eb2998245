// The compressor's softmax pooling of one block per dimension, forward and backward (the
// piece of model/compressor.cpp between its projections and its norm).
#pragma once

#include <span>

namespace dsv4 {

// The compressor's pooling of one block, per dimension d: entry[d] = sum_i softmax_i(score[:, d])
// kv[i, d] over its rows i (score already includes the position embedding ape). scores and kv
// are [n_rows, dim]; dscore and dkv (same shape) are overwritten.
void compressor_pool_forward(std::span<const float> score, std::span<const float> kv, int n_rows, int dim,
                             std::span<float> entry);

void compressor_pool_backward(std::span<const float> score, std::span<const float> kv, int n_rows, int dim,
                              std::span<const float> dentry, std::span<float> dscore, std::span<float> dkv);

}  // namespace dsv4
