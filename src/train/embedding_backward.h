// The embedding's backward: each token's gradient added to its table row.
#pragma once

#include <span>

namespace dsv4 {

// Embedding rows: dtable [vocab, dim] += dy rows at their ids.
void embedding_backward(std::span<const int> ids, std::span<const float> dy, int dim, std::span<float> dtable);

}  // namespace dsv4
