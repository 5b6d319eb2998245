// What one trained token costs in multiply-add FLOPs, from the config alone, for the achieved
// GFLOP/s that `dsv4 train` reports against the measured FMA peak.
#pragma once

#include "io/config.h"

namespace dsv4 {

// The matrix products of one token of train_batch (2 FLOPs per weight used; the routed
// experts at their share num_experts_per_tok / n_routed_experts): every matrix 3 times (the
// forward and the backward's two gradient products; the forward's insides are kept, not
// recomputed): the blocks and the head; with mtp, the MTP layer's block, e_proj and h_proj
// (once per hc copy) and the shared head once more. Attention's scores over the keys, mHC's
// mixing and the optimizer (Muon's Newton-Schulz products) are not counted.
double training_flops_per_token(const ModelConfig& c, bool mtp);

}  // namespace dsv4
