// DSpark, the drafter of DeepSeek-V4-Flash-0731 (the reference's DSparkBlock, DSparkAttention,
// forward_spec): draft stages under mtp.* that propose block_size - 1 tokens after an anchor
// in one pass.
//   Capture: while the target runs, main_hidden(p) is the concatenation, over the target layers
//     (ascending), of the mean over the hc copies of that layer's output stream.
//   Context: main_x(p) = main_norm(main_proj(main_hidden(p))); each stage keeps a ring of
//     sliding_window slots, slot p % window holding its kv of main_x(p) at position p.
//   Draft at target position i (the target has consumed tokens 0 .. i, the rings hold up to i):
//     rows [anchor, noise x (block_size - 1)] at positions i + 1 .. i + block_size go through
//     the stages as ordinary blocks whose attention sees the ring's first min(window, i + 1)
//     slots and all of the block's own rows (no causal mask inside the block); then the last
//     stage's hc head, norm and the shared head; row by row the Markov bias of the previous
//     token (the anchor for row 0) is added, the row's token is the argmax (or a sample), and
//     its confidence is proj . [hidden ; markov_w1[previous]].
#pragma once

#include <functional>
#include <span>
#include <vector>

#include "io/config.h"
#include "model/kv_cache.h"
#include "model/model.h"
#include "model/weights.h"
#include "ops/rope.h"

namespace dsv4 {

// One session's drafter context: a ring per stage and the positions absorbed so far.
struct DsparkState {
  std::vector<KvRows> rings;
  long long pos = 0;
};

// What one draft proposes (block_size rows; row k sits at position i + 1 + k, and its token
// is the proposal for position i + 2 + k).
struct DsparkDraft {
  std::vector<int> tokens;        // [block]
  std::vector<float> logits;      // [block, vocab], after the Markov bias
  std::vector<float> confidence;  // [block], a logit (no sigmoid)
  std::vector<float> hidden;      // [block, dim]: the last stage's hc head output, before the norm
};

// The capture of target positions: rows row0 .. row0 + n - 1 of a forward's layer streams
// (ForwardTrace::layer_hidden, kept) -> main_hidden [n, targets * dim].
std::vector<float> dspark_capture(const ModelConfig& c, const ForwardTrace& trace, int row0, int n);

class Dspark {
 public:
  // The drafter of m (its weights, the shared embedding and head, m's activation rounding).
  // Under mpirun its passes are collective, like the target's.
  explicit Dspark(const Model& m);

  DsparkState new_state() const;
  // Target positions state.pos .. + n - 1 (main_hidden [n, targets * dim]) enter every stage's
  // ring. Returns their main_x [n, dim].
  std::vector<float> absorb(DsparkState& state, std::span<const float> main_hidden) const;
  // A draft after target position state.pos - 1 from `anchor`. Each row's token is the argmax
  // of its Markov-biased logits (greedy), or what `choose` picks from them (sampling); the next
  // row's Markov bias follows that token. The state is unchanged.
  using Chooser = std::function<int(std::span<const float> row)>;
  DsparkDraft draft(const DsparkState& state, int anchor, const Chooser& choose = {}) const;

 private:
  void stage_forward(int s, const DsparkState& state, long long first_pos, std::span<const int> ids,
                     std::vector<float>& h) const;

  const Model& m_;
  const ModelConfig& c_;
  const ModelWeights& w_;
  bool act_quant_;
  Rope rope_;  // the stages attend a sliding window only: plain RoPE, no YaRN
};

}  // namespace dsv4
