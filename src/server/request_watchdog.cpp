#include "server/request_watchdog.h"

#include <algorithm>
#include <vector>

#include "server/connections.h"

namespace dsv4 {

using Clock = std::chrono::steady_clock;

RequestWatchdog::RequestWatchdog(int local_port, std::chrono::milliseconds timeout)
    : local_port_(local_port), timeout_(timeout), thread_([this] { watch(); }) {}

RequestWatchdog::~RequestWatchdog() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

void RequestWatchdog::handling(const std::string& addr, int port) {
  std::lock_guard lock(mutex_);
  Connection& c = connections_[{addr, port}];
  c.handling = true;
  c.scan = scans_;
}

void RequestWatchdog::answered(const std::string& addr, int port) {
  std::lock_guard lock(mutex_);
  Connection& c = connections_[{addr, port}];
  c.handling = false;
  c.since = Clock::now();
  c.scan = scans_;
}

void RequestWatchdog::watch() {
  // A quarter of the timeout between scans (at most 250 ms): a slow client is closed between
  // 1 and 1.25 timeouts after its clock started.
  const auto period = std::min<std::chrono::milliseconds>(timeout_ / 4, std::chrono::milliseconds(250));
  std::unique_lock lock(mutex_);
  while (!wake_.wait_for(lock, period, [&] { return stop_; })) {
    lock.unlock();
    scan();
    lock.lock();
  }
}

void RequestWatchdog::scan() {
  std::vector<ConnectionInfo> found = connections_on(local_port_);
  const auto now = Clock::now();
  std::vector<ConnectionInfo> late;
  {
    std::lock_guard lock(mutex_);
    const unsigned long long scan = ++scans_;
    for (const ConnectionInfo& f : found) {
      auto [it, added] = connections_.try_emplace({f.peer_addr, f.peer_port});
      Connection& c = it->second;
      if (added) c.since = now;
      c.scan = scan;
      if (!c.handling && !c.shut && now - c.since > timeout_) {
        c.shut = true;
        late.push_back(f);
      }
    }
    // Gone since the last scan (a peer's address and port may come back as a new connection).
    std::erase_if(connections_, [&](const auto& kv) { return kv.second.scan + 1 < scan; });
  }
  for (const ConnectionInfo& f : late)
    if (shutdown_connection(f)) ++timed_out_;
}

}  // namespace dsv4
