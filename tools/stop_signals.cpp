#include "tools/stop_signals.h"

#include <pthread.h>
#include <unistd.h>

#include <atomic>

#include "core/check.h"

namespace dsv4::tools {

namespace {

std::atomic<pthread_t> watcher_thread{};
std::atomic<bool> ending{false};  // the destructor's own signal, not a user's

sigset_t stop_set() {
  sigset_t s;
  sigemptyset(&s);
  sigaddset(&s, SIGINT);
  sigaddset(&s, SIGTERM);
  return s;
}

// On a thread that was running before the signals were blocked: hand the signal to the
// watcher, which blocks it and so takes it in sigwait.
extern "C" void pass_to_watcher(int sig) { pthread_kill(watcher_thread.load(), sig); }

// After the watcher: a signal once a first one has started the shutdown is a second one.
extern "C" void exit_now(int) {
  static const char msg[] = "dsv4: second signal: exiting now\n";
  [[maybe_unused]] const ssize_t n = write(2, msg, sizeof msg - 1);
  _exit(130);
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
  const sigset_t set = stop_set();
  DSV4_CHECK(pthread_sigmask(SIG_BLOCK, &set, &previous_mask_) == 0, "cannot block SIGINT and SIGTERM");
  ending = false;
  watcher_ = std::thread([this, set] {
    while (true) {
      int sig = 0;
      if (sigwait(&set, &sig) != 0) continue;
      if (ending) return;
      if (++seen_ == 1) on_first_();
      else exit_now(sig);
    }
  });
  watcher_thread = watcher_.native_handle();
  set_handler(pass_to_watcher);
}

StopSignals::~StopSignals() {
  // Once a signal has started the shutdown, one that comes after the watcher is gone (the
  // process still finishing) ends it with 130, as in the watcher; a default handler would
  // kill it by the signal instead (seen in CI: two signals sent a few ms apart).
  set_handler(seen_ > 0 ? exit_now : SIG_DFL);
  ending = true;
  pthread_kill(watcher_.native_handle(), SIGTERM);
  watcher_.join();
  // A signal that came meanwhile (a second Ctrl-C while the server wound down) is pending:
  // take it, or unblocking would kill the process with it as it finishes cleanly.
  const sigset_t set = stop_set();
  const timespec now{0, 0};
  while (sigtimedwait(&set, nullptr, &now) > 0) {
  }
  pthread_sigmask(SIG_SETMASK, &previous_mask_, nullptr);
}

}  // namespace dsv4::tools
