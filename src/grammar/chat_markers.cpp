#include "grammar/chat_markers.h"

#include <array>

namespace dsv4 {

namespace {

struct Marker {
  uint64_t bytes;  // the marker's bytes, its last in the low byte
  int size;
};

constexpr Marker marker(std::string_view s) {
  uint64_t v = 0;
  for (const char c : s) v = (v << 8) | static_cast<uint8_t>(c);
  return {v, static_cast<int>(s.size())};
}

constexpr std::array<Marker, 5> kMarkers = {marker("<think>"), marker("</think>"), marker("<｜"), marker("</｜"),
                                            marker("｜DSML")};

constexpr uint64_t low(int n) { return n >= 8 ? ~uint64_t{0} : (uint64_t{1} << (8 * n)) - 1; }

}  // namespace

bool MarkerWindow::push(uint8_t b) {
  const uint64_t next = (tail_ << 8) | b;
  for (const Marker& m : kMarkers)
    if ((next & low(m.size)) == m.bytes) return false;
  tail_ = next;
  return true;
}

bool MarkerWindow::pending() const {
  for (const Marker& m : kMarkers)
    for (int k = 1; k < m.size; ++k)  // the marker's first k bytes end the text
      if ((tail_ & low(k)) == (m.bytes >> (8 * (m.size - k)))) return true;
  return false;
}

bool MarkerWindow::contains_marker(std::string_view text) {
  MarkerWindow w;
  return !w.push(text);
}

}  // namespace dsv4
