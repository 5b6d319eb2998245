#include "tools/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include "dist/comm.h"
#include "tools/terminal.h"

namespace dsv4::tools {

namespace {
constexpr int kLogStep = 5;  // percent between the lines of a log (not a terminal)
}  // namespace

ProgressBar::ProgressBar(std::string label)
    : label_(std::move(label)), tty_(isatty(2)), t0_(std::chrono::steady_clock::now()) {}

void ProgressBar::draw(double f, const std::string& extra) {
  f = std::clamp(f, 0.0, 1.0);
  const int pct = static_cast<int>(f * 100);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
  char head[64];
  if (tty_) {
    const int width = 30, fill = static_cast<int>(f * width);
    std::string line = label_ + " [" + std::string(fill, '#') + std::string(width - fill, ' ') + "]";
    std::snprintf(head, sizeof head, " %3d%% %.1fs ", pct, secs);
    line += head + extra;
    // A line longer than the terminal wraps, and "\r" then returns only to its last row.
    const int cols = terminal_width(2);
    if (cols > 1 && static_cast<int>(line.size()) >= cols) line.resize(cols - 1);
    std::fprintf(stderr, "\r%s\x1b[K", line.c_str());
    drawn_ = true;
  } else if (pct / kLogStep > last_step_) {
    last_step_ = pct / kLogStep;
    std::fprintf(stderr, "%s %3d%% %.1fs %s\n", label_.c_str(), pct, secs, extra.c_str());
  }
  std::fflush(stderr);
}

void ProgressBar::update(double f, const std::string& extra) {
  if (Comm::get().rank() > 0) return;  // under mpirun rank 0 reports for all
  draw(f, extra);
}

void ProgressBar::message(const std::string& line) {
  if (Comm::get().rank() > 0) return;
  if (tty_ && drawn_) std::fprintf(stderr, "\r\x1b[K");
  drawn_ = false;
  std::fprintf(stderr, "%s\n", line.c_str());
}

void ProgressBar::done(const std::string& extra) {
  if (Comm::get().rank() > 0) return;
  draw(1.0, extra);
  if (tty_) std::fprintf(stderr, "\n");
}

}  // namespace dsv4::tools
