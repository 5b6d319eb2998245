// A compiled PCRE2 pattern (UTF + Unicode properties, JIT when available) that lists the
// non-overlapping matches in a string, as the tokenizer's Split pre-tokenizers need.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace dsv4 {

class Regex {
 public:
  explicit Regex(const std::string& pattern);  // throws Error with PCRE2's message and offset
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // [begin, end) byte ranges of successive matches in s (s must be valid UTF-8).
  void find_all(std::string_view s, std::vector<std::pair<size_t, size_t>>& out) const;

 private:
  struct Impl;
  Impl* impl_;
};

}  // namespace dsv4
