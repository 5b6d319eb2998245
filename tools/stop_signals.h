// SIGINT / SIGTERM for a long-running command (`dsv4 serve`): the first one calls on_first on
// a thread of its own (where a clean shutdown may lock, log and join, which a signal handler
// may not); a second one ends the process at once with status 130.
//
// The signals are blocked in the constructing thread, and so in every thread it starts after,
// and taken synchronously by the watcher thread (sigwait): no handler runs on a thread that
// happens to be interrupted. Construct it before any other thread starts. (A signal handler
// also stays installed for threads that were already running; it passes the signal on to the
// watcher. TSan defers a handler until its thread next calls into the runtime, so one that
// lands on a thread blocked in accept() would never run.)
#pragma once

#include <atomic>
#include <csignal>
#include <functional>
#include <thread>

namespace dsv4::tools {

class StopSignals {
 public:
  explicit StopSignals(std::function<void()> on_first);
  // Restores the signal mask, and the default handlers unless a signal came (then a later one
  // still exits with 130).
  ~StopSignals();
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

 private:
  std::function<void()> on_first_;
  sigset_t previous_mask_;
  std::atomic<int> seen_{0};  // signals the watcher took
  std::thread watcher_;
};

}  // namespace dsv4::tools
