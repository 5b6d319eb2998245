// The tokenizer's vocabulary as a byte trie, for constrained decoding: the tokens a matcher
// allows next are found by one walk of the trie that copies the matcher down each edge and
// prunes a subtree at the first byte it refuses, so tokens sharing a prefix share its work.
// Added (special) tokens are not in the trie: whether they may come is the caller's decision.
//
// Inside a free string (JsonMatcher::in_free_string) nearly every token is allowed, so the
// walk would visit the whole trie. A subtree whose every path is plain string content from a
// character boundary (valid UTF-8, no quote, backslash or control byte, and neither '<' nor
// 0xEF, which start the chat markers of chat_markers.h) is marked allowed as a range of tokens
// instead.
#pragma once

#include <cstdint>
#include <vector>

#include "grammar/json_matcher.h"
#include "tokenizer/tokenizer.h"

namespace dsv4 {

class VocabTrie {
 public:
  explicit VocabTrie(const Tokenizer& t);
  int vocab_size() const { return vocab_size_; }

  // allowed[id] = 1 for each token whose bytes m can take; other entries are left alone.
  void allowed(const JsonMatcher& m, std::vector<uint8_t>& allowed) const;

 private:
  struct Node {
    uint32_t first_child = 0, n_children = 0;  // into nodes_, consecutive, sorted by byte
    uint8_t byte = 0;
    int32_t token = -1;  // the token these bytes spell, -1: none
    bool plain = false;  // every path from here is plain string content from a character boundary
    uint32_t tokens_begin = 0, tokens_end = 0;  // the subtree's tokens in by_subtree_
  };
  void mark_subtree(const Node& n, std::vector<uint8_t>& allowed) const;
  std::vector<Node> nodes_;  // nodes_[0] is the root (no bytes)
  std::vector<int32_t> by_subtree_;  // token ids in depth-first order: a subtree's are consecutive
  std::vector<std::pair<int32_t, int32_t>> same_bytes_;  // (token, other token spelled the same)
  int vocab_size_ = 0;
  int depth_ = 0;  // the longest token, in bytes
};

}  // namespace dsv4
