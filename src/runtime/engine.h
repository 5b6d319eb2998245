// The runtime's narrow interface for the CLI and the server:
//   Engine      = a loaded model + its tokenizer (shared, read-only, thread-safe to use);
//   Conversation = one KV timeline (a model Session plus the tokens it has consumed), which
//                  reuses its cache when the next prompt extends what it has seen;
//   generate()  = prefill + sampling loop with stop conditions, streaming text deltas.
// Nothing above this layer touches tensors.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "chat/encode.h"
#include "dist/mirror.h"
#include "model/model.h"
#include "runtime/prefix_cache.h"
#include "grammar/vocab_trie.h"
#include "runtime/logit_adjust.h"
#include "runtime/output_constraint.h"
#include "runtime/logprobs.h"
#include "runtime/sampler.h"
#include "runtime/speculative.h"
#include "tokenizer/tokenizer.h"

namespace dsv4 {

class Engine {
 public:
  // Loads DIR/config.json, the weights and DIR/tokenizer.json. progress (optional) is told
  // what is being loaded.
  explicit Engine(const std::string& dir, std::function<void(const std::string&)> progress = {},
                  ModelOptions opts = {});

  const Model& model() const { return *model_; }
  Model& model() { return *model_; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  int eos_id() const { return eos_id_; }
  int bos_id() const { return bos_id_; }
  const std::string& name() const { return name_; }
  // The chat encoder (chat/encode.h): from the checkpoint's bundled encoding/encoding_dsv4.py
  // when it has one (0731's defines REASONING_EFFORT_PROMPTS), else April; set_chat_format
  // (--chat-format) overrides it.
  chat::ChatFormat chat_format() const { return chat_format_; }
  void set_chat_format(chat::ChatFormat f) { chat_format_ = f; }

  // Sessions and steps. A model-parallel server's rank 0 calls lead() first; from then on
  // every session and step goes to the other ranks too (dist/mirror.h), which call follow()
  // and return from it once rank 0 calls stop_followers().
  Session new_session() const;
  // trace (may be null): every row's final stream, and the layers' when asked (speculative
  // decoding); roles: what each entry is to its session's decoder (empty: all plain), which
  // the followers need to decode alike.
  std::vector<std::vector<float>> forward(std::span<const SessionStep> steps, ForwardTrace* trace = nullptr,
                                          std::span<const StepRole> roles = {}) const;
  // A speculative decoder started on a session: the followers start theirs (nothing unless leading).
  void start_drafter(const Session& s, const DrafterStart& d) const;
  void lead();
  void follow() const;
  void stop_followers() const;
  bool leading() const { return leader_ != nullptr; }

  // The prefix cache shared by the engine's conversations (runtime/prefix_cache.h): ram bytes
  // of sessions (0: none), and with a directory its disk tier of at most disk bytes (warnings
  // go to stderr: files skipped, a directory or a disk that fails, after which it is RAM only). Not under mpirun yet: every rank would have to
  // restore the same snapshot (a file bad on one rank only would split them), and a leader's
  // followers would need it in their mirrors; so a distributed engine has none.
  void enable_prefix_cache(size_t ram, const std::string& dir = "", size_t disk = 0);
  PrefixCache* prefix_cache() const { return prefix_cache_.get(); }
  // snapshot_fingerprint() of the model, computed once (it reads a few KiB of every tensor):
  // the disk tier, saved chats and saved slots all check their files against it.
  uint64_t snapshot_fingerprint() const;
  // The vocabulary as a byte trie for constrained decoding, built on first use (a few ms for a
  // 129K vocabulary) and shared by every request.
  const VocabTrie& vocab_trie() const;

 private:
  std::unique_ptr<Model> model_;
  std::unique_ptr<PrefixCache> prefix_cache_;
  std::unique_ptr<Leader> leader_;
  mutable std::once_flag fingerprint_once_;
  mutable uint64_t fingerprint_ = 0;
  mutable std::once_flag trie_once_;
  mutable std::unique_ptr<VocabTrie> trie_;
  std::unique_ptr<Tokenizer> tokenizer_;
  int eos_id_ = -1, bos_id_ = -1;
  std::string name_;
  chat::ChatFormat chat_format_ = chat::ChatFormat::april;
};

class Conversation {
 public:
  explicit Conversation(const Engine& e);
  // Feeds prompt tokens, reusing the cache when the prompt starts with everything fed so far,
  // or the longest prefix the engine's prefix cache holds (else starting over). Returns the
  // logits after the last token.
  std::vector<float> prefill(const std::vector<int>& prompt,
                             const std::function<void(size_t done, size_t total)>& progress = {});
  std::vector<float> feed(std::span<const int> tokens);
  // For a batched step run by the caller (Engine::forward): the session to step, and then
  // the tokens it consumed.
  Session& session() { return session_; }
  void fed(std::span<const int> tokens) { fed_.insert(fed_.end(), tokens.begin(), tokens.end()); }
  bool continues_with(const std::vector<int>& prompt) const;  // prompt extends what was fed
  // Before feeding prompt: keeps what was fed when the prompt extends it, else starts over;
  // with a drafting mode, starts or restarts the drafter (drafter()); then takes the engine's
  // longest prefix of the prompt cached for that mode when it is longer than what is kept.
  // Returns the drafter (null with SpecMode::off).
  SpecDecoder* start(const std::vector<int>& prompt, SpecMode mode = SpecMode::off, int draft = 0,
                     const SamplingParams& sampling = {});
  // Prefix snapshots while feeding a prompt (after start()): where the next one is due (a
  // chunk must end there; 0: none), and keeping one, with the drafter's context, when the
  // session is at such a place (after the drafter took the chunk).
  size_t next_snapshot(size_t prompt_len) const;
  void snapshot(std::span<const int> prompt);
  const std::vector<int>& tokens() const { return fed_; }
  size_t last_reused() const { return reused_; }  // prompt tokens the last prefill found cached
  const Engine& engine() const { return e_; }
  void reset();
  // The decoder of a speculative generation (runtime/speculative.h), kept with the conversation
  // so that the next prompt continues with the drafter's context: the one that followed every
  // step so far in this mode (restarted for the new request), else a new one over a fresh
  // session.
  SpecDecoder& drafter(SpecMode mode, int draft, const SamplingParams& sampling);
  // The conversation as a snapshot (runtime/snapshot_file.h): the tokens fed, the session and
  // the drafter's context (when the drafter follows the session); and back: resume() drops
  // what the conversation held and continues from a snapshot of this engine's model (as
  // decode_snapshot checked it). Not under mpirun yet (the followers' mirrors would need it).
  Snapshot saved() const;
  void resume(Snapshot s);

 private:
  const Engine& e_;
  Session session_;
  std::unique_ptr<SpecDecoder> drafter_;
  std::vector<int> fed_;
  size_t reused_ = 0;
  SpecMode mode_ = SpecMode::off;  // of the prompt being fed (start())
};

enum class FinishReason { stop, length, cancelled };
const char* finish_reason_name(FinishReason r);

struct GenerateRequest {
  std::vector<int> prompt;
  SamplingParams sampling;
  int max_tokens = 256;
  std::vector<std::string> stop;      // stop strings (not included in the text)
  bool stop_at_eos = true;
  // Streams text as it becomes final (never half a UTF-8 character, never part of a stop
  // string). Return false to cancel.
  std::function<bool(const std::string& delta)> on_text;
  std::function<void(size_t done, size_t total)> on_prefill;
  std::optional<std::string> forced_text;  // test hook: emit this text's tokens, then EOS
  // Speculative decoding (runtime/speculative.h): greedy or sampled, in one process or under
  // mpirun. The cache is reused when the conversation's last generation drafted in the same
  // mode. Ignored with forced_text.
  SpecMode spec = SpecMode::off;
  int draft = 0;
  // Penalties and biases (runtime/logit_adjust.h). A request with any decodes without the
  // drafter: the drafts are checked against the model's own distribution.
  LogitAdjust adjust;
  // Each generated token's log-probability and its top `logprobs` alternatives
  // (runtime/logprobs.h); -1: none. Decodes without the drafter too. on_logprob sees each
  // entry as it is made (before the token's text is streamed).
  int logprobs = -1;
  std::function<void(const TokenLogprob&)> on_logprob;
  // The answer's JSON schema (response_format; runtime/output_constraint.h), or null. With
  // answer_after_think the output is reasoning first and the answer follows "</think>".
  // Constrained requests decode without the drafter.
  std::shared_ptr<const JsonSchema> format;
  bool answer_after_think = false;
  // The prefill ends a chunk one token short of the prompt's end, where samples of the same
  // prompt copy the conversation (Scheduler::submit_samples).
  bool pause_before_last = false;
};

struct GenerateResult {
  std::string text;
  std::vector<int> tokens;  // generated ids (EOS excluded)
  FinishReason finish = FinishReason::stop;
  bool hit_eos = false;  // stopped because the model emitted its end-of-sentence token
  std::string stop_string;  // the stop string that ended it, if one did
  int prompt_tokens = 0, reused_tokens = 0;
  double prefill_seconds = 0, decode_seconds = 0;
  SpecStats spec;  // with speculative decoding
  std::vector<TokenLogprob> logprobs;  // one per entry of tokens, with GenerateRequest::logprobs
};

// Throws Error naming the first bad field (empty prompt, max_tokens < 1, empty stop string,
// sampling parameters out of range).
void validate(const GenerateRequest& req);

// Generation one step at a time, so a scheduler can interleave many: each step feeds one
// prefill chunk or samples (and streams) one token. generate() runs it to the end.
//
// A scheduler batching several generations into one forward pass splits a step in two:
// next_input() does what comes before the pass (on the first call, what the cache already
// holds; then sampling and streaming a token and the stop conditions) and returns the tokens
// to feed: a prefill chunk of at most max_prefill tokens, or the token just sampled; empty
// once finished. The caller feeds them to conversation().session() (Engine::forward, with
// other sessions' steps) and hands the logits to fed().
class Generation {
 public:
  Generation(Conversation& conv, GenerateRequest req);  // validates the request
  bool step();  // true once finished
  std::span<const int> next_input(size_t max_prefill);
  // trace: the step's (rows row0 .. are this generation's), required when needs_trace().
  void fed(std::vector<float> logits, const ForwardTrace* trace = nullptr, int row0 = 0);
  bool needs_trace() const { return spec_ != nullptr; }  // a speculative generation
  StepRole role() const;  // what the input next_input() gave is to the decoder
  void prepare(ForwardTrace& tr) const {  // what the step's trace must keep for this generation
    if (spec_) spec_->prepare(tr);
  }
  bool prefilling() const { return !finished_ && (!started_ || prefilled_ < req_.prompt.size()); }
  bool finished() const { return finished_; }
  void cancel();  // finishes with FinishReason::cancelled at the next step
  const GenerateResult& result() const { return r_; }
  Conversation& conversation() { return conv_; }

 private:
  void finish(FinishReason why, bool hit_stop_string);
  bool stream(size_t upto);
  bool sample_next();  // samples, streams and checks the stop conditions; true to go on
  bool take(int tok);  // a chosen token: streams it and checks the stop conditions; true to go on

  Conversation& conv_;
  GenerateRequest req_;
  GenerateResult r_;
  Sampler sampler_;
  std::optional<LogitAdjuster> adjuster_;  // when the request adjusts the logits
  std::optional<OutputConstraint> constraint_;  // when the request fixes the answer's format
  IncrementalDecoder dec_;
  std::vector<int> forced_;
  std::vector<float> logits_;
  std::span<const int> pending_;  // handed out by next_input(), not yet fed
  std::vector<int> verify_rows_;  // a speculative step's rows (the decoder's change at end_step)
  int sampled_[1] = {0};
  size_t prefilled_ = 0, emitted_ = 0, max_stop_ = 0;
  bool started_ = false, finished_ = false, cancel_ = false;
  std::chrono::steady_clock::time_point t0_;
  SpecDecoder* spec_ = nullptr;  // the conversation's, for a speculative generation
};

GenerateResult generate(Conversation& conv, const GenerateRequest& req);

}  // namespace dsv4
