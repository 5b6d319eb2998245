// Top-k selection with the reference's tie behaviour.
//
// Exact ties are structural in the indexer: a block whose every head has relu(q.k) = 0 scores
// exactly 0, in the reference and under any perturbation, so which tied block is kept decides
// the result (golden tiny, layer 3: position 27 in the smooth run, position 42 in the faithful
// run). The reference's torch.topk on the CPU selects with std::nth_element (std::partial_sort
// when k * 64 <= n) over (score, index) pairs compared by score alone; we run the same
// selection over the same pairs, so the same tied block wins. The array is the scores of the
// visible candidates in index order, which is what the reference's decode path passes; its
// prefill pads with -inf, which cannot change the winners among finite scores.
// Returns the chosen indices in ascending index order.
#pragma once

#include <span>
#include <vector>

namespace dsv4 {

std::vector<int> topk_indices(std::span<const float> scores, int k);

}  // namespace dsv4
