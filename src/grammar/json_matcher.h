// A byte-level pushdown matcher for JSON text of a compiled schema (json_schema.h): feed() takes
// one byte and says whether the text so far can still become a valid document; can_end() says
// whether it is one. Constrained decoding copies a matcher per trie edge (vocab_trie.h), so the
// state is a small stack of plain frames.
//
// It accepts exactly: optional whitespace, one value of the schema, optional whitespace; strings
// in valid UTF-8 without raw control characters, escapes of JSON's set and \uXXXX outside the
// surrogates; numbers in JSON's grammar with at most JsonSchema::kMaxDigits digits per part
// (two in an exponent).
// A gap of whitespace holds at most kMaxWhitespace bytes and one line break, so a model cannot
// loop on newlines (small models at temperature 1 otherwise fill their answer with them). No
// string spells a chat-format marker (chat_markers.h).
#pragma once

#include <cstdint>
#include <vector>

#include "grammar/chat_markers.h"
#include "grammar/json_schema.h"

namespace dsv4 {

class JsonMatcher {
 public:
  explicit JsonMatcher(const JsonSchema& schema);
  bool feed(uint8_t b);  // false: b cannot come next (the state is then unspecified)
  bool feed(std::string_view bytes) {
    for (const char c : bytes)
      if (!feed(static_cast<uint8_t>(c))) return false;
    return true;
  }
  bool can_end() const;  // the bytes so far are a whole document
  // Inside a string of no length bound, at a character boundary, not in an escape and not in
  // a marker's first bytes: any plain string content (vocab_trie.h's fast path) can come next.
  bool in_free_string() const;

  static constexpr int kMaxWhitespace = 24;
  static constexpr int kMaxDepth = 64;  // nesting of the document

 private:
  // One open value (or the document itself, at the bottom).
  struct Frame {
    const SchemaNode* node = nullptr;
    uint8_t state = 0;
    uint8_t utf8_left = 0;           // continuation bytes still due in a string
    uint8_t utf8_lo = 0x80, utf8_hi = 0xBF;  // the range of the next continuation byte
    uint8_t digits = 0;              // digits of the current number part, hex digits of \u
    int32_t count = 0;               // characters of a string, items of an array, key index
    int32_t pos = 0;                 // bytes matched of a key or literal
    uint64_t set = 0;                // object: keys used; key / literal: candidates alive
  };
  static constexpr uint8_t kRootBefore = 0, kRootAfter = 1;

  bool value_start(const SchemaNode* n, uint8_t b);  // b opens a value of n: pushes its frame
  bool value_done();                                 // the top frame's value ended: pop it, tell the parent
  bool step_object(Frame& f, uint8_t b);
  bool step_array(Frame& f, uint8_t b);
  bool step_string(Frame& f, uint8_t b);
  bool step_number(Frame& f, uint8_t b, bool& ended);
  bool step_literals(Frame& f, uint8_t b, bool& ended);
  bool step_key(Frame& f, uint8_t b);
  // One byte of a string body (strings and free keys); closed: it was the closing quote.
  bool string_byte(Frame& f, uint8_t b, bool& closed, int max_length);
  bool space(uint8_t b);

  std::vector<Frame> stack_;
  MarkerWindow markers_;  // over every byte (no marker can span a string's quotes)
  int ws_run_ = 0;        // whitespace bytes in the current gap
  uint8_t ws_breaks_ = 0;  // '\n' (1) and '\r' (2) seen in it
};

}  // namespace dsv4
