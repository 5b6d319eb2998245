// The backward of the compressor's softmax pooling of one block (model/compressor.h's
// compressor_pool, the forward training calls too).
#pragma once

#include <span>

namespace dsv4 {

// Per dimension d, entry[d] = sum_i softmax_i(score[:, d]) kv[i, d] over the block's rows:
// given dL/dentry [dim], dscore and dkv [n_rows, dim] are overwritten (in double).
void compressor_pool_backward(std::span<const float> score, std::span<const float> kv, int n_rows, int dim,
                              std::span<const float> dentry, std::span<float> dscore, std::span<float> dkv);

}  // namespace dsv4
