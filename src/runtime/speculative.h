// Speculative decoding of one session with the model's own drafter: the drafter proposes up
// to `draft` tokens after the token just chosen, the target checks them all in one forward
// pass of 1 + draft rows, keeps a prefix of them and chooses one more token; the session is
// rolled back to what was kept (Model::rollback). Every row's logits are bit for bit those of
// decoding one token at a time (a chunk of rows gives each row the bits it gets alone), so
// greedy output is the non-speculative output token for token, and sampled output has the
// non-speculative distribution (SpecDecoder below).
//
// Drafters: DSpark (V4-Flash-0731: a block of dspark_block_size proposals per pass, from the
// states of the target layers) and MTP (the April checkpoints' mtp.0: a proposal from the
// target's final stream and the token just chosen; chained for more, each next one from the
// MTP layer's own output stream and the proposal before it, on a copy of its cache).
#pragma once

#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "model/dspark.h"
#include "model/model.h"
#include "runtime/sampler.h"

namespace dsv4 {

enum class SpecMode { off, mtp, dspark };
SpecMode parse_spec_mode(const std::string& s);  // "off", "mtp", "dspark"; Error otherwise
const char* spec_mode_name(SpecMode m);
// The checkpoint's drafter: DSpark when it has one, else MTP when it has an MTP layer, else off.
SpecMode default_spec_mode(const ModelConfig& c);
// The most draft tokens a mode proposes per pass (DSpark: the block size, MTP: kMaxMtpChain),
// below the sliding window; and the default (DSpark: the block size; MTP: 2, the chain that
// paid on the default model, where a third and fourth draft cost more than they added: README).
constexpr int kMaxMtpChain = 4;
int max_draft(const ModelConfig& c, SpecMode m);
int default_draft(const ModelConfig& c, SpecMode m);
// Throws Error naming the problem: the checkpoint has no such drafter, draft outside
// 1 .. max_draft (any draft with off).
void check_spec(const ModelConfig& c, SpecMode mode, int draft);

// Model-parallel ranks each run their own decoder of a session (in lockstep, or a follower's
// mirror of rank 0's): the same logits and the same seeded draws make the same choices. A
// difference would leave their caches apart, so it is an Error on every rank (collective;
// nothing in one process).
void check_ranks_chose_alike(std::span<const int> chosen);

struct SpecStats {
  long long steps = 0;     // target passes after the prefill
  long long drafted = 0;   // draft tokens checked
  long long accepted = 0;  // of them, kept
  double acceptance() const { return drafted ? static_cast<double>(accepted) / drafted : 0.0; }
  double tokens_per_step() const;  // tokens generated per target pass
  long long generated = 0;
  SpecStats& operator+=(const SpecStats& o);
};

// One session's decoding with or without a drafter. Greedy (temperature 0) or sampled with
// the standard speculative-sampling rule (Leviathan et al., Chen et al.): draft j, drawn from
// the drafter's distribution q_j, is kept with probability min(1, p_j / q_j) under the
// target's distribution p_j (its filtered sampling distribution, runtime/sampler.h); at the
// first rejection the token is drawn from max(0, p_j - q_j) renormalised, and after the last
// draft kept one more token is drawn from the next row. Each chosen token is then distributed
// exactly as sampling the target alone would choose it. Drafters that propose one token
// for sure (the test hook) have q = 1 at their token.
class SpecDecoder {
 public:
  // draft: tokens proposed per pass, 1 .. max_draft(mode) (ignored when off). n_ids: tokens
  // are chosen among ids [0, n_ids) (a vocabulary padded past the tokenizer's). sampling: its
  // temperature 0 is greedy. Throws Error naming the problem (no such drafter, draft out of
  // range, bad sampling parameters).
  SpecDecoder(const Model& m, SpecMode mode, int draft, int n_ids, const SamplingParams& sampling);

  // The tokens chosen by one pass, each with the target logits [vocab] that chose it.
  struct Chosen {
    std::vector<int> tokens;
    std::vector<std::vector<float>> logits;
  };

  // What the forwards handed to prefilled() and end_step() must keep: DSpark's target layers'
  // streams (ForwardTrace::keep_layer_hidden, hidden_layers).
  void prepare(ForwardTrace& tr) const;

  // The prompt, a chunk at a time, from a fresh session (or one this decoder has followed):
  // after the caller fed `chunk` (trace rows row0 .., logits: the chunk's last row's), its
  // rows enter the drafter. next: the prompt token after the chunk, or -1 after the last chunk,
  // when the first token is chosen (returned; else -1).
  int prefilled(Session& s, std::span<const int> chunk, const ForwardTrace& tr, int row0,
                std::span<const float> logits, int next);
  // One pass, split so that a scheduler can batch it with other sessions' steps: begin_step()
  // drafts, marks the session and returns the rows to feed (the last chosen token, then the
  // drafts); the caller feeds them (trace rows row0 ..); end_step() chooses the tokens and
  // rolls the session back to the rows kept (the last chosen token is not fed yet).
  std::span<const int> begin_step(Session& s);
  Chosen end_step(Session& s, const ForwardTrace& tr, int row0);

  // For the next prompt of the same conversation (a session that has consumed only what this
  // decoder followed, as after end_step()): a new generation, the drafter's context kept.
  void restart(int draft, const SamplingParams& sampling);
  SpecMode mode() const { return mode_; }
  // DSpark's context (its rings at the positions it has taken), which the prefix cache keeps
  // and restores with a session; null in the other modes.
  DsparkState* dspark_context() { return mode_ == SpecMode::dspark ? &dspark_state_ : nullptr; }
  const DsparkState* dspark_context() const { return mode_ == SpecMode::dspark ? &dspark_state_ : nullptr; }
  // The drafter has taken every position the session consumed (false after a step of the
  // session that bypassed this decoder).
  bool follows(const Session& s) const;

  // The same, feeding the session alone.
  void prefill(Session& s, std::span<const int> prompt);
  Chosen step(Session& s);
  const Chosen& first() const { return first_; }
  const SpecStats& stats() const { return stats_; }

  // Test hooks, instead of the drafter: proposals for certain (anchor, count), or a distribution
  // per draft to draw it from.
  std::function<std::vector<int>(int anchor, int count)> draft_override;
  std::function<std::vector<TokenDistribution>(int anchor, int count)> draft_distributions;

 private:
  int choose(std::span<const float> logits);  // greedy or sampled, over [0, n_ids)
  void propose(const Session& s);
  void absorb(const ForwardTrace& tr, int row0, int rows, std::span<const int> next_tokens, Session& s);
  ForwardTrace trace() const;

  const Model& m_;
  SpecMode mode_;
  int draft_, n_ids_;
  Sampler sampler_;
  std::shared_ptr<const Dspark> dspark_;  // shared by copies (a test samples from one state)
  DsparkState dspark_state_;
  std::vector<float> mtp_logits_;   // MTP: its logits after the pending token
  std::vector<float> mtp_stream_;   // MTP: its output stream there [hc, dim] (chained drafts)
  int pending_ = -1;                // chosen, not fed
  std::vector<int> rows_;           // begin_step(): the pending token, then the drafts
  std::vector<TokenDistribution> q_;  // the drafts' distributions (empty: certain drafts)
  SessionMark mark_;
  Chosen first_;
  SpecStats stats_;
};

}  // namespace dsv4
