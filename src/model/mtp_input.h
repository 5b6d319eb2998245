// The MTP layer's input: for position t, the embedding of the token after it and the main
// model's final stream there, x = e_proj(enorm(embed(next))) added to every copy of
// h_proj(hnorm(stream)). Inference (Model::mtp_forward) and training (train/train_model.cpp)
// both call it.
#pragma once

#include <span>
#include <vector>

#include "io/config.h"
#include "model/weights.h"

namespace dsv4 {

// What training's backward keeps (null in inference): the normed embeddings and streams, and
// the embeddings' projection.
struct MtpInputSaved {
  std::vector<float> en, ep, hn;  // [n, dim], [n, dim], [n, hc, dim]
};

// e: [n, dim] the embedded next tokens, stream: [n, hc, dim] -> x: [n, hc, dim].
void mtp_input(const MtpWeights& m, const ModelConfig& c, std::span<const float> e, std::span<const float> stream,
               int n, bool act_quant, std::vector<float>& x, MtpInputSaved* saved = nullptr);

}  // namespace dsv4
