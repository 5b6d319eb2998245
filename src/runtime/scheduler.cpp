// Round-robin stepping of the active slots. The engine thread owns every Conversation; other
// threads only touch Jobs (their event queues and cancel flags) and the queue under mu_.
#include "runtime/scheduler.h"

#include <algorithm>

#include "core/check.h"

namespace dsv4 {

std::optional<JobEvent> Job::next(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  if (!cv_.wait_for(lock, timeout, [&] { return !events_.empty(); })) return std::nullopt;
  JobEvent e = std::move(events_.front());
  events_.pop_front();
  return e;
}

void Job::push(JobEvent e) {
  {
    std::lock_guard lock(mu_);
    events_.push_back(std::move(e));
  }
  cv_.notify_one();
}

Scheduler::Scheduler(const Engine& e, int parallel, size_t max_queue) : e_(e), max_queue_(max_queue) {
  DSV4_CHECK(parallel >= 1, "--parallel must be >= 1, got ", parallel);
  slots_.resize(parallel);
  for (auto& s : slots_) s.conv = std::make_unique<Conversation>(e);
  thread_ = std::thread([this] { loop(); });
}

Scheduler::~Scheduler() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

std::shared_ptr<Job> Scheduler::submit(GenerateRequest req) {
  validate(req);  // before queueing, so a bad request fails at submit
  auto job = std::make_shared<Job>();
  job->req_ = std::move(req);
  {
    std::lock_guard lock(mu_);
    if (closing_) {
      ++stats_.refused;
      throw Busy("the server is shutting down");
    }
    // Admitted while a slot is free or the queue has room: up to parallel + max_queue at once
    // (so max_queue 0 still serves `parallel` requests, and refuses the rest at once).
    const size_t busy = busy_slots();
    if (busy + queue_.size() >= slots_.size() + max_queue_) {
      ++stats_.refused;
      throw Busy("server busy: " + std::to_string(busy) + " generations running and " +
                 std::to_string(queue_.size()) + " waiting; retry later");
    }
    queue_.push_back(job);
  }
  cv_.notify_all();
  return job;
}

size_t Scheduler::busy_slots() const {
  return static_cast<size_t>(std::count_if(slots_.begin(), slots_.end(), [](const Slot& x) { return x.job != nullptr; }));
}

size_t Scheduler::close() {
  std::deque<std::shared_ptr<Job>> queued;
  size_t running = 0;
  {
    std::lock_guard lock(mu_);
    closing_ = true;
    queued.swap(queue_);
    stats_.cancelled += queued.size();
    for (auto& s : slots_)
      if (s.job) {
        s.job->cancel();  // the engine thread finishes it at its next step
        ++running;
      }
  }
  GenerateResult never_started;
  never_started.finish = FinishReason::cancelled;
  for (auto& job : queued) {
    never_started.prompt_tokens = static_cast<int>(job->req_.prompt.size());
    job->push({JobEvent::done, {}, never_started});
  }
  return queued.size() + running;
}

SchedulerStats Scheduler::stats() {
  std::lock_guard lock(mu_);
  SchedulerStats s = stats_;
  s.queued = queue_.size();
  s.active = busy_slots();
  return s;
}

void Scheduler::start(Slot& slot, std::shared_ptr<Job> job) {
  Job* j = job.get();
  GenerateRequest req = j->req_;
  req.on_text = [j](const std::string& delta) {
    j->push({JobEvent::delta, delta, {}});
    return !j->cancelled();
  };
  slot.job = std::move(job);
  slot.gen = std::make_unique<Generation>(*slot.conv, std::move(req));
}

void Scheduler::loop() {
  while (true) {
    {
      std::unique_lock lock(mu_);
      const auto busy = [&] { return std::any_of(slots_.begin(), slots_.end(), [](const Slot& s) { return s.job != nullptr; }); };
      cv_.wait(lock, [&] { return stop_ || !queue_.empty() || busy(); });
      if (stop_) break;
      // Fill free slots; prefer the free slot whose conversation the prompt continues.
      while (!queue_.empty()) {
        std::vector<Slot*> free;
        for (auto& s : slots_)
          if (!s.job) free.push_back(&s);
        if (free.empty()) break;
        std::shared_ptr<Job> job = queue_.front();
        queue_.pop_front();
        Slot* pick = free.front();
        for (Slot* s : free)
          if (s->conv->continues_with(job->req_.prompt)) pick = s;
        try {
          start(*pick, job);
        } catch (const std::exception& e) {
          job->push({JobEvent::error, e.what(), {}});
        }
      }
    }
    for (auto& s : slots_) {
      if (!s.job) continue;
      std::optional<JobEvent> last;  // sent once the slot is free again
      try {
        if (s.job->cancelled()) s.gen->cancel();
        if (s.gen->step()) last = JobEvent{JobEvent::done, {}, s.gen->result()};
      } catch (const std::exception& e) {
        last = JobEvent{JobEvent::error, e.what(), {}};
        s.conv->reset();
      }
      if (!last) continue;
      // The slot is freed under the lock: submit() and stats() count busy slots from other
      // threads (TSan found the move out of s.job done without it).
      std::shared_ptr<Job> job;
      {
        std::lock_guard lock(mu_);
        const bool cancelled = last->kind == JobEvent::done && last->result.finish == FinishReason::cancelled;
        ++(cancelled ? stats_.cancelled : stats_.completed);
        job = std::move(s.job);
        s.gen.reset();
      }
      job->push(std::move(*last));
    }
  }
}

}  // namespace dsv4
