// Writing files so that a failure is never silent: a full disk or a file-size limit shows up
// only when buffered bytes are flushed, at close, which an ofstream's destructor would swallow.
#pragma once

#include <fstream>
#include <string>
#include <string_view>

namespace dsv4 {

// Writes bytes to path (created or truncated); Error naming the path if any of it fails.
void write_file(const std::string& path, std::string_view bytes);
// Flushes and closes f; Error "<path>: write failed (...)" if anything written to it was lost.
void close_checked(std::ofstream& f, const std::string& path);

}  // namespace dsv4
