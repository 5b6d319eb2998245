// Engine loading, conversation cache reuse and the generation loop.
#include "runtime/engine.h"

#include <chrono>
#include <filesystem>

#include "core/check.h"
#include "tokenizer/utf8.h"

namespace dsv4 {

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

constexpr size_t kPrefillChunk = 256;  // progress granularity; results do not depend on it

}  // namespace

Engine::Engine(const std::string& dir, std::function<void(const std::string&)> progress) {
  namespace fs = std::filesystem;
  if (progress) progress("loading weights from " + dir);
  model_ = std::make_unique<Model>(dir);
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
}

Conversation::Conversation(const Engine& e) : e_(e), session_(e.model().new_session()) {}

void Conversation::reset() {
  session_ = e_.model().new_session();
  fed_.clear();
}

std::vector<float> Conversation::prefill(const std::vector<int>& prompt,
                                         const std::function<void(size_t, size_t)>& progress) {
  DSV4_CHECK(!prompt.empty(), "empty prompt");
  const bool extends = prompt.size() > fed_.size() && std::equal(fed_.begin(), fed_.end(), prompt.begin());
  if (!extends) reset();
  reused_ = fed_.size();
  std::vector<float> logits;
  const size_t total = prompt.size();
  for (size_t i = fed_.size(); i < total; i += kPrefillChunk) {
    const size_t n = std::min(kPrefillChunk, total - i);
    logits = e_.model().forward(session_, std::span<const int>(prompt).subspan(i, n));
    fed_.insert(fed_.end(), prompt.begin() + static_cast<long>(i), prompt.begin() + static_cast<long>(i + n));
    if (progress) progress(i + n, total);
  }
  return logits;
}

std::vector<float> Conversation::feed(int token) {
  const int one[1] = {token};
  std::vector<float> logits = e_.model().forward(session_, one);
  fed_.push_back(token);
  return logits;
}

const char* finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::stop: return "stop";
    case FinishReason::length: return "length";
    case FinishReason::cancelled: return "cancelled";
  }
  return "?";
}

GenerateResult generate(Conversation& conv, const GenerateRequest& req) {
  req.sampling.validate();
  DSV4_CHECK(req.max_tokens >= 1, "max_tokens must be >= 1, got ", req.max_tokens);
  for (const auto& s : req.stop) DSV4_CHECK(!s.empty(), "stop strings must not be empty");
  const Engine& e = conv.engine();
  GenerateResult r;
  r.prompt_tokens = static_cast<int>(req.prompt.size());
  auto t0 = std::chrono::steady_clock::now();
  std::vector<float> logits = conv.prefill(req.prompt, req.on_prefill);
  r.reused_tokens = static_cast<int>(conv.last_reused());
  r.prefill_seconds = seconds_since(t0);
  t0 = std::chrono::steady_clock::now();

  std::vector<int> forced;
  if (req.forced_text) forced = e.tokenizer().encode(*req.forced_text);
  Sampler sampler(req.sampling);
  IncrementalDecoder dec(e.tokenizer());
  std::string text;     // final text so far (stop strings cut off)
  size_t emitted = 0;   // bytes of text already streamed
  size_t max_stop = 0;
  for (const auto& s : req.stop) max_stop = std::max(max_stop, s.size());
  r.finish = FinishReason::length;
  bool hit_stop_string = false;

  auto stream = [&](size_t upto) -> bool {
    if (upto <= emitted) return true;
    const bool go = !req.on_text || req.on_text(text.substr(emitted, upto - emitted));
    emitted = upto;
    return go;
  };

  for (int i = 0; i < req.max_tokens; ++i) {
    const int tok = req.forced_text ? (static_cast<size_t>(i) < forced.size() ? forced[i] : e.eos_id())
                                    : sampler.sample(logits);
    if (req.stop_at_eos && tok == e.eos_id()) {
      r.finish = FinishReason::stop;
      break;
    }
    r.tokens.push_back(tok);
    text += dec.push(tok);
    // A stop string ends the text where it starts.
    bool stopped = false;
    const size_t from = emitted > max_stop ? emitted - max_stop : 0;
    for (const auto& s : req.stop) {
      const size_t at = text.find(s, from);
      if (at != std::string::npos) {
        text.resize(at);
        stopped = true;
      }
    }
    if (stopped) {
      r.finish = FinishReason::stop;
      hit_stop_string = true;
      break;
    }
    // Hold back a tail that could still grow into a stop string.
    size_t hold = 0;
    for (const auto& s : req.stop)
      for (size_t k = std::min(s.size() - 1, text.size()); k > hold; --k)
        if (text.compare(text.size() - k, k, s, 0, k) == 0) {
          hold = k;
          break;
        }
    if (!stream(text.size() - hold)) {
      r.finish = FinishReason::cancelled;
      break;
    }
    if (i + 1 < req.max_tokens) logits = conv.feed(tok);
  }
  if (!hit_stop_string) text += dec.flush();  // bytes after a stop string are dropped
  if (r.finish != FinishReason::cancelled) stream(text.size());
  r.text = text;
  r.decode_seconds = seconds_since(t0);
  return r;
}

}  // namespace dsv4
