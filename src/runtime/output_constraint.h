// Constrained decoding of a request's answer (response_format json_object / json_schema): before
// each draw, the tokens that cannot continue a valid document get a logit of -inf, so whatever
// the sampler picks keeps the answer a prefix of one, and the end-of-sentence token is allowed
// only once it is whole. The output therefore parses and validates when it ends by itself; a
// generation cut by max_tokens is the caller's to report (finish reason "length").
//
// In thinking mode the reasoning is free text up to the "</think>" token (the end-of-sentence
// token is held back there, so an answer always follows); the answer is constrained from the
// token after it. Ordinary tokens that would spell "</think>" or another chat-format marker
// (grammar/chat_markers.h) as text are refused too: the chat parser would end the reasoning
// there (or cut it), and what followed would not be constrained.
#pragma once

#include <memory>
#include <span>
#include <vector>

#include "grammar/chat_markers.h"
#include "grammar/json_matcher.h"
#include "grammar/vocab_trie.h"

namespace dsv4 {

class OutputConstraint {
 public:
  // think_end: the "</think>" token when the output starts with reasoning, else -1.
  OutputConstraint(std::shared_ptr<const JsonSchema> schema, const VocabTrie& trie, const Tokenizer& tokenizer,
                   int eos_id, int think_end);
  // logits: [vocab_size] (the tokenizer's ids); those that cannot come become -inf. Throws
  // Error when none can (a vocabulary without the bytes the schema needs).
  void apply(std::span<float> logits);
  // Whether token may come next: in the answer, what apply() allowed; in the reasoning,
  // anything but the end and text completing a chat-format marker (checked for the token
  // drawn, as apply() cannot afford it for every token; Generation draws again without a
  // refused one).
  bool allows(int token) const;
  void took(int token);  // the token drawn (one allows())
  bool answering() const { return think_end_ < 0; }

 private:
  std::shared_ptr<const JsonSchema> schema_;  // the matcher's nodes live here
  const VocabTrie& trie_;
  const Tokenizer& tokenizer_;
  JsonMatcher matcher_;
  int eos_id_, think_end_;
  MarkerWindow think_markers_;  // the reasoning's text (chat_markers.h)
  std::vector<uint8_t> allowed_;
};

}  // namespace dsv4
