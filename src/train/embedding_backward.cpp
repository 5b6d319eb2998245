#include "train/embedding_backward.h"

#include <cstddef>

namespace dsv4 {

void embedding_backward(std::span<const int> ids, std::span<const float> dy, int dim, std::span<float> dtable) {
  for (size_t t = 0; t < ids.size(); ++t)
    for (int i = 0; i < dim; ++i) dtable[size_t(ids[t]) * dim + i] += dy[t * dim + i];
}

}  // namespace dsv4
