// DeepSeek-V4: the narrow interface the tools (and later the runtime) use.
//   Model   = config + memory-mapped, validated weights (shared, read-only).
//   Session = one token timeline: its position and every layer's caches (window ring,
//             compressed entries, compressor / indexer state), and the MTP layer's own.
// Several sessions of one model are independent. forward() accepts any number of tokens at
// the session's current position: a prefill, a chunk of one, or a decode step of one token.
#pragma once

#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "io/checkpoint.h"
#include "io/config.h"
#include "model/kv_cache.h"
#include "model/weights.h"
#include "ops/rope.h"

namespace dsv4 {

struct Session {
  long long pos = 0;                 // tokens consumed by the main layers
  std::vector<LayerCache> layers;
  long long mtp_pos = 0;             // positions consumed by the MTP layer
  std::vector<LayerCache> mtp;
  // Model parallel serving (Model::lead): the id of the followers' mirror of this session, and
  // a lease whose release tells them to drop it.
  int id = -1;
  std::shared_ptr<void> lease;
};

// Optional outputs of forward() for validation and speculative decoding.
struct ForwardTrace {
  bool keep_layer_hidden = false;
  std::vector<std::vector<float>> layer_hidden;  // per block: [n, hc, dim] residual after it
  std::vector<float> final_stream;               // [n, hc, dim] before hc_head (MTP input)
};

struct ModelOptions {
  bool act_quant = true;  // false only for validation against the smooth goldens
};

class Model {
 public:
  Model(const std::string& dir, ModelOptions opts = {});  // throws Error on any bad input

  const ModelConfig& config() const { return cfg_; }
  const Checkpoint& checkpoint() const { return *ckpt_; }
  const ModelWeights& weights() const { return *w_; }

  Session new_session() const;

  // Feeds tokens at s.pos; logits [vocab] of the last token. trace may be null.
  std::vector<float> forward(Session& s, std::span<const int> tokens, ForwardTrace* trace = nullptr) const;

  // The MTP layer (mtp.0) over positions s.mtp_pos ..: stream [n, hc, dim] is the main model's
  // final stream at those positions and next_tokens [n] the token after each. Returns the
  // logits [vocab] predicted at the last position.
  std::vector<float> mtp_forward(Session& s, std::span<const float> stream,
                                 std::span<const int> next_tokens) const;

  // Logits [n, vocab] at every position of a forward's final stream (ForwardTrace::final_stream
  // [n, hc, dim]): what forward() returns for the last one, for all of them (perplexity).
  std::vector<float> all_logits(std::span<const float> final_stream) const;

  // Model parallel runs. By default every rank runs the same program in lockstep (dsv4 run,
  // logits). A server instead has rank 0 lead: lead() makes every new_session and forward on
  // rank 0 send itself to the other ranks first, which run it on mirror sessions in follow()
  // until rank 0 calls stop_followers(). One thread at a time calls into a leading model.
  void lead();
  void follow();
  void stop_followers() const;
  bool leading() const { return leading_; }

 private:
  enum class Op : int { stop, new_session, forward };
  // Rank 0, leading: sends an op (with the sessions dropped since the last one).
  void send(Op op, int id, std::span<const int> tokens) const;
  void check_tokens(std::span<const int> tokens) const;
  // One block on the residual stream h [n, hc, dim] in place.
  void block_forward(const BlockWeights& b, LayerCache& cache, std::vector<float>& h,
                     std::span<const int> tokens, int n, long long pos0) const;
  std::vector<float> embed(std::span<const int> tokens) const;  // [n, dim]
  // Logits [n, vocab] of the stream rows [n, hc, dim].
  std::vector<float> head_logits(const HcParams& hc_head, std::span<const float> norm,
                                 std::span<const float> stream) const;
  const Rope& rope_for(int compress_ratio) const { return compress_ratio ? rope_yarn_ : rope_plain_; }

  ModelConfig cfg_;
  ModelOptions opts_;
  std::unique_ptr<Checkpoint> ckpt_;
  std::unique_ptr<ModelWeights> w_;
  Rope rope_plain_, rope_yarn_;
  bool leading_ = false;
  mutable int next_session_id_ = 0;
  struct Drops {
    std::mutex mu;
    std::vector<int> ids;  // sessions released since the last op
  };
  std::shared_ptr<Drops> drops_ = std::make_shared<Drops>();
};

}  // namespace dsv4
