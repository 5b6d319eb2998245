// The chat format's markers as text: what chat::StreamParser acts on wherever it appears
// (chat/stream.cpp's stops: "<think>", "</think>", the special tokens' "<｜", "</｜" and DSML's
// "｜DSML"). A constrained answer or reasoning must never spell one: the parser would cut the
// text there, end the reasoning, or read a tool call, and the client would not get the
// document that was decoded. MarkerWindow follows the last 8 bytes of a text and refuses the
// byte that would complete a marker.
#pragma once

#include <cstdint>
#include <string_view>

namespace dsv4 {

class MarkerWindow {
 public:
  bool push(uint8_t b);  // false: b would complete a marker (the window is then unchanged)
  bool push(std::string_view bytes) {
    for (const char c : bytes)
      if (!push(static_cast<uint8_t>(c))) return false;
    return true;
  }
  bool pending() const;  // the text ends with part of a marker
  static bool contains_marker(std::string_view text);

 private:
  uint64_t tail_ = 0;  // the last 8 bytes, the latest in the low byte
};

}  // namespace dsv4
