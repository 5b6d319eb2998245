// Reading the user's lines in `dsv4 chat`: on a terminal, libedit's line editing (arrows,
// Ctrl-A / Ctrl-E, Ctrl-R search) and a history kept across sessions; otherwise plain lines
// from stdin with no prompt, so piped input gives clean output.
#pragma once

#include <optional>
#include <string>

struct editline;
struct history;

namespace dsv4::tools {

class LineEditor {
 public:
  // history_file: where the history is loaded from and saved to ("" = none).
  explicit LineEditor(std::string history_file);
  ~LineEditor();
  LineEditor(const LineEditor&) = delete;
  LineEditor& operator=(const LineEditor&) = delete;

  struct Line {
    std::string text;
    bool interrupted = false;  // Ctrl-C: the line was abandoned (text is empty)
  };
  // The next line without its newline; nullopt at end of input (Ctrl-D).
  std::optional<Line> read(const std::string& prompt);
  bool interactive() const { return el_ != nullptr; }

 private:
  std::string history_file_;
  editline* el_ = nullptr;
  history* hist_ = nullptr;
};

}  // namespace dsv4::tools
