#include "tools/interrupt.h"

#include <atomic>

namespace dsv4::tools {

namespace {
std::atomic<bool> flag{false};  // lock-free, so safe to set from a signal handler
extern "C" void on_sigint(int) { flag.store(true); }
}  // namespace

Interrupts::Interrupts() {
  struct sigaction sa{};
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: a blocking read returns (EINTR) so the reader sees it
  sigaction(SIGINT, &sa, &previous_);
  flag.store(false);
}

Interrupts::~Interrupts() { sigaction(SIGINT, &previous_, nullptr); }

bool Interrupts::pending() { return flag.load(); }
bool Interrupts::take() { return flag.exchange(false); }

}  // namespace dsv4::tools
