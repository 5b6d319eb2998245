// The threads that serve the HTTP connections. cpp-httplib reads a request and writes its answer
// on one blocking thread per connection, and its own pool has a fixed size: 32 clients that
// send a byte a second, or 32 long generations, leave every later connection (a /health probe
// among them) waiting. This pool starts a thread whenever a connection would otherwise wait, up
// to max_threads, and lets threads idle for `linger` exit until `kept` remain: idle connections
// cost a thread each for as long as they last, which RequestWatchdog bounds. A connection goes to
// the thread idle for the shortest time, so that under a light load the surplus threads stay
// idle long enough to end.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <list>
#include <mutex>
#include <thread>
#include <vector>

#include <httplib.h>

namespace dsv4 {

class ConnectionPool final : public httplib::TaskQueue {
 public:
  ConnectionPool(size_t max_threads, size_t kept = 4, std::chrono::milliseconds linger = std::chrono::seconds(10));
  ~ConnectionPool() override;
  ConnectionPool(const ConnectionPool&) = delete;
  ConnectionPool& operator=(const ConnectionPool&) = delete;

  // Runs fn on an idle thread, a new one if none is idle and fewer than max_threads exist, or
  // else on the first thread to come free.
  void enqueue(std::function<void()> fn) override;
  // Runs what is queued, then joins every thread; enqueue must not be called after.
  void shutdown() override;

  size_t threads() const;  // alive now
  size_t peak_threads() const;

 private:
  struct Worker {
    std::thread thread;
    std::condition_variable wake;
    std::function<void()> job;  // handed over by enqueue
    bool done = false;          // its loop has returned: join it
  };
  void work(Worker& self);
  void reap();  // joins the workers that have ended; the lock is held

  const size_t max_threads_, kept_;
  const std::chrono::milliseconds linger_;
  mutable std::mutex mutex_;
  std::deque<std::function<void()>> jobs_;  // waiting for a thread: max_threads are busy
  std::list<Worker> workers_;
  std::vector<Worker*> idle_;  // the most recently idle last
  size_t alive_ = 0, peak_ = 0;
  bool shutdown_ = false;
};

}  // namespace dsv4
