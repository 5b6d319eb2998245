// A one-line progress bar on stderr: on a terminal it is redrawn in place, cut to the
// terminal's width and erased to the end of the line, so no earlier, longer state is left
// behind; otherwise (a log file) it prints a line at every 5%: twenty lines for a whole run,
// a few minutes apart in a training run of hours.
#pragma once

#include <chrono>
#include <string>

namespace dsv4::tools {

class ProgressBar {
 public:
  explicit ProgressBar(std::string label);
  void update(double fraction, const std::string& extra = "");
  // A line of its own (an evaluation, a warning) above the bar, which is redrawn at the next update.
  void message(const std::string& line);
  void done(const std::string& extra = "");  // the final state, and the line ended

 private:
  void draw(double fraction, const std::string& extra);
  std::string label_;
  bool tty_, drawn_ = false;
  int last_step_ = -1;
  std::chrono::steady_clock::time_point t0_;
};

}  // namespace dsv4::tools
