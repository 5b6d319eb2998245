// The scheduler behind the server: up to `parallel` generations advance together, one step
// each in turn (a prefill chunk or one token), on one engine thread, so no request starves and
// a long prefill cannot block the others' decoding. Requests beyond that wait in a bounded
// queue; beyond the queue they are refused (Busy). Each slot keeps its conversation, so a
// request that continues the previous one in that slot reuses its cache.
//
// A Job is the caller's handle: it yields text deltas and then the result (or an error), and
// cancel() stops the generation at its next step (a client that went away).
#pragma once

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "core/check.h"
#include "runtime/engine.h"

namespace dsv4 {

struct JobEvent {
  enum Kind { delta, done, error } kind;
  std::string text;        // delta: the new text; error: the message
  GenerateResult result;   // done
};

class Job {
 public:
  // Blocks until the next event (or the timeout, then nullopt).
  std::optional<JobEvent> next(std::chrono::milliseconds timeout);
  void cancel() { cancelled_ = true; }
  bool cancelled() const { return cancelled_; }

 private:
  friend class Scheduler;
  void push(JobEvent e);
  GenerateRequest req_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<JobEvent> events_;
  std::atomic<bool> cancelled_{false};
};

class Busy : public Error {
 public:
  using Error::Error;
};

struct SchedulerStats {
  size_t active = 0, queued = 0;
  unsigned long long completed = 0, cancelled = 0, refused = 0;
};

class Scheduler {
 public:
  Scheduler(const Engine& e, int parallel, size_t max_queue);
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Queues a generation; throws Busy when the queue is full or the scheduler is closing,
  // Error for a bad request.
  std::shared_ptr<Job> submit(GenerateRequest req);
  SchedulerStats stats();
  // For shutdown: refuses new jobs, ends the queued ones and cancels the running ones at their
  // next step (each ends with FinishReason::cancelled). Returns how many it ended.
  size_t close();

 private:
  struct Slot {
    std::unique_ptr<Conversation> conv;
    std::shared_ptr<Job> job;  // set and cleared by the loop thread under mu_; others read it under mu_
    std::unique_ptr<Generation> gen;
  };
  void loop();
  size_t busy_slots() const;  // slots running a job; call under mu_
  void start(Slot& slot, std::shared_ptr<Job> job);

  const Engine& e_;
  size_t max_queue_;
  std::vector<Slot> slots_;
  std::deque<std::shared_ptr<Job>> queue_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false, closing_ = false;
  SchedulerStats stats_;
  std::thread thread_;
};

}  // namespace dsv4
