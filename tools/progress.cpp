#include "tools/progress.h"

#include <unistd.h>

#include <cstdio>

#include "dist/comm.h"

namespace dsv4::tools {

ProgressBar::ProgressBar(std::string label)
    : label_(std::move(label)), tty_(isatty(2)), t0_(std::chrono::steady_clock::now()) {}

void ProgressBar::update(double f, const std::string& extra) {
  if (Comm::get().rank() > 0) return;  // under mpirun rank 0 reports for all
  const int pct = static_cast<int>(f * 100);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
  if (tty_) {
    const int width = 30, fill = static_cast<int>(f * width);
    std::fprintf(stderr, "\r%s [%.*s%*s] %3d%% %.1fs %s", label_.c_str(), fill, "##############################",
                 width - fill, "", pct, secs, extra.c_str());
  } else if (pct / 25 > last_step_) {
    last_step_ = pct / 25;
    std::fprintf(stderr, "%s %3d%% %.1fs %s\n", label_.c_str(), pct, secs, extra.c_str());
  }
}

void ProgressBar::done(const std::string& extra) {
  update(1.0, extra);
  if (tty_ && Comm::get().rank() == 0) std::fprintf(stderr, "\n");
}

}  // namespace dsv4::tools
