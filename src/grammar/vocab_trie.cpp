#include "grammar/vocab_trie.h"

#include <algorithm>
#include <map>
#include <memory>
#include <string>

namespace dsv4 {

VocabTrie::VocabTrie(const Tokenizer& t) : vocab_size_(t.vocab_size()) {
  // Built as a tree of maps, then laid out breadth first so each node's children are consecutive.
  struct Build {
    std::map<uint8_t, std::unique_ptr<Build>> children;
    int token = -1;
  };
  Build root;
  for (int id = 0; id < vocab_size_; ++id) {
    if (t.is_added(id)) continue;
    const std::string bytes = t.token_bytes(id);
    if (bytes.empty()) continue;
    depth_ = std::max(depth_, static_cast<int>(bytes.size()));
    Build* n = &root;
    for (const char c : bytes) {
      auto& child = n->children[static_cast<uint8_t>(c)];
      if (!child) child = std::make_unique<Build>();
      n = child.get();
    }
    if (n->token < 0) n->token = id;
    else same_bytes_.emplace_back(n->token, id);
  }
  std::vector<const Build*> order = {&root};
  nodes_.push_back(Node{});
  for (size_t i = 0; i < order.size(); ++i) {
    nodes_[i].first_child = static_cast<uint32_t>(nodes_.size());
    nodes_[i].n_children = static_cast<uint32_t>(order[i]->children.size());
    for (const auto& [byte, child] : order[i]->children) {
      Node n;
      n.byte = byte;
      n.token = child->token;
      nodes_.push_back(n);
      order.push_back(child.get());
    }
  }
}

void VocabTrie::allowed(const JsonMatcher& m, std::vector<uint8_t>& allowed) const {
  // Depth-first, one matcher per depth: states[d + 1] is states[d] after the edge's byte.
  std::vector<JsonMatcher> states(depth_ + 1, m);
  struct Pending {
    uint32_t node;
    int depth;  // of the node's parent
  };
  std::vector<Pending> todo;
  for (uint32_t c = 0; c < nodes_[0].n_children; ++c) todo.push_back({nodes_[0].first_child + c, 0});
  while (!todo.empty()) {
    const Pending p = todo.back();
    todo.pop_back();
    const Node& n = nodes_[p.node];
    JsonMatcher& s = states[p.depth + 1];
    s = states[p.depth];
    if (!s.feed(n.byte)) continue;
    if (n.token >= 0) allowed[n.token] = 1;
    for (uint32_t c = 0; c < n.n_children; ++c) todo.push_back({n.first_child + c, p.depth + 1});
  }
  for (const auto& [token, other] : same_bytes_)
    if (allowed[token]) allowed[other] = 1;
}

}  // namespace dsv4
