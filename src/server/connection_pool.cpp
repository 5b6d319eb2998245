#include "server/connection_pool.h"

#include "core/check.h"

namespace dsv4 {

ConnectionPool::ConnectionPool(size_t max_threads, size_t kept, std::chrono::milliseconds linger)
    : max_threads_(max_threads), kept_(std::min(kept, max_threads)), linger_(linger) {
  DSV4_CHECK(max_threads >= 1, "a connection pool needs a thread");
}

ConnectionPool::~ConnectionPool() { shutdown(); }

void ConnectionPool::enqueue(std::function<void()> fn) {
  std::lock_guard lock(mutex_);
  reap();
  if (!idle_.empty()) {
    Worker* w = idle_.back();
    idle_.pop_back();
    w->job = std::move(fn);
    w->wake.notify_one();
  } else if (alive_ < max_threads_) {
    ++alive_;
    peak_ = std::max(peak_, alive_);
    Worker& w = workers_.emplace_back();
    w.job = std::move(fn);
    w.thread = std::thread([this, &w] { work(w); });
  } else {
    jobs_.push_back(std::move(fn));
  }
}

void ConnectionPool::work(Worker& self) {
  std::unique_lock lock(mutex_);
  while (true) {
    if (!self.job && !jobs_.empty()) {
      self.job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    if (self.job) {
      std::function<void()> job = std::move(self.job);
      self.job = nullptr;
      lock.unlock();
      job();
      job = nullptr;  // the connection's state ends with its turn, not at the next job
      lock.lock();
      continue;
    }
    if (shutdown_) break;
    idle_.push_back(&self);
    const bool woken = self.wake.wait_for(lock, linger_, [&] { return self.job || shutdown_; });
    if (self.job) continue;  // enqueue took it off idle_
    std::erase(idle_, &self);
    if (!woken && alive_ <= kept_) continue;  // idle, but one of the threads kept
    if (!woken || jobs_.empty()) break;        // idle for linger_, or shut down with nothing left
  }
  --alive_;
  self.done = true;
}

void ConnectionPool::reap() {
  for (auto it = workers_.begin(); it != workers_.end();) {
    if (!it->done) {
      ++it;
      continue;
    }
    // done is set just before the thread function returns: this join waits for no work.
    it->thread.join();
    it = workers_.erase(it);
  }
}

void ConnectionPool::shutdown() {
  std::list<Worker> all;
  {
    std::lock_guard lock(mutex_);
    if (shutdown_ && workers_.empty()) return;
    shutdown_ = true;
    for (Worker& w : workers_) w.wake.notify_one();
    all.splice(all.end(), workers_);
  }
  for (Worker& w : all) w.thread.join();
}

size_t ConnectionPool::threads() const {
  std::lock_guard lock(mutex_);
  return alive_;
}

size_t ConnectionPool::peak_threads() const {
  std::lock_guard lock(mutex_);
  return peak_;
}

}  // namespace dsv4
