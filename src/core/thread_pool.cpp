// ThreadPool: the calling thread and the workers claim chunks from a shared counter until none
// are left.
#include "core/thread_pool.h"

#include <algorithm>
#include <cstdlib>
#include <memory>

#include "core/check.h"

namespace dsv4 {

namespace {
thread_local bool in_worker = false;

// Waits for done() up to kSpin without sleeping. Each round yields the core: when the machine
// is oversubscribed (another process, or more threads than cores) the thread we wait for gets
// to run, and when it is not, sched_yield returns at once.
template <typename Done>
bool spin_until(Done done) {
  const auto deadline = std::chrono::steady_clock::now() + ThreadPool::kSpin;
  for (int i = 0;; ++i) {
    if (done()) return true;
    std::this_thread::yield();
    if ((i & 15) == 15 && std::chrono::steady_clock::now() > deadline) return done();
  }
}

void run_chunk(size_t n, size_t n_chunks, size_t chunk, const std::function<void(size_t, size_t)>& fn) {
  size_t begin = n * chunk / n_chunks, end = n * (chunk + 1) / n_chunks;
  if (begin < end) fn(begin, end);
}
}  // namespace

ThreadPool::ThreadPool(int n_threads) : n_threads_(n_threads < 1 ? 1 : n_threads) {
  for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this] { worker(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_.store(true);
  }
  start_cv_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::worker() {
  in_worker = true;
  unsigned long long seen = 0;
  for (;;) {
    const auto woken = [&] { return stop_.load() || generation_.load(std::memory_order_acquire) != seen; };
    if (!spin_until(woken)) {
      std::unique_lock<std::mutex> lock(mu_);
      start_cv_.wait(lock, woken);
    }
    if (stop_.load()) return;
    seen = generation_.load(std::memory_order_acquire);
    run_chunks();
    if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      std::lock_guard<std::mutex> lock(mu_);  // the caller may be between its check and its wait
      done_cv_.notify_one();
    }
  }
}

void ThreadPool::parallel_for(size_t n, const std::function<void(size_t, size_t)>& fn) {
  if (n == 0) return;
  if (n_threads_ == 1 || n == 1 || in_worker) {
    fn(0, n);
    return;
  }
  std::lock_guard<std::mutex> call_lock(call_mu_);
  job_ = &fn;
  job_n_ = n;
  job_chunks_ = std::min(n, static_cast<size_t>(n_threads_) * kChunksPerThread);
  next_chunk_.store(0, std::memory_order_relaxed);
  pending_.store(n_threads_ - 1);
  {
    std::lock_guard<std::mutex> lock(mu_);  // a worker may be between its check and its wait
    generation_.fetch_add(1, std::memory_order_release);
  }
  start_cv_.notify_all();
  bool was_worker = in_worker;
  in_worker = true;  // nested parallel_for from chunk 0 runs inline
  run_chunks();
  in_worker = was_worker;
  const auto done = [&] { return pending_.load(std::memory_order_acquire) == 0; };
  if (!spin_until(done)) {
    std::unique_lock<std::mutex> lock(mu_);
    done_cv_.wait(lock, done);
  }
  // Every chunk has finished (fn is no longer in use): the first error goes to the caller.
  std::exception_ptr error;
  {
    std::lock_guard<std::mutex> lock(error_mu_);
    error.swap(error_);
  }
  if (error) std::rethrow_exception(error);
}

bool ThreadPool::inside_parallel() { return in_worker; }

void ThreadPool::run_chunks() {
  for (;;) {
    const size_t c = next_chunk_.fetch_add(1, std::memory_order_relaxed);
    if (c >= job_chunks_) return;
    try {
      run_chunk(job_n_, job_chunks_, c, *job_);
    } catch (...) {
      keep_error(std::current_exception());
    }
  }
}

void ThreadPool::keep_error(std::exception_ptr e) {
  std::lock_guard<std::mutex> lock(error_mu_);
  if (!error_) error_ = std::move(e);
}

namespace {
int requested_threads = 0;
std::unique_ptr<ThreadPool> global_pool;
std::mutex global_mu;
}  // namespace

void set_num_threads(int n) {
  std::lock_guard<std::mutex> lock(global_mu);
  DSV4_CHECK(n >= 0, "--threads must be >= 0 (0 = all cores), got ", n);
  requested_threads = n;
  global_pool.reset();
}

namespace {
// The thread count that 0 stands for: $DSV4_THREADS where set (as OMP_NUM_THREADS is for
// OpenMP: ctest runs two test processes at once on a 2-core machine, each one thread, instead
// of four threads spinning at barriers on two cores), else every core.
int default_threads() {
  if (const char* env = std::getenv("DSV4_THREADS"); env && *env) {
    char* end = nullptr;
    const long n = std::strtol(env, &end, 10);
    DSV4_CHECK(*end == 0 && n >= 1 && n <= 4096, "DSV4_THREADS must be a thread count from 1 to 4096, got '", env,
               "'");
    return static_cast<int>(n);
  }
  return static_cast<int>(std::thread::hardware_concurrency());
}
}  // namespace

ThreadPool& pool() {
  std::lock_guard<std::mutex> lock(global_mu);
  if (!global_pool) global_pool = std::make_unique<ThreadPool>(requested_threads > 0 ? requested_threads : default_threads());
  return *global_pool;
}

}  // namespace dsv4
