// UTF-8 per RFC 3629: no overlongs, no surrogates, nothing above U+10FFFF.
#include "tokenizer/utf8.h"

namespace dsv4 {

int utf8_seq_len(unsigned char b) {
  if (b < 0x80) return 1;
  if (b >= 0xC2 && b <= 0xDF) return 2;
  if (b >= 0xE0 && b <= 0xEF) return 3;
  if (b >= 0xF0 && b <= 0xF4) return 4;
  return 0;
}

namespace {

// Whether s[i..i+len) is a valid sequence (len from its lead byte); needs all bytes present.
bool valid_seq(std::string_view s, size_t i, int len) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[i + k]); };
  for (int k = 1; k < len; ++k)
    if ((b(k) & 0xC0) != 0x80) return false;
  if (len == 3) {
    if (b(0) == 0xE0 && b(1) < 0xA0) return false;  // overlong
    if (b(0) == 0xED && b(1) > 0x9F) return false;  // surrogates
  }
  if (len == 4) {
    if (b(0) == 0xF0 && b(1) < 0x90) return false;  // overlong
    if (b(0) == 0xF4 && b(1) > 0x8F) return false;  // above U+10FFFF
  }
  return true;
}

}  // namespace

size_t utf8_invalid_at(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const int len = utf8_seq_len(static_cast<unsigned char>(s[i]));
    if (len == 0 || i + len > s.size() || !valid_seq(s, i, len)) return i;
    i += len;
  }
  return std::string_view::npos;
}

std::string utf8_sanitize(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const int len = utf8_seq_len(static_cast<unsigned char>(s[i]));
    if (len > 0 && i + len <= s.size() && valid_seq(s, i, len)) {
      out.append(s.substr(i, len));
      i += len;
    } else {
      out += "\xEF\xBF\xBD";
      ++i;
    }
  }
  return out;
}

size_t utf8_complete_prefix(std::string_view s) {
  // Look back at most 3 bytes for a lead byte whose sequence is not complete yet.
  for (size_t back = 1; back <= 3 && back <= s.size(); ++back) {
    const unsigned char b = static_cast<unsigned char>(s[s.size() - back]);
    if ((b & 0xC0) == 0x80) continue;  // continuation byte: keep looking
    const int len = utf8_seq_len(b);
    if (len > static_cast<int>(back)) {
      // Incomplete: hold it back only if what is there so far is a valid start.
      for (size_t k = 1; k < back; ++k)
        if ((static_cast<unsigned char>(s[s.size() - back + k]) & 0xC0) != 0x80) return s.size();
      return s.size() - back;
    }
    return s.size();
  }
  return s.size();
}

void utf8_append(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

uint32_t utf8_next(std::string_view s, size_t& i) {
  const unsigned char b = static_cast<unsigned char>(s[i]);
  const int len = utf8_seq_len(b);
  uint32_t cp = len == 1 ? b : len == 2 ? (b & 0x1F) : len == 3 ? (b & 0x0F) : (b & 0x07);
  for (int k = 1; k < len; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  i += len < 1 ? 1 : len;
  return cp;
}

}  // namespace dsv4
