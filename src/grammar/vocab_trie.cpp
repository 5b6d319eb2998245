#include "grammar/vocab_trie.h"

#include <algorithm>
#include <map>
#include <memory>
#include <string>

namespace dsv4 {

namespace {

// Where plain string content is in a UTF-8 character: 0 at a boundary, else the continuation
// bytes still due and their allowed range (json_matcher.cpp's string rules), as 8 states.
struct Utf8State {
  uint8_t left, lo, hi;
};
constexpr Utf8State kUtf8States[8] = {{0, 0x80, 0xBF}, {1, 0x80, 0xBF}, {2, 0x80, 0xBF}, {2, 0xA0, 0xBF},
                                      {2, 0x80, 0x9F}, {3, 0x80, 0xBF}, {3, 0x90, 0xBF}, {3, 0x80, 0x8F}};

// The state after byte b of plain content, or -1 where b cannot come.
int utf8_step(int state, uint8_t b) {
  const Utf8State s = kUtf8States[state];
  if (s.left) {
    if (b < s.lo || b > s.hi) return -1;
    return s.left == 1 ? 0 : s.left == 2 ? 1 : 2;
  }
  // '<' and 0xEF (the lead of "｜") start every chat marker: they are walked, never bulk-marked.
  if (b == '"' || b == '\\' || b < 0x20 || b == '<' || b == 0xEF) return -1;
  if (b < 0x80) return 0;
  if (b >= 0xC2 && b <= 0xDF) return 1;
  if (b == 0xE0) return 3;
  if ((b >= 0xE1 && b <= 0xEC) || b == 0xEE || b == 0xEF) return 2;
  if (b == 0xED) return 4;
  if (b == 0xF0) return 6;
  if (b >= 0xF1 && b <= 0xF3) return 5;
  if (b == 0xF4) return 7;
  return -1;
}

}  // namespace

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
  // Which subtrees are plain content from each UTF-8 state, children first (they come later
  // in breadth-first order): bit s of ok[i] for state s at node i's byte.
  std::vector<uint8_t> ok(nodes_.size(), 0);
  for (size_t i = nodes_.size(); i-- > 1;) {
    const Node& n = nodes_[i];
    for (int st = 0; st < 8; ++st) {
      const int next = utf8_step(st, n.byte);
      bool all = next >= 0;
      for (uint32_t c = 0; all && c < n.n_children; ++c) all = (ok[n.first_child + c] >> next) & 1;
      if (all) ok[i] |= uint8_t(1) << st;
    }
    nodes_[i].plain = ok[i] & 1;
  }
  // Each subtree's tokens as one range of by_subtree_: a depth-first numbering.
  struct Visit {
    uint32_t node;
    bool leaving;
  };
  std::vector<Visit> stack = {{0, false}};
  while (!stack.empty()) {
    const Visit v = stack.back();
    stack.pop_back();
    Node& n = nodes_[v.node];
    if (v.leaving) {
      n.tokens_end = static_cast<uint32_t>(by_subtree_.size());
      continue;
    }
    n.tokens_begin = static_cast<uint32_t>(by_subtree_.size());
    if (n.token >= 0) by_subtree_.push_back(n.token);
    stack.push_back({v.node, true});
    for (uint32_t c = n.n_children; c-- > 0;) stack.push_back({n.first_child + c, false});
  }
}


void VocabTrie::mark_subtree(const Node& n, std::vector<uint8_t>& allowed) const {
  for (uint32_t i = n.tokens_begin; i < n.tokens_end; ++i) allowed[by_subtree_[i]] = 1;
}

void VocabTrie::allowed(const JsonMatcher& m, std::vector<uint8_t>& allowed) const {
  // Depth-first, one matcher per depth: states[d + 1] is states[d] after the edge's byte.
  std::vector<JsonMatcher> states(depth_ + 1, m);
  struct Pending {
    uint32_t node;
    int depth;  // of the node's parent
  };
  std::vector<Pending> todo;
  // A node's children: walked, or marked whole where the state is a free string and their
  // subtree plain content.
  const auto children = [&](const Node& n, const JsonMatcher& at, int depth) {
    const bool free = at.in_free_string();
    for (uint32_t c = 0; c < n.n_children; ++c) {
      const Node& child = nodes_[n.first_child + c];
      if (free && child.plain) mark_subtree(child, allowed);
      else todo.push_back({n.first_child + c, depth});
    }
  };
  children(nodes_[0], m, 0);
  while (!todo.empty()) {
    const Pending p = todo.back();
    todo.pop_back();
    const Node& n = nodes_[p.node];
    JsonMatcher& s = states[p.depth + 1];
    s = states[p.depth];
    if (!s.feed(n.byte)) continue;
    if (n.token >= 0) allowed[n.token] = 1;
    children(n, s, p.depth + 1);
  }
  for (const auto& [token, other] : same_bytes_)
    if (allowed[token]) allowed[other] = 1;
}

}  // namespace dsv4
