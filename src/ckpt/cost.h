// What one token costs a model, from its config alone: the bytes of weights a decode step
// reads (every main-layer tensor except the routed experts, plus num_experts_per_tok experts
// per layer, plus the head; the embedding contributes one row) and the multiply-add FLOPs of
// its matrix products (2 per weight used). Attention over the cache is not counted: at the
// lengths benchmarked here it is a small fraction.
#pragma once

#include "io/config.h"

namespace dsv4 {

struct TokenCost {
  double weight_bytes = 0;  // read per decoded token
  double matmul_flops = 0;  // per token
  // The parts of weight_bytes: one routed expert of one layer (all are the same size), and
  // everything else (the other tensors, the head, one embedding row). A step over several
  // tokens reads fixed_bytes (plus an embedding row per further token) and each routed expert
  // that any of its tokens chose once.
  double expert_bytes = 0, fixed_bytes = 0, embed_row_bytes = 0;
};

TokenCost token_cost(const ModelConfig& c);

}  // namespace dsv4
