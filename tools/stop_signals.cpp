#include "tools/stop_signals.h"

#include <fcntl.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>

#include "core/check.h"

namespace dsv4::tools {

namespace {

int pipe_fds[2] = {-1, -1};  // [read, write]

extern "C" void on_stop_signal(int) {
  const char c = 's';
  [[maybe_unused]] const ssize_t n = write(pipe_fds[1], &c, 1);  // async-signal-safe
}

void set_handler(void (*handler)(int)) {
  struct sigaction sa{};
  sa.sa_handler = handler;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

}  // namespace

StopSignals::StopSignals(std::function<void()> on_first) : on_first_(std::move(on_first)) {
  DSV4_CHECK(pipe2(pipe_fds, O_CLOEXEC) == 0, "cannot create a pipe for signal handling");
  set_handler(on_stop_signal);
  watcher_ = std::thread([this] {
    char c;
    int seen = 0;
    while (read(pipe_fds[0], &c, 1) == 1) {  // returns 0 once the destructor closes the write end
      if (++seen == 1) {
        on_first_();
      } else {
        static const char msg[] = "dsv4: second signal: exiting now\n";
        [[maybe_unused]] const ssize_t n = write(2, msg, sizeof msg - 1);
        _exit(130);
      }
    }
  });
}

StopSignals::~StopSignals() {
  set_handler(SIG_DFL);
  close(pipe_fds[1]);
  watcher_.join();
  close(pipe_fds[0]);
  pipe_fds[0] = pipe_fds[1] = -1;
}

}  // namespace dsv4::tools
