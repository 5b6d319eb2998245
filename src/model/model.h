// DeepSeek-V4: the narrow interface the tools (and later the runtime) use.
//   Model   = config + memory-mapped, validated weights (shared, read-only).
//   Session = one token timeline: its position and every layer's caches (window ring,
//             compressed entries, compressor / indexer state), and the MTP layer's own.
// Several sessions of one model are independent. forward() accepts any number of tokens at
// the session's current position: a prefill, a chunk of one, or a decode step of one token;
// and a batch of such steps of different sessions in one pass over the weights, where every
// session gets bit for bit what it would get alone.
#pragma once

#include <memory>
#include <utility>
#include <span>
#include <string>
#include <vector>

#include "io/checkpoint.h"
#include "io/config.h"
#include "model/kv_cache.h"
#include "model/segment.h"
#include "model/weights.h"
#include "ops/rope.h"

namespace dsv4 {

struct Session {
  long long pos = 0;                 // tokens consumed by the main layers
  std::vector<LayerCache> layers;
  long long mtp_pos = 0;             // positions consumed by the MTP layer
  std::vector<LayerCache> mtp;
  // Model-parallel serving (dist/mirror.h): the id of the followers' mirror of this session,
  // and a lease whose release tells them to drop it.
  int id = -1;
  std::shared_ptr<void> lease;
};

// to takes from's caches (positions, layers, MTP layers) and keeps its own id and lease: a
// snapshot restored into a session, or taken from one, is never a mirror's.
inline void set_caches(Session& to, Session from) {
  to.pos = from.pos;
  to.layers = std::move(from.layers);
  to.mtp_pos = from.mtp_pos;
  to.mtp = std::move(from.mtp);
}

// A session before a speculative step (Model::mark), to go back to any position up to
// max_tokens past it (Model::rollback): what the window ring's slots held, the compressors'
// pending rows and entry counts. The compressors log what they absorb meanwhile.
struct SessionMark {
  long long pos = 0;
  int max_tokens = 0;
  struct Layer {
    KvRows ring;  // the slots of positions pos .. pos + max_tokens - 1, as they were
    std::vector<float> kv, score, index_kv, index_score;
    size_t entries = 0, index_entries = 0;
  };
  std::vector<Layer> layers;
};

// What a batched step did (for benchmarks): routed experts run, summed over the layers (each
// expert counted once per layer however many rows chose it; this rank's only).
struct StepStats {
  long long routed_experts = 0;
};

// One entry of a batched step: a session and the tokens it consumes at its position.
struct SessionStep {
  Session* session = nullptr;
  std::span<const int> tokens;
};

// Optional outputs of forward() for validation and speculative decoding.
struct ForwardTrace {
  bool keep_layer_hidden = false;
  std::vector<int> hidden_layers;  // with keep_layer_hidden: only these blocks' (empty: all)
  std::vector<std::vector<float>> layer_hidden;  // per block: [n, hc, dim] residual after it, or empty
  std::vector<float> final_stream;               // [n, hc, dim] before hc_head (MTP input)
};

struct ModelOptions {
  bool act_quant = true;  // false only for validation against the smooth goldens
  WeightsIn weights = WeightsIn::automatic;  // io/checkpoint.h
};

class Model {
 public:
  Model(const std::string& dir, ModelOptions opts = {});  // throws Error on any bad input

  const ModelConfig& config() const { return cfg_; }
  const Checkpoint& checkpoint() const { return *ckpt_; }
  const ModelWeights& weights() const { return *w_; }
  bool act_quant() const { return opts_.act_quant; }

  Session new_session() const;

  // Feeds tokens at s.pos; logits [vocab] of the last token. trace may be null.
  std::vector<float> forward(Session& s, std::span<const int> tokens, ForwardTrace* trace = nullptr) const;

  // One step of several sessions (each at most once): every step's tokens in one pass over the
  // weights (projections, the shared expert and each chosen routed expert run once over all
  // rows; attention, compressors, indexer and caches per session). Returns each step's
  // last-token logits [vocab], bitwise what forward() on that session alone returns. Throws
  // Error before changing any session when a step is bad. trace (may be null) covers every
  // row, the steps' rows one after another.
  std::vector<std::vector<float>> forward(std::span<const SessionStep> steps, StepStats* stats = nullptr,
                                          ForwardTrace* trace = nullptr) const;

  // Speculative steps (model/rollback.cpp): mark a session, feed up to max_tokens (<= the
  // window) that may be rejected, then roll back to any position from the mark to where it got
  // (that position included: keeping everything), which ends the mark. The session is then
  // bit for bit what feeding only the kept tokens would have left. The main layers only.
  SessionMark mark(Session& s, int max_tokens) const;
  void rollback(Session& s, const SessionMark& m, long long to_pos) const;

  // Throws Error naming the first token id outside the vocabulary (or an empty list).
  void check_tokens(std::span<const int> tokens) const;

  // The MTP layer (mtp.0) over positions s.mtp_pos ..: stream [n, hc, dim] is the main model's
  // final stream at those positions and next_tokens [n] the token after each. Returns the
  // logits [vocab] predicted at the last position; out_stream (may be null) gets the layer's
  // output stream [n, hc, dim] (the input of a chained draft at the next position).
  std::vector<float> mtp_forward(Session& s, std::span<const float> stream, std::span<const int> next_tokens,
                                 std::vector<float>* out_stream = nullptr) const;

  // Logits [n, vocab] at every position of a forward's final stream (ForwardTrace::final_stream
  // [n, hc, dim]): what forward() returns for the last one, for all of them (perplexity).
  std::vector<float> all_logits(std::span<const float> final_stream) const;

  // The shared embedding of tokens [n, dim] and the shared head over normed rows y [n, dim] ->
  // logits [n, vocab]: whole on every rank however the vocabulary is split among them (so,
  // under mpirun, collective: every rank calls them together).
  std::vector<float> embed(std::span<const int> tokens) const;
  std::vector<float> head(std::span<const float> y) const;

 private:
  std::vector<std::vector<float>> run(std::span<const SessionStep> steps, ForwardTrace* trace, StepStats* stats) const;
  // One block on the residual stream h [N, hc, dim] of a step's rows in place; segs divide the
  // rows among sessions (their caches of this block), tokens [N].
  // Returns the routed experts run.
  int block_forward(const BlockWeights& b, std::span<const Segment> segs, std::vector<float>& h,
                    std::span<const int> tokens) const;
  // Logits [n, vocab] of the stream rows [n, hc, dim].
  std::vector<float> head_logits(const HcParams& hc_head, std::span<const float> norm,
                                 std::span<const float> stream) const;
  const Rope& rope_for(int compress_ratio) const { return compress_ratio ? rope_yarn_ : rope_plain_; }

  ModelConfig cfg_;
  ModelOptions opts_;
  std::unique_ptr<Checkpoint> ckpt_;
  std::unique_ptr<ModelWeights> w_;
  Rope rope_plain_, rope_yarn_;
};

}  // namespace dsv4
