// A persistent pool of worker threads and parallel_for over an index range.
//
// Work is split into contiguous chunks, a few per thread, which the threads claim as they
// finish: on a VM whose cores run at different speeds from moment to moment (neighbours), a
// fixed chunk per thread leaves the faster core waiting. Each index is computed entirely by
// one thread, so results never depend on the thread count or on who ran what (no
// cross-thread reductions here).
//
// Decoding a token makes hundreds of parallel_for calls of ~100 us each, so waking sleeping
// threads (a futex round trip each way, tens of microseconds on a VM) would cost a large
// share of the step: workers and the caller spin for a short while (kSpin) before blocking.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace dsv4 {

class ThreadPool {
 public:
  static constexpr std::chrono::microseconds kSpin{300};
  static constexpr size_t kChunksPerThread = 4;

  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }
  // Whether this thread is running a chunk of some parallel_for (where a nested call runs inline).
  static bool inside_parallel();

  // Calls fn(begin, end) on disjoint chunks covering [0, n). Blocks until all are done.
  // Nested calls from inside a worker run inline on the calling thread. An exception thrown
  // by fn in any chunk is rethrown here (the first one) once every chunk has finished.
  void parallel_for(size_t n, const std::function<void(size_t, size_t)>& fn);

 private:
  void worker();
  void run_chunks();  // claims and runs chunks of the current job until none are left
  void keep_error(std::exception_ptr e);

  int n_threads_;
  std::vector<std::thread> workers_;
  std::mutex call_mu_;  // one parallel_for at a time (several sessions may share the pool)
  std::mutex mu_;  // guards the sleeping side of generation_ / pending_ / stop_
  std::condition_variable start_cv_, done_cv_;
  const std::function<void(size_t, size_t)>* job_ = nullptr;  // published by generation_
  size_t job_n_ = 0, job_chunks_ = 0;
  std::atomic<size_t> next_chunk_{0};
  std::atomic<unsigned long long> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
  std::mutex error_mu_;
  std::exception_ptr error_;  // the first exception of the current call
};

// The process-wide pool used by the kernels. set_num_threads before first use; 0 = all cores,
// or $DSV4_THREADS where that is set.
void set_num_threads(int n);
ThreadPool& pool();

}  // namespace dsv4
