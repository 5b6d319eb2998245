// SIGINT / SIGTERM for a long-running command (`dsv4 serve`): the first one calls on_first on
// a thread of its own (where a clean shutdown may lock, log and join, which a signal handler
// may not); a second one ends the process at once with status 130. The handler only writes a
// byte to a pipe.
#pragma once

#include <functional>
#include <thread>

namespace dsv4::tools {

class StopSignals {
 public:
  explicit StopSignals(std::function<void()> on_first);
  ~StopSignals();  // restores the default handlers
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

 private:
  std::function<void()> on_first_;
  std::thread watcher_;
};

}  // namespace dsv4::tools
