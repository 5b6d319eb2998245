// A one-line progress bar on stderr (redrawn in place on a terminal, printed at 25% steps
// otherwise, so logs stay short).
#pragma once

#include <chrono>
#include <string>

namespace dsv4::tools {

class ProgressBar {
 public:
  explicit ProgressBar(std::string label);
  void update(double fraction, const std::string& extra = "");
  void done(const std::string& extra = "");

 private:
  std::string label_;
  bool tty_;
  int last_step_ = -1;
  std::chrono::steady_clock::time_point t0_;
};

}  // namespace dsv4::tools
