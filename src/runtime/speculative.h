// Greedy speculative decoding of one session with the model's own drafter: the drafter
// proposes up to `draft` tokens after the token just chosen, the target checks them all in one
// forward pass of 1 + draft rows, keeps them while its own argmax agrees and adds the token it
// chose at the first disagreement (or after the last draft); the session is rolled back to
// what was kept (Model::rollback). Every token is chosen by the target's argmax over logits
// that are bit for bit those of decoding one token at a time (a chunk of rows gives each row
// the bits it gets alone), so the output is the non-speculative output, token for token.
//
// Drafters: DSpark (V4-Flash-0731: a block of dspark_block_size proposals per pass, from the
// states of the target layers) and MTP (the April checkpoints' mtp.0: one proposal from the
// target's final stream and the token just chosen).
#pragma once

#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "model/dspark.h"
#include "model/model.h"

namespace dsv4 {

enum class SpecMode { off, mtp, dspark };
SpecMode parse_spec_mode(const std::string& s);  // "off", "mtp", "dspark"; Error otherwise
const char* spec_mode_name(SpecMode m);
// The checkpoint's drafter: DSpark when it has one, else MTP when it has an MTP layer, else off.
SpecMode default_spec_mode(const ModelConfig& c);
// The most draft tokens a mode proposes per pass (DSpark: the block size, MTP: 1), below the
// sliding window.
int max_draft(const ModelConfig& c, SpecMode m);

struct SpecStats {
  long long steps = 0;     // target passes after the prefill
  long long drafted = 0;   // draft tokens checked
  long long accepted = 0;  // of them, kept
  double acceptance() const { return drafted ? static_cast<double>(accepted) / drafted : 0.0; }
  double tokens_per_step() const;  // tokens generated per target pass
  long long generated = 0;
};

class GreedyDecoder {
 public:
  // draft: tokens proposed per pass, 1 .. max_draft(mode) (ignored when off). n_ids: the
  // argmax runs over logits [0, n_ids) (a vocabulary padded past the tokenizer's).
  // Throws Error naming the problem (no such drafter, draft out of range).
  GreedyDecoder(const Model& m, SpecMode mode, int draft, int n_ids);

  // Feeds the prompt to a fresh session and chooses the first token.
  void prefill(Session& s, std::span<const int> prompt);
  // Chooses the next tokens (one without a drafter, 1 .. draft + 1 with one): each with the
  // target logits [vocab] that chose it. The last chosen token is not fed yet.
  struct Chosen {
    std::vector<int> tokens;
    std::vector<std::vector<float>> logits;
  };
  Chosen step(Session& s);
  // The first token after prefill() and its logits.
  const Chosen& first() const { return first_; }
  const SpecStats& stats() const { return stats_; }

  // Test hook: proposals from this function (anchor, count) instead of the drafter.
  std::function<std::vector<int>(int anchor, int count)> draft_override;

 private:
  int argmax(std::span<const float> logits) const;
  std::vector<int> propose();
  void absorb(const ForwardTrace& tr, int rows, std::span<const int> next_tokens, Session& s);

  const Model& m_;
  SpecMode mode_;
  int draft_, n_ids_;
  std::unique_ptr<Dspark> dspark_;
  DsparkState dspark_state_;
  int mtp_proposal_ = -1;           // MTP: the proposal after the pending token
  int pending_ = -1;                // chosen, not fed
  Chosen first_;
  SpecStats stats_;
};

}  // namespace dsv4
