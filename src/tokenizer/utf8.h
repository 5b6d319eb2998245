// UTF-8 helpers for the tokenizer: validation, code point iteration and the length of the
// longest prefix that ends on a character boundary (for streaming decode).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace dsv4 {

// Byte length of the sequence starting with lead byte b (1-4), or 0 if b cannot start one.
int utf8_seq_len(unsigned char b);

// Offset of the first invalid byte, or std::string_view::npos if s is valid UTF-8.
size_t utf8_invalid_at(std::string_view s);

// Longest prefix of s that does not end inside an incomplete (but so far valid) sequence.
size_t utf8_complete_prefix(std::string_view s);

void utf8_append(std::string& out, uint32_t cp);

// s with every byte that is not part of a valid sequence replaced by U+FFFD.
std::string utf8_sanitize(std::string_view s);

// Decodes the code point at s[i] (s must be valid there) and advances i.
uint32_t utf8_next(std::string_view s, size_t& i);

}  // namespace dsv4
