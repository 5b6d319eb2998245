// Engine loading, conversation cache reuse and the generation loop.
#include "runtime/engine.h"

#include <chrono>
#include <filesystem>

#include "core/check.h"
#include "core/read_file.h"
#include "dist/comm.h"
#include "tokenizer/utf8.h"

namespace dsv4 {

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

constexpr size_t kPrefillChunk = 256;  // progress granularity; results do not depend on it

}  // namespace

Engine::Engine(const std::string& dir, std::function<void(const std::string&)> progress, ModelOptions opts) {
  namespace fs = std::filesystem;
  if (progress) progress("loading weights from " + dir);
  model_ = std::make_unique<Model>(dir, opts);
  const std::string tok = (fs::path(dir) / "tokenizer.json").string();
  if (progress) progress("loading tokenizer " + tok);
  DSV4_CHECK(fs::exists(tok), dir, ": no tokenizer.json next to the weights");
  tokenizer_ = std::make_unique<Tokenizer>(Tokenizer::load(tok));
  const ModelConfig& c = model_->config();
  DSV4_CHECK(tokenizer_->vocab_size() <= c.vocab_size, tok, ": the tokenizer has ", tokenizer_->vocab_size(),
             " tokens but the model's vocab_size is ", c.vocab_size);
  eos_id_ = c.eos_token_id >= 0 ? c.eos_token_id : tokenizer_->special_id("<｜end▁of▁sentence｜>");
  bos_id_ = c.bos_token_id >= 0 ? c.bos_token_id : tokenizer_->special_id("<｜begin▁of▁sentence｜>");
  DSV4_CHECK(eos_id_ >= 0, dir, ": no eos_token_id in config.json and no <｜end▁of▁sentence｜> token");
  name_ = fs::path(dir).filename().string();
  if (name_.empty()) name_ = fs::path(dir).parent_path().filename().string();
  // The release's own encoder, when bundled: 0731's names its levels in REASONING_EFFORT_PROMPTS,
  // April's has REASONING_EFFORT_MAX alone.
  const fs::path encoder = fs::path(dir) / "encoding" / "encoding_dsv4.py";
  if (fs::exists(encoder) && read_file(encoder.string()).find("REASONING_EFFORT_PROMPTS") != std::string::npos)
    chat_format_ = chat::ChatFormat::v0731;
}

Session Engine::new_session() const { return leader_ ? leader_->new_session() : model_->new_session(); }

std::vector<std::vector<float>> Engine::forward(std::span<const SessionStep> steps) const {
  return leader_ ? leader_->forward(steps) : model_->forward(steps);
}

void Engine::lead() {
  if (Comm::get().distributed()) leader_ = std::make_unique<Leader>(*model_);
}

void Engine::follow() const { dsv4::follow(*model_); }

void Engine::stop_followers() const {
  if (leader_) leader_->stop();
}

Conversation::Conversation(const Engine& e) : e_(e), session_(e.new_session()) {}

void Conversation::reset() {
  session_ = e_.new_session();
  fed_.clear();
}

std::vector<float> Conversation::prefill(const std::vector<int>& prompt,
                                         const std::function<void(size_t, size_t)>& progress) {
  DSV4_CHECK(!prompt.empty(), "empty prompt");
  if (!continues_with(prompt)) reset();
  reused_ = fed_.size();
  std::vector<float> logits;
  const size_t total = prompt.size();
  for (size_t i = fed_.size(); i < total; i += kPrefillChunk) {
    const size_t n = std::min(kPrefillChunk, total - i);
    logits = feed(std::span<const int>(prompt).subspan(i, n));
    if (progress) progress(i + n, total);
  }
  return logits;
}

std::vector<float> Conversation::feed(std::span<const int> tokens) {
  const SessionStep step{&session_, tokens};
  std::vector<float> logits = std::move(e_.forward(std::span<const SessionStep>(&step, 1)).front());
  fed(tokens);
  return logits;
}

bool Conversation::continues_with(const std::vector<int>& prompt) const {
  return prompt.size() > fed_.size() && std::equal(fed_.begin(), fed_.end(), prompt.begin());
}

const char* finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::stop: return "stop";
    case FinishReason::length: return "length";
    case FinishReason::cancelled: return "cancelled";
  }
  return "?";
}

void validate(const GenerateRequest& req) {
  req.sampling.validate();
  DSV4_CHECK(!req.prompt.empty(), "empty prompt");
  DSV4_CHECK(req.max_tokens >= 1, "max_tokens must be >= 1, got ", req.max_tokens);
  for (const auto& s : req.stop) DSV4_CHECK(!s.empty(), "stop strings must not be empty");
  DSV4_CHECK(req.spec == SpecMode::off || req.sampling.temperature == 0, "speculative decoding (", spec_mode_name(req.spec),
             ") is greedy only for now: use temperature 0, or --spec off");
}

Generation::Generation(Conversation& conv, GenerateRequest req)
    : conv_(conv), req_(std::move(req)), sampler_(req_.sampling), dec_(conv.engine().tokenizer()) {
  validate(req_);
  for (const auto& s : req_.stop) max_stop_ = std::max(max_stop_, s.size());
  if (req_.forced_text) forced_ = conv.engine().tokenizer().encode(*req_.forced_text);
  r_.prompt_tokens = static_cast<int>(req_.prompt.size());
  r_.finish = FinishReason::length;
  t0_ = std::chrono::steady_clock::now();
}

void Generation::cancel() { cancel_ = true; }

bool Generation::stream(size_t upto) {
  if (upto <= emitted_) return true;
  const bool go = !req_.on_text || req_.on_text(r_.text.substr(emitted_, upto - emitted_));
  emitted_ = upto;
  return go;
}

void Generation::finish(FinishReason why, bool hit_stop_string) {
  r_.finish = why;
  if (!hit_stop_string) r_.text += dec_.flush();  // bytes after a stop string are dropped
  if (why != FinishReason::cancelled) stream(r_.text.size());
  r_.decode_seconds = seconds_since(t0_);
  finished_ = true;
}

bool Generation::step() {
  if (req_.spec != SpecMode::off) return spec_step();
  const std::span<const int> in = next_input(kPrefillChunk);
  if (in.empty()) return true;
  const SessionStep st{&conv_.session(), in};
  fed(std::move(conv_.engine().forward(std::span<const SessionStep>(&st, 1)).front()));
  return false;
}

std::span<const int> Generation::next_input(size_t max_prefill) {
  DSV4_CHECK(pending_.empty(), "next_input() called again before fed()");
  DSV4_CHECK(max_prefill >= 1, "a prefill chunk of 0 tokens");
  if (finished_) return {};
  if (cancel_) {
    finish(FinishReason::cancelled, false);
    return {};
  }
  if (!started_) {  // the first step decides what the cache already holds
    started_ = true;
    if (!conv_.continues_with(req_.prompt)) conv_.reset();
    prefilled_ = conv_.tokens().size();
    r_.reused_tokens = static_cast<int>(prefilled_);
  }
  if (prefilled_ < req_.prompt.size()) {  // one prefill chunk
    const size_t n = std::min(max_prefill, req_.prompt.size() - prefilled_);
    pending_ = std::span<const int>(req_.prompt).subspan(prefilled_, n);
    return pending_;
  }
  if (!sample_next()) return {};
  pending_ = sampled_;
  return pending_;
}

void Generation::fed(std::vector<float> logits) {
  DSV4_CHECK(!pending_.empty(), "fed() without next_input()");
  conv_.fed(pending_);
  logits_ = std::move(logits);
  if (prefilled_ < req_.prompt.size()) {
    prefilled_ += pending_.size();
    if (req_.on_prefill) req_.on_prefill(prefilled_, req_.prompt.size());
    if (prefilled_ == req_.prompt.size()) {
      r_.prefill_seconds = seconds_since(t0_);
      t0_ = std::chrono::steady_clock::now();
    }
  }
  pending_ = {};
}

bool Generation::sample_next() {
  const Engine& e = conv_.engine();
  const size_t i = r_.tokens.size();
  // Only ids the tokenizer can decode are sampled: a checkpoint's vocabulary may be padded past it.
  const size_t n_ids = std::min(logits_.size(), static_cast<size_t>(e.tokenizer().vocab_size()));
  int tok = req_.forced_text ? (i < forced_.size() ? forced_[i] : e.eos_id())
                             : sampler_.sample(std::span<const float>(logits_).first(n_ids));
  // Model-parallel ranks in lockstep take rank 0's choice (a leading rank 0 samples alone).
  if (!e.leading()) Comm::get().broadcast(std::span<int>(&tok, 1));
  return take(tok);
}

bool Generation::take(int tok) {
  const Engine& e = conv_.engine();
  if (req_.stop_at_eos && tok == e.eos_id()) {
    r_.hit_eos = true;
    finish(FinishReason::stop, false);
    return false;
  }
  r_.tokens.push_back(tok);
  r_.text += dec_.push(tok);
  // A stop string ends the text where it starts.
  bool stopped = false;
  const size_t from = emitted_ > max_stop_ ? emitted_ - max_stop_ : 0;
  for (const auto& s : req_.stop) {
    const size_t at = r_.text.find(s, from);
    if (at != std::string::npos) {
      r_.text.resize(at);
      stopped = true;
    }
  }
  if (stopped) {
    finish(FinishReason::stop, true);
    return false;
  }
  // Hold back a tail that could still grow into a stop string.
  size_t hold = 0;
  for (const auto& s : req_.stop)
    for (size_t k = std::min(s.size() - 1, r_.text.size()); k > hold; --k)
      if (r_.text.compare(r_.text.size() - k, k, s, 0, k) == 0) {
        hold = k;
        break;
      }
  if (!stream(r_.text.size() - hold)) {
    finish(FinishReason::cancelled, false);
    return false;
  }
  if (r_.tokens.size() >= static_cast<size_t>(req_.max_tokens)) {
    finish(FinishReason::length, false);
    return false;
  }
  sampled_[0] = tok;
  return true;
}

bool Generation::spec_step() {
  if (finished_) return true;
  if (cancel_) {
    finish(FinishReason::cancelled, false);
    return true;
  }
  const Engine& e = conv_.engine();
  if (!started_) {
    started_ = true;
    DSV4_CHECK(!e.leading() && Comm::get().world() == 1, "speculative decoding under mpirun is not supported yet");
    const int n_ids = std::min(e.model().config().vocab_size, e.tokenizer().vocab_size());
    spec_ = std::make_unique<GreedyDecoder>(e.model(), req_.spec, req_.draft, n_ids);
    conv_.reset();
    spec_->prefill(conv_.session(), req_.prompt);
    conv_.fed(req_.prompt);
    prefilled_ = req_.prompt.size();
    if (req_.on_prefill) req_.on_prefill(prefilled_, prefilled_);
    r_.prefill_seconds = seconds_since(t0_);
    t0_ = std::chrono::steady_clock::now();
    if (!take(spec_->first().tokens.front())) return true;
    return false;
  }
  const int fed_first = sampled_[0];  // the last token taken, which this pass feeds
  const GreedyDecoder::Chosen c = spec_->step(conv_.session());
  r_.spec = spec_->stats();
  // The session took the last token and every chosen one but the newest.
  conv_.fed(std::span<const int>(&fed_first, 1));
  conv_.fed(std::span<const int>(c.tokens).first(c.tokens.size() - 1));
  for (const int tok : c.tokens)
    if (!take(tok)) return true;
  return false;
}

GenerateResult generate(Conversation& conv, const GenerateRequest& req) {
  Generation g(conv, req);
  while (!g.step()) {
  }
  return g.result();
}

}  // namespace dsv4
