#include "runtime/output_constraint.h"

#include <cmath>

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

void OutputConstraint::took(int token) {
  if (!answering()) {
    if (token == think_end_) think_end_ = -1;
    return;
  }
  if (token == eos_id_) return;
  DSV4_CHECK(!tokenizer_.is_added(token) && matcher_.feed(tokenizer_.token_bytes(token)),
             "constrained decoding: token ", token, " does not continue the answer");
}

}  // namespace dsv4
