// What one trained token costs in multiply-add FLOPs, from the config alone, for the achieved
// GFLOP/s that `dsv4 train` reports against the measured FMA peak.
#pragma once

#include "io/config.h"

namespace dsv4 {

// The matrix products of one token of train_sequence (2 FLOPs per weight used; the routed
// experts at their share num_experts_per_tok / n_routed_experts): every block's matrices 4
// times (the forward, the backward's recomputation of the block from its input, and the two
// gradient products), the head's 3 times (it is not recomputed); with mtp, the MTP layer's
// block, e_proj and h_proj (once per hc copy) 4 times and the shared head 3 times more.
// Attention's scores over the keys and mHC's mixing are not counted.
double training_flops_per_token(const ModelConfig& c, bool mtp);

}  // namespace dsv4
