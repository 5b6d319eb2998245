#include "runtime/output_constraint.h"

#include <cmath>

#include "chat/tokens.h"
#include "core/check.h"

namespace dsv4 {

OutputConstraint::OutputConstraint(std::shared_ptr<const JsonSchema> schema, const VocabTrie& trie,
                                   const Tokenizer& tokenizer, int eos_id, int think_end)
    : schema_(std::move(schema)), trie_(trie), tokenizer_(tokenizer), matcher_(*schema_), eos_id_(eos_id),
      think_end_(think_end) {}

void OutputConstraint::apply(std::span<float> logits) {
  if (!answering()) {  // reasoning: anything but the end
    if (eos_id_ >= 0 && static_cast<size_t>(eos_id_) < logits.size()) logits[eos_id_] = -INFINITY;
    return;
  }
  allowed_.assign(logits.size(), 0);
  trie_.allowed(matcher_, allowed_);
  if (eos_id_ >= 0 && static_cast<size_t>(eos_id_) < logits.size()) allowed_[eos_id_] = matcher_.can_end();
  bool any = false;
  for (size_t i = 0; i < logits.size(); ++i) {
    if (!allowed_[i]) logits[i] = -INFINITY;
    any = any || (allowed_[i] && logits[i] != -INFINITY);
  }
  DSV4_CHECK(any, "constrained decoding: no token of the vocabulary can continue the answer");
}

namespace {

// How much of "</think>" text ends with, having ended with `matched` of it before bytes (the
// string has no border, so a mismatch restarts at 0, or at 1 on its first byte).
size_t think_end_matched(size_t matched, std::string_view bytes, bool& whole) {
  const std::string_view end = chat::think_end;
  whole = false;
  for (const char c : bytes) {
    matched = c == end[matched] ? matched + 1 : c == end[0] ? 1 : 0;
    if (matched == end.size()) {
      whole = true;
      matched = 0;
    }
  }
  return matched;
}

}  // namespace

bool OutputConstraint::allows(int token) const {
  if (answering()) return token >= 0 && static_cast<size_t>(token) < allowed_.size() && allowed_[token];
  if (token == eos_id_) return false;
  if (token == think_end_) return true;
  bool whole = false;
  think_end_matched(think_text_, tokenizer_.token_bytes(token), whole);
  return !whole;
}

void OutputConstraint::took(int token) {
  if (!answering()) {
    if (token == think_end_) {
      think_end_ = -1;
    } else {
      bool whole = false;
      think_text_ = think_end_matched(think_text_, tokenizer_.token_bytes(token), whole);
      DSV4_CHECK(!whole, "constrained decoding: token ", token, " spells ", chat::think_end, " as text");
    }
    return;
  }
  if (token == eos_id_) return;
  DSV4_CHECK(!tokenizer_.is_added(token) && matcher_.feed(tokenizer_.token_bytes(token)),
             "constrained decoding: token ", token, " does not continue the answer");
}

}  // namespace dsv4
