// Top-k selection with a deterministic tie rule: higher score first, equal scores by HIGHER
// index. Exact ties are structural in the indexer (blocks whose every head has relu(q.k) = 0
// score exactly 0), so they survive any perturbation and the rule matters: the official
// reference keeps the later block (golden tiny, layer 3, position 42: blocks 0, 3, 5 tie at 0
// and the reference keeps 5). SPEC.md says "lower index"; the reference's outputs say higher.
// Returns the chosen indices in ascending index order.
#pragma once

#include <span>
#include <vector>

namespace dsv4 {

std::vector<int> topk_indices(std::span<const float> scores, int k);

}  // namespace dsv4
