// Word/TAG tokens back to printed English: which tokens glue to their left or right neighbour.
#include "train/brown.h"

#include <algorithm>
#include <filesystem>
#include <regex>
#include <sstream>

#include "core/check.h"

namespace dsv4 {

namespace {

// "word/tag" -> word (the tag is after the last '/'; "1/2/cd" keeps "1/2").
std::string strip_tag(const std::string& token) {
  const size_t slash = token.rfind('/');
  return slash == std::string::npos || slash == 0 ? token : token.substr(0, slash);
}

bool attaches_left(const std::string& w) {  // no space before it
  static const char* const kinds[] = {".", ",", ";", ":", "?", "!", ")", "]", "''", "'", "n't", "'s", "'re", "'ve", "'ll", "'d", "'m"};
  return std::any_of(std::begin(kinds), std::end(kinds), [&](const char* k) { return w == k; });
}

bool attaches_right(const std::string& w) { return w == "``" || w == "(" || w == "["; }  // no space after it

}  // namespace

std::string brown_to_text(const std::string& tagged) {
  std::istringstream in(tagged);
  std::string line, out, paragraph;
  auto flush = [&] {
    if (!paragraph.empty()) out += paragraph + "\n";
    paragraph.clear();
  };
  while (std::getline(in, line)) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) {
      flush();
      continue;
    }
    std::istringstream words(line);
    std::string token;
    bool glue = paragraph.empty();  // no space before the next word
    while (words >> token) {
      std::string w = strip_tag(token);
      if (w.empty()) continue;
      const bool left = attaches_left(w), right = attaches_right(w);
      if (w == "``" || w == "''") w = "\"";
      if (w == "--") w = "--";
      if (!glue && !left) paragraph += ' ';
      paragraph += w;
      glue = right;
    }
  }
  flush();
  return out;
}

std::vector<std::string> brown_files(const std::string& dir) {
  DSV4_CHECK(std::filesystem::is_directory(dir), dir, ": not a directory");
  static const std::regex name("c[a-r][0-9][0-9]");
  std::vector<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    if (std::regex_match(e.path().filename().string(), name)) files.push_back(e.path().string());
  std::sort(files.begin(), files.end());
  DSV4_CHECK(!files.empty(), dir, ": no Brown corpus files (ca01 .. cr09)");
  return files;
}

}  // namespace dsv4
