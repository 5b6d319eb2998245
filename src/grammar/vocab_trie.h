// The tokenizer's vocabulary as a byte trie, for constrained decoding: the tokens a matcher
// allows next are found by one walk of the trie that copies the matcher down each edge and
// prunes a subtree at the first byte it refuses, so tokens sharing a prefix share its work.
// Added (special) tokens are not in the trie: whether they may come is the caller's decision.
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
  };
  std::vector<Node> nodes_;  // nodes_[0] is the root (no bytes)
  std::vector<std::pair<int32_t, int32_t>> same_bytes_;  // (token, other token spelled the same)
  int vocab_size_ = 0;
  int depth_ = 0;  // the longest token, in bytes
};

}  // namespace dsv4
