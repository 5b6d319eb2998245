// Gutenberg's wrapped lines back to paragraphs (see gutenberg.h).
#include "train/gutenberg.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <sstream>

#include "core/check.h"
#include "tokenizer/utf8.h"

namespace dsv4 {

namespace {

// The line with '_' dropped, tabs and '\r' as spaces, runs of spaces as one, no space at the ends.
std::string clean(const std::string& line) {
  std::string out;
  for (char ch : line) {
    if (ch == '_') continue;
    if (ch == '\t' || ch == '\r') ch = ' ';
    if (ch == ' ' && (out.empty() || out.back() == ' ')) continue;
    out += ch;
  }
  if (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

bool wrapped_prose(const std::vector<std::string>& lines) {
  if (lines.size() < 2) return false;
  const bool goes_on = std::any_of(lines.begin() + 1, lines.end(),
                                   [](const std::string& l) { return std::islower(static_cast<unsigned char>(l[0])); });
  size_t chars = 0;
  for (size_t i = 0; i + 1 < lines.size(); ++i) chars += lines[i].size();
  return goes_on && chars >= kProseLine * (lines.size() - 1);
}

std::string latin1_to_utf8(const std::string& s) {
  std::string out;
  for (unsigned char ch : s) utf8_append(out, ch);
  return out;
}

}  // namespace

std::string gutenberg_to_text(const std::string& raw) {
  std::istringstream in(utf8_invalid_at(raw) == std::string_view::npos ? raw : latin1_to_utf8(raw));
  std::string line, out;
  std::vector<std::string> paragraph;  // its lines, cleaned
  auto flush = [&] {
    if (paragraph.empty()) return;
    const bool prose = wrapped_prose(paragraph);
    for (size_t i = 0; i < paragraph.size(); ++i) out += paragraph[i] + (prose && i + 1 < paragraph.size() ? " " : "\n");
    paragraph.clear();
  };
  while (std::getline(in, line)) {
    std::string c = clean(line);
    if (c.empty()) {
      flush();
      continue;
    }
    paragraph.push_back(std::move(c));
  }
  flush();
  return out;
}

std::vector<std::string> gutenberg_files(const std::string& dir) {
  DSV4_CHECK(std::filesystem::is_directory(dir), dir, ": not a directory");
  std::vector<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    if (e.is_regular_file() && e.path().extension() == ".txt") files.push_back(e.path().string());
  std::sort(files.begin(), files.end());
  DSV4_CHECK(!files.empty(), dir, ": no Gutenberg books (*.txt)");
  return files;
}

}  // namespace dsv4
