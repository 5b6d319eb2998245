// A Hugging Face tokenizer.json tokenizer of the kind DeepSeek ships: added / special tokens
// matched first (leftmost, longest), then the pre-tokenizer's Split regexes (each piece split
// by the next pattern, matches kept as pieces of their own), byte-level mapping, and BPE merges
// applied by rank. decode() maps ids back to bytes; IncrementalDecoder streams text without
// ever emitting half a UTF-8 character.
#pragma once

#include <memory>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace dsv4 {

class Regex;

class Tokenizer {
 public:
  static Tokenizer load(const std::string& path);  // tokenizer.json; throws Error naming the problem
  static Tokenizer from_json(const std::string& text, const std::string& where);
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // No BOS is added. Throws Error if text is not valid UTF-8.
  std::vector<int> encode(std::string_view text) const;
  // The bytes the ids stand for (may end inside a UTF-8 character). Throws on unknown ids.
  std::string decode(const std::vector<int>& ids) const;
  std::string token_bytes(int id) const;  // one token's bytes

  // The pieces the pre-tokenizer cuts text into (no added-token matching): BPE's input.
  // Error if text is not valid UTF-8.
  std::vector<std::string_view> pretokenize(std::string_view text) const;

  int vocab_size() const { return static_cast<int>(id_to_token_.size()); }
  // Raw bytes in the byte-level alphabet vocab and merges are written in (GPT-2's).
  static std::string byte_level_text(std::string_view raw);
  // The id of an added / special token by its text, or -1.
  int special_id(const std::string& content) const;
  bool is_added(int id) const { return id >= 0 && id < vocab_size() && is_added_[id]; }

 private:
  Tokenizer();
  void encode_piece(std::string_view piece, std::vector<int>& out) const;  // pre-tokenize + BPE
  std::vector<std::string_view> split_valid(std::string_view piece) const;  // pretokenize, UTF-8 known valid
  void bpe(std::string_view word, std::vector<int>& out) const;

  struct Added {
    std::string content;
    int id;
  };
  std::vector<std::unique_ptr<Regex>> splits_;      // pre-tokenizer Split patterns, in order
  std::unordered_map<std::string, int> vocab_;      // byte-level token string -> id
  std::vector<std::string> id_to_token_;            // id -> raw bytes of the token
  std::vector<bool> is_added_;
  std::unordered_map<uint64_t, std::pair<int, int>> merges_;  // (left id, right id) -> (rank, merged id)
  int byte_id_[256];                                // id of each single byte's token
  std::vector<Added> added_;                        // sorted by content
  std::unordered_map<std::string, int> added_ids_;
  std::vector<std::vector<int>> added_by_first_byte_;  // first byte -> indices into added_, longest first

  // Words repeat: BPE results of short words are cached (bounded; cleared when full).
  mutable std::unordered_map<std::string, std::vector<int>> cache_;
  mutable std::unique_ptr<std::shared_mutex> cache_mu_ = std::make_unique<std::shared_mutex>();
};

// Feeds ids, returns the text that became complete: valid UTF-8 only, characters never split,
// bytes that can never form a character replaced by U+FFFD.
class IncrementalDecoder {
 public:
  explicit IncrementalDecoder(const Tokenizer& t) : t_(t) {}
  std::string push(int id);
  std::string flush();  // whatever is left, invalid tail bytes replaced by U+FFFD

 private:
  const Tokenizer& t_;
  std::string pending_;
};

}  // namespace dsv4
