// The inference structs of model/weights.h viewed over the trainer's float masters, so that the
// training forward calls the inference ops themselves (model/attention.h, model/compressor.h,
// model/moe.h, model/mtp_input.h)
// rather than a copy of them. Each matrix becomes a Linear of format f32 over its master
// ([out, in], what dequant_row reads) with a transposed copy made here ([in, out], what
// gemm_f32 reads: the products then have the trainer's bits and speed); vectors are copied.
// A view holds its transposes and points into the masters: it is valid while they are
// unchanged (one forward, or one step).
#pragma once

#include <deque>
#include <vector>

#include "io/config.h"
#include "model/weights.h"
#include "train/attention_backward.h"
#include "train/moe_backward.h"
#include "train/train_weights.h"

namespace dsv4 {

class Rope;

class MasterViews {
 public:
  // A view of w [out, in].
  Linear linear(const std::vector<float>& w, int out, int in);
  CompressorWeights compressor(const CompressorF32& c);
  // The attention's projections, sink and norms (its compressor and indexer are left out:
  // the trainer runs them itself, compressor() being the compressor's view).
  AttentionWeights attention(const AttentionF32& a);
  // The gate, every routed expert and the shared one; the routing's bias or tid2eid copied.
  MoeWeights moe(const MoeF32& m, const MoeRouting& r, const ModelConfig& c);
  // What model/mtp_input.h reads: e_proj, h_proj, enorm, hnorm (the block and head left out).
  MtpWeights mtp_input(const MtpF32& m);

 private:
  std::deque<std::vector<float>> transposes_;
};

// The ModelConfig fields the attention ops read, from a layer's own description (its rope
// gives the rotated width).
ModelConfig attention_config(const AttentionF32& a, const Rope& rope);

}  // namespace dsv4
