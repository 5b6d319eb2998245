// Engine loading, conversation cache reuse and the generation loop.
#include "runtime/engine.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <iostream>

#include "chat/tokens.h"
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

std::vector<std::vector<float>> Engine::forward(std::span<const SessionStep> steps, ForwardTrace* trace,
                                                std::span<const StepRole> roles) const {
  return leader_ ? leader_->forward(steps, roles, trace) : model_->forward(steps, nullptr, trace);
}

void Engine::start_drafter(const Session& s, const DrafterStart& d) const {
  if (leader_) leader_->start_drafter(s, d);
}

void Engine::lead() {
  if (Comm::get().distributed()) leader_ = std::make_unique<Leader>(*model_);
}

void Engine::follow() const { dsv4::follow(*model_); }

void Engine::stop_followers() const {
  if (leader_) leader_->stop();
}

void Engine::enable_prefix_cache(size_t ram, const std::string& dir, size_t disk) {
  prefix_cache_.reset();  // its writes finish first
  DSV4_CHECK(dir.empty() || ram > 0, "a prefix cache on disk (", dir, ") needs some RAM for it too");
  if (ram == 0 || Comm::get().distributed()) return;
  prefix_cache_ = std::make_unique<PrefixCache>(ram, PrefixCache::snapshot_unit(model_->config()));
  if (!dir.empty())
    prefix_cache_->attach_disk(dir, disk, *model_, snapshot_fingerprint(),
                               [](const std::string& m) { std::cerr << m << std::endl; });
}

uint64_t Engine::snapshot_fingerprint() const {
  std::call_once(fingerprint_once_, [this] { fingerprint_ = dsv4::snapshot_fingerprint(*model_); });
  return fingerprint_;
}

const VocabTrie& Engine::vocab_trie() const {
  std::call_once(trie_once_, [this] { trie_ = std::make_unique<VocabTrie>(*tokenizer_); });
  return *trie_;
}

Conversation::Conversation(const Engine& e) : e_(e), session_(e.new_session()) {}

void Conversation::reset() {
  session_ = e_.new_session();
  fed_.clear();
  drafter_.reset();
}

SpecDecoder& Conversation::drafter(SpecMode mode, int draft, const SamplingParams& sampling) {
  // Only ids the tokenizer can decode are chosen: a checkpoint's vocabulary may be padded past it.
  const int n_ids = std::min(e_.model().config().vocab_size, e_.tokenizer().vocab_size());
  const bool restart = drafter_ && drafter_->mode() == mode && drafter_->follows(session_);
  if (restart) {
    drafter_->restart(draft, sampling);
  } else {
    reset();
    drafter_ = std::make_unique<SpecDecoder>(e_.model(), mode, draft, n_ids, sampling);
  }
  e_.start_drafter(session_, {restart, mode, draft, n_ids, sampling});  // the followers' mirror too
  return *drafter_;
}

Snapshot Conversation::saved() const {
  DSV4_CHECK(!e_.leading(), "saving a conversation is not supported under mpirun yet");
  Snapshot s;
  s.mode = drafter_ && drafter_->follows(session_) ? drafter_->mode() : SpecMode::off;
  s.tokens = fed_;
  set_caches(s.session, session_);
  if (s.mode == SpecMode::dspark) s.dspark = *drafter_->dspark_context();
  return s;
}

void Conversation::resume(Snapshot s) {
  DSV4_CHECK(!e_.leading(), "resuming a conversation is not supported under mpirun yet");
  DSV4_CHECK(s.tokens.size() == static_cast<size_t>(s.session.pos), "a saved conversation of ", s.tokens.size(),
             " tokens whose session is at position ", s.session.pos);
  reset();
  if (s.mode != SpecMode::off) {
    const ModelConfig& c = e_.model().config();
    const int n_ids = std::min(c.vocab_size, e_.tokenizer().vocab_size());
    auto d = std::make_unique<SpecDecoder>(e_.model(), s.mode, default_draft(c, s.mode), n_ids, SamplingParams{});
    if (DsparkState* ctx = d->dspark_context()) {
      DSV4_CHECK(same_layout(s.dspark, *ctx) && s.dspark.pos == s.session.pos,
                 "a saved conversation whose DSpark rings are not the drafter's");
      *ctx = std::move(s.dspark);
    }
    drafter_ = std::move(d);
  }
  set_caches(session_, std::move(s.session));
  fed_ = std::move(s.tokens);
}

std::vector<float> Conversation::prefill(const std::vector<int>& prompt,
                                         const std::function<void(size_t, size_t)>& progress) {
  DSV4_CHECK(!prompt.empty(), "empty prompt");
  start(prompt);
  std::vector<float> logits;
  const size_t total = prompt.size();
  for (size_t i = fed_.size(); i < total;) {
    size_t n = std::min(kPrefillChunk, total - i);
    if (const size_t at = next_snapshot(total); at > 0) n = std::min(n, at - i);
    logits = feed(std::span<const int>(prompt).subspan(i, n));
    snapshot(prompt);
    i += n;
    if (progress) progress(i, total);
  }
  return logits;
}

SpecDecoder* Conversation::start(const std::vector<int>& prompt, SpecMode mode, int draft,
                                 const SamplingParams& sampling) {
  if (!continues_with(prompt)) reset();
  mode_ = mode;
  SpecDecoder* d = mode != SpecMode::off ? &drafter(mode, draft, sampling) : nullptr;
  if (PrefixCache* cache = e_.prefix_cache()) {
    if (cache->restore(prompt, fed_.size(), session_, mode, d ? d->dspark_context() : nullptr) > 0) {
      fed_.assign(prompt.begin(), prompt.begin() + session_.pos);
      if (!d) drafter_.reset();  // it followed the session as it was
    }
  }
  reused_ = fed_.size();
  return d;
}

size_t Conversation::next_snapshot(size_t prompt_len) const {
  const PrefixCache* cache = e_.prefix_cache();
  return cache ? cache->next_wanted(fed_.size(), prompt_len, mode_) : 0;
}

void Conversation::snapshot(std::span<const int> prompt) {
  PrefixCache* cache = e_.prefix_cache();
  if (cache && cache->wanted(fed_.size(), prompt.size(), mode_))
    cache->store(prompt, session_, mode_, mode_ == SpecMode::dspark ? drafter_->dspark_context() : nullptr);
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
  const LogitAdjust& a = req.adjust;
  DSV4_CHECK(a.presence >= -2 && a.presence <= 2, "presence_penalty must be in [-2, 2], got ", a.presence);
  DSV4_CHECK(a.frequency >= -2 && a.frequency <= 2, "frequency_penalty must be in [-2, 2], got ", a.frequency);
  DSV4_CHECK(a.repetition > 0 && a.repetition <= 100, "repetition_penalty must be in (0, 100], got ", a.repetition);
  for (const auto& [t, b] : a.bias)
    DSV4_CHECK(t >= 0 && b >= -100 && b <= 100, "logit_bias: token ", t, " bias ", b, " (ids >= 0, biases in [-100, 100])");
  DSV4_CHECK(req.logprobs >= -1 && req.logprobs <= kMaxTopLogprobs, "top logprobs must be in [0, ", kMaxTopLogprobs,
             "], got ", req.logprobs);
}

Generation::Generation(Conversation& conv, GenerateRequest req)
    : conv_(conv), req_(std::move(req)), sampler_(req_.sampling), dec_(conv.engine().tokenizer()) {
  validate(req_);
  for (const auto& s : req_.stop) max_stop_ = std::max(max_stop_, s.size());
  if (req_.forced_text) forced_ = conv.engine().tokenizer().encode(*req_.forced_text);
  if (req_.adjust.active()) adjuster_.emplace(req_.adjust, req_.prompt);
  if (req_.format && !req_.forced_text) {
    const Engine& e = conv.engine();
    int think_end = -1;
    if (req_.answer_after_think) {
      think_end = e.tokenizer().special_id(std::string(chat::think_end));
      DSV4_CHECK(think_end >= 0, "a constrained answer after reasoning needs the tokenizer's ", chat::think_end, " token");
    }
    constraint_.emplace(req_.format, e.vocab_trie(), e.tokenizer(), e.eos_id(), think_end);
  }
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
  const std::span<const int> in = next_input(kPrefillChunk);
  if (in.empty()) return true;
  const SessionStep st{&conv_.session(), in};
  ForwardTrace tr;
  prepare(tr);
  const StepRole r = role();
  fed(std::move(conv_.engine()
                    .forward(std::span<const SessionStep>(&st, 1), needs_trace() ? &tr : nullptr,
                             std::span<const StepRole>(&r, 1))
                    .front()),
      &tr, 0);
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
    const SpecMode spec =
        req_.forced_text || adjuster_ || constraint_ || req_.logprobs >= 0 ? SpecMode::off : req_.spec;
    spec_ = conv_.start(req_.prompt, spec, req_.draft, req_.sampling);
    prefilled_ = conv_.tokens().size();
    r_.reused_tokens = static_cast<int>(prefilled_);
  }
  if (prefilled_ < req_.prompt.size()) {  // one prefill chunk, ending where a snapshot is due
    size_t n = std::min(max_prefill, req_.prompt.size() - prefilled_);
    if (const size_t at = conv_.next_snapshot(req_.prompt.size()); at > 0)
      n = std::min(n, at - prefilled_);
    if (req_.pause_before_last && prefilled_ + 1 < req_.prompt.size())
      n = std::min(n, req_.prompt.size() - 1 - prefilled_);
    pending_ = std::span<const int>(req_.prompt).subspan(prefilled_, n);
    return pending_;
  }
  if (spec_) {
    pending_ = spec_->begin_step(conv_.session());
    verify_rows_.assign(pending_.begin(), pending_.end());
    return pending_;
  }
  if (!sample_next()) return {};
  pending_ = sampled_;
  return pending_;
}

StepRole Generation::role() const {
  DSV4_CHECK(!pending_.empty(), "role() without next_input()");
  if (!spec_) return {};
  if (prefilled_ == req_.prompt.size()) return {StepRole::verify, -1};
  const size_t end = prefilled_ + pending_.size();
  return {StepRole::prefill, end < req_.prompt.size() ? req_.prompt[end] : -1};
}

void Generation::fed(std::vector<float> logits, const ForwardTrace* trace, int row0) {
  DSV4_CHECK(!pending_.empty(), "fed() without next_input()");
  DSV4_CHECK(!spec_ || trace, "a speculative generation's step without its trace");
  const std::span<const int> in = pending_;
  pending_ = {};
  if (spec_ && prefilled_ == req_.prompt.size()) {  // a verify step: the session keeps what was chosen
    const SpecDecoder::Chosen c = spec_->end_step(conv_.session(), *trace, row0);
    check_ranks_chose_alike(c.tokens);
    r_.spec = spec_->stats();
    conv_.fed(std::span<const int>(verify_rows_).first(c.tokens.size()));
    for (const int tok : c.tokens)
      if (!take(tok)) break;
    return;
  }
  conv_.fed(in);
  if (prefilled_ == req_.prompt.size()) {  // a decode step
    logits_ = std::move(logits);
    return;
  }
  prefilled_ += in.size();
  if (req_.on_prefill) req_.on_prefill(prefilled_, req_.prompt.size());
  const bool done = prefilled_ == req_.prompt.size();
  if (done) {
    r_.prefill_seconds = seconds_since(t0_);
    t0_ = std::chrono::steady_clock::now();
  }
  if (!spec_) {
    conv_.snapshot(req_.prompt);
    logits_ = std::move(logits);
    return;
  }
  const int first = spec_->prefilled(conv_.session(), in, *trace, row0, logits, done ? -1 : req_.prompt[prefilled_]);
  conv_.snapshot(req_.prompt);  // with what the drafter took
  if (!done) return;
  check_ranks_chose_alike(std::span<const int>(&first, 1));
  take(first);
}

bool Generation::sample_next() {
  const Engine& e = conv_.engine();
  const size_t i = r_.tokens.size();
  // Only ids the tokenizer can decode are sampled: a checkpoint's vocabulary may be padded past it.
  const size_t n_ids = std::min(logits_.size(), static_cast<size_t>(e.tokenizer().vocab_size()));
  const std::span<float> row = std::span<float>(logits_).first(n_ids);
  std::vector<float> model_row;  // the logprobs are the model's, before penalties and biases
  const bool changed = adjuster_ || constraint_;
  if (req_.logprobs >= 0 && changed) model_row.assign(row.begin(), row.end());
  if (adjuster_) adjuster_->apply(row);
  if (constraint_) constraint_->apply(row);
  int tok = req_.forced_text ? (i < forced_.size() ? forced_[i] : e.eos_id()) : sampler_.sample(row);
  // A token the constraint refuses only once drawn (reasoning that would spell "</think>") is
  // drawn again without it (with no top-k / top-p, the distribution of masking it first).
  while (constraint_ && !req_.forced_text && !constraint_->allows(tok)) {
    DSV4_CHECK(row[tok] != -INFINITY, "constrained decoding: no token can continue the reasoning");
    row[tok] = -INFINITY;
    tok = sampler_.sample(row);
  }
  // Model-parallel ranks in lockstep take rank 0's choice (a leading rank 0 samples alone),
  // before anything follows the token.
  if (!e.leading()) Comm::get().broadcast(std::span<int>(&tok, 1));
  if (adjuster_) adjuster_->took(tok);
  if (constraint_) constraint_->took(tok);
  if (req_.logprobs >= 0 && !(req_.stop_at_eos && tok == e.eos_id())) {
    r_.logprobs.push_back(token_logprob(changed ? std::span<const float>(model_row) : row, tok, req_.logprobs));
    if (req_.on_logprob) req_.on_logprob(r_.logprobs.back());
  }
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
      r_.text.resize(at);  // a later string found in what is left starts earlier
      r_.stop_string = s;
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

GenerateResult generate(Conversation& conv, const GenerateRequest& req) {
  Generation g(conv, req);
  while (!g.step()) {
  }
  return g.result();
}

}  // namespace dsv4
