// The scheduler behind the server: continuous batching of up to `parallel` generations on one
// engine thread. Every step is one forward pass over the weights for all of them: the next
// token of every decoding generation, plus prefill chunks of the others from what is left of
// a budget of `batch_tokens` tokens (taken in turn, so no prefill waits behind another for
// long). A speculative generation's decode is its verify rows (the last token and the drafts). A step is at most batch_tokens tokens, so a long prompt delays the decoding
// generations by one step's budget at most. Finished generations leave and queued requests
// join between steps. Requests beyond `parallel` wait in a bounded queue; beyond the queue
// they are refused (Busy). Each slot keeps its conversation, so a request that continues the
// previous one in that slot reuses its cache. A generation's tokens do not depend on what
// it is batched with (Model::forward over steps is bitwise batch-invariant).
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
#include "core/histogram.h"
#include "runtime/engine.h"

namespace dsv4 {

struct JobEvent {
  enum Kind { delta, done, error } kind;
  std::string text;        // delta: the new text; error: the message
  GenerateResult result;   // done
  // delta, with GenerateRequest::logprobs: the entries made since the last delta (a token's
  // entry comes with its text or before it; those not sent by the end are in result).
  std::vector<TokenLogprob> logprobs;
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
  std::weak_ptr<Job> leader_;  // a sample's first sample, whose prefill it copies
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
  unsigned long long steps = 0, step_tokens = 0;  // forward passes and the tokens they fed
  size_t max_step_tokens = 0;                     // the largest step so far
  Histogram step_seconds{seconds_buckets()};      // each forward pass's wall time
  SpecStats spec;  // speculative decoding, summed over the finished generations
};

class Scheduler {
 public:
  // batch_tokens >= parallel (every decoding generation fits every step).
  Scheduler(const Engine& e, int parallel, size_t max_queue, int batch_tokens);
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Queues a generation; throws Busy when the queue is full or the scheduler is closing,
  // Error for a bad request.
  std::shared_ptr<Job> submit(GenerateRequest req);
  // Samples of one prompt (OpenAI's n), all queued or none: the first prefills the prompt but
  // its last token, the others start from a copy of its conversation there (when a slot is
  // free at that step; else they prefill themselves), so the prompt is computed once. Each
  // gets what it would get alone. Without the drafter (the copy holds none); not under mpirun
  // (the samples then prefill each).
  std::vector<std::shared_ptr<Job>> submit_samples(std::vector<GenerateRequest> reqs);
  SchedulerStats stats();
  // Saved sessions (llama-server's slot save / restore / erase): a free slot's conversation
  // as a snapshot, replaced by one, or cleared. Busy when the slot is running a request, Error
  // for a slot id outside [0, parallel).
  int parallel() const { return static_cast<int>(slots_.size()); }
  Snapshot save_slot(int id);
  void restore_slot(int id, Snapshot s);
  size_t erase_slot(int id);  // the tokens it held
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
  // Queues all or none; with share, the later jobs are samples of the first (submit_samples).
  std::vector<std::shared_ptr<Job>> submit_all(std::vector<GenerateRequest> reqs, bool share);
  size_t busy_slots() const;  // slots running a job; call under mu_
  void start(Slot& slot, std::shared_ptr<Job> job);
  void admit();  // queued jobs into free slots; call under mu_
  // A sample whose leader has not reached the copy point yet waits in the queue; one whose
  // leader is there gets the leader's conversation. Call under mu_.
  bool waits_for_leader(const Job& job) const;
  Slot* leader_at_copy_point(const Job& job);
  Slot& free_slot(int id);  // call under mu_: the loop thread leaves a slot without a job alone
  // Asks the slot's generation for its next input (at most max_prefill prefill tokens); a
  // finished or failed generation frees its slot. The tokens to feed, or empty.
  std::span<const int> next_input(Slot& slot, size_t max_prefill);
  void end(Slot& slot, JobEvent last);  // frees the slot, then sends the job its last event

  const Engine& e_;
  size_t max_queue_, batch_tokens_;
  size_t next_prefill_ = 0;  // the slot whose prefill goes first in the next step
  std::vector<Slot> slots_;
  std::deque<std::shared_ptr<Job>> queue_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false, closing_ = false;
  SchedulerStats stats_;
  std::thread thread_;
};

}  // namespace dsv4
