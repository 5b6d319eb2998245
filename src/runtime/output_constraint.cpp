#include "runtime/output_constraint.h"

#include <algorithm>
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
  // Every id the trie holds, even where the logits row is shorter (a checkpoint smaller than
  // its tokenizer): those ids are never drawn.
  allowed_.assign(std::max(logits.size(), static_cast<size_t>(trie_.vocab_size())), 0);
  trie_.allowed(matcher_, allowed_);
  if (eos_id_ >= 0 && static_cast<size_t>(eos_id_) < logits.size()) allowed_[eos_id_] = matcher_.can_end();
  bool any = false;
  for (size_t i = 0; i < logits.size(); ++i) {
    if (!allowed_[i]) logits[i] = -INFINITY;
    any = any || (allowed_[i] && logits[i] != -INFINITY);
  }
  DSV4_CHECK(any, "constrained decoding: no token of the vocabulary can continue the answer");
}

bool OutputConstraint::allows(int token) const {
  if (answering()) return token >= 0 && static_cast<size_t>(token) < allowed_.size() && allowed_[token];
  if (token == eos_id_) return false;
  if (token == think_end_) return true;
  MarkerWindow w = think_markers_;
  return w.push(tokenizer_.token_bytes(token));
}

void OutputConstraint::took(int token) {
  if (!answering()) {
    if (token == think_end_) {
      think_end_ = -1;
    } else {
      DSV4_CHECK(think_markers_.push(tokenizer_.token_bytes(token)), "constrained decoding: token ", token,
                 " spells a chat-format marker in the reasoning");
    }
    return;
  }
  if (token == eos_id_) return;
  DSV4_CHECK(!tokenizer_.is_added(token) && matcher_.feed(tokenizer_.token_bytes(token)),
             "constrained decoding: token ", token, " does not continue the answer");
}

}  // namespace dsv4
