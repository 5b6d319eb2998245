// Continuous batching of the active slots. The engine thread owns every Conversation; other
// threads only touch Jobs (their event queues and cancel flags) and the queue under mu_.
#include "runtime/scheduler.h"

#include <algorithm>
#include <chrono>
#include <utility>

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

Scheduler::Scheduler(const Engine& e, int parallel, size_t max_queue, int batch_tokens)
    : e_(e), max_queue_(max_queue), batch_tokens_(static_cast<size_t>(std::max(batch_tokens, 0))) {
  DSV4_CHECK(parallel >= 1, "--parallel must be >= 1, got ", parallel);
  DSV4_CHECK(batch_tokens >= parallel, "--batch-tokens (", batch_tokens, ") must be at least --parallel (", parallel,
             "): every decoding generation takes one token of each step");
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
  std::vector<GenerateRequest> one;
  one.push_back(std::move(req));
  return submit_all(std::move(one), false).front();
}

std::vector<std::shared_ptr<Job>> Scheduler::submit_samples(std::vector<GenerateRequest> reqs) {
  const bool share = reqs.size() > 1 && !e_.leading() && reqs.front().prompt.size() > 1;
  if (reqs.size() > 1)
    for (GenerateRequest& r : reqs) r.spec = SpecMode::off;
  if (share) reqs.front().pause_before_last = true;
  return submit_all(std::move(reqs), share);
}

std::vector<std::shared_ptr<Job>> Scheduler::submit_all(std::vector<GenerateRequest> reqs, bool share) {
  std::vector<std::shared_ptr<Job>> jobs;
  for (GenerateRequest& r : reqs) {
    validate(r);  // before queueing, so a bad request fails at submit
    jobs.push_back(std::make_shared<Job>());
    jobs.back()->req_ = std::move(r);
    // Set before the loop thread can see the job: a sample must never start without it.
    if (share && jobs.size() > 1) jobs.back()->leader_ = jobs.front();
  }
  {
    std::lock_guard lock(mu_);
    if (closing_) {
      ++stats_.refused;
      throw Busy("the server is shutting down");
    }
    // Admitted while a slot is free or the queue has room: up to parallel + max_queue at once
    // (so max_queue 0 still serves `parallel` requests, and refuses the rest at once).
    const size_t busy = busy_slots();
    if (busy + queue_.size() + jobs.size() > slots_.size() + max_queue_) {
      ++stats_.refused;
      throw Busy("server busy: " + std::to_string(busy) + " generations running and " +
                 std::to_string(queue_.size()) + " waiting; retry later");
    }
    queue_.insert(queue_.end(), jobs.begin(), jobs.end());
  }
  cv_.notify_all();
  return jobs;
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
    job->push({JobEvent::done, {}, never_started, {}});
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
  // The caller's on_text (if any) observes the text on the engine thread; the job's queue
  // carries it to the caller's thread.
  auto made = std::make_shared<std::vector<TokenLogprob>>();  // engine thread only
  if (req.logprobs >= 0)
    req.on_logprob = [made, observe = std::move(req.on_logprob)](const TokenLogprob& lp) {
      if (observe) observe(lp);
      made->push_back(lp);
    };
  req.on_text = [j, made, observe = std::move(req.on_text)](const std::string& delta) {
    if (observe) observe(delta);
    j->push({JobEvent::delta, delta, {}, std::exchange(*made, {})});
    return !j->cancelled();
  };
  // The generation first: if its constructor throws, the slot stays free (a slot with a job
  // and no generation would be stepped).
  auto gen = std::make_unique<Generation>(*slot.conv, std::move(req));
  slot.job = std::move(job);
  slot.gen = std::move(gen);
}

Scheduler::Slot& Scheduler::free_slot(int id) {
  DSV4_CHECK(id >= 0 && id < parallel(), "slot ", id, " is not one of 0 .. ", parallel() - 1);
  if (slots_[id].job) throw Busy("slot " + std::to_string(id) + " is running a request");
  return slots_[id];
}

Snapshot Scheduler::save_slot(int id) {
  std::lock_guard lock(mu_);
  return free_slot(id).conv->saved();
}

void Scheduler::restore_slot(int id, Snapshot s) {
  std::lock_guard lock(mu_);
  free_slot(id).conv->resume(std::move(s));
}

size_t Scheduler::erase_slot(int id) {
  std::lock_guard lock(mu_);
  Conversation& conv = *free_slot(id).conv;
  const size_t n = conv.tokens().size();
  conv.reset();
  return n;
}

bool Scheduler::waits_for_leader(const Job& job) const {
  const std::shared_ptr<Job> leader = job.leader_.lock();
  if (!leader) return false;
  if (std::find(queue_.begin(), queue_.end(), leader) != queue_.end()) return true;
  for (const Slot& s : slots_)
    if (s.job == leader) return s.gen->prefilling() && s.conv->tokens().size() + 1 < job.req_.prompt.size();
  return false;  // ended: the sample prefills itself
}

Scheduler::Slot* Scheduler::leader_at_copy_point(const Job& job) {
  const std::shared_ptr<Job> leader = job.leader_.lock();
  for (Slot& s : slots_)
    if (leader && s.job == leader && s.conv->tokens().size() + 1 == job.req_.prompt.size() &&
        std::equal(s.conv->tokens().begin(), s.conv->tokens().end(), job.req_.prompt.begin()))
      return &s;
  return nullptr;
}

void Scheduler::admit() {
  // Fill free slots in queue order, passing over samples that wait for their leader; prefer the
  // free slot whose conversation the prompt continues.
  for (auto it = queue_.begin(); it != queue_.end();) {
    std::vector<Slot*> free;
    for (auto& s : slots_)
      if (!s.job) free.push_back(&s);
    if (free.empty()) break;
    if (waits_for_leader(**it)) {
      ++it;
      continue;
    }
    std::shared_ptr<Job> job = *it;
    it = queue_.erase(it);
    Slot* pick = free.front();
    for (Slot* s : free)
      if (s->conv->continues_with(job->req_.prompt)) pick = s;
    try {
      if (const Slot* leader = leader_at_copy_point(*job)) pick->conv->resume(leader->conv->saved());
      start(*pick, job);
    } catch (const std::exception& e) {
      job->push({JobEvent::error, e.what(), {}, {}});
    }
  }
}

void Scheduler::end(Slot& slot, JobEvent last) {
  // The slot is freed under the lock: submit() and stats() count busy slots from other
  // threads (TSan found the move out of slot.job done without it).
  std::shared_ptr<Job> job;
  {
    std::lock_guard lock(mu_);
    const bool cancelled = last.kind == JobEvent::done && last.result.finish == FinishReason::cancelled;
    ++(cancelled ? stats_.cancelled : stats_.completed);
    if (last.kind == JobEvent::done) stats_.spec += last.result.spec;
    job = std::move(slot.job);
    slot.gen.reset();
  }
  job->push(std::move(last));
}

std::span<const int> Scheduler::next_input(Slot& slot, size_t max_prefill) {
  try {
    if (slot.job->cancelled()) slot.gen->cancel();
    const std::span<const int> in = slot.gen->next_input(max_prefill);
    if (!in.empty()) {
      e_.model().check_tokens(in);  // a bad id fails its own request, not the whole step
      return in;
    }
    end(slot, JobEvent{JobEvent::done, {}, slot.gen->result(), {}});
  } catch (const std::exception& e) {
    slot.conv->reset();
    end(slot, JobEvent{JobEvent::error, e.what(), {}, {}});
  }
  return {};
}

void Scheduler::loop() {
  while (true) {
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !queue_.empty() || busy_slots() > 0; });
      if (stop_) break;
      admit();
    }
    // The step: every decoding slot's next token, then prefill chunks from what is left of
    // the budget, the prefilling slots in turn from next_prefill_.
    std::vector<Slot*> members;
    std::vector<SessionStep> steps;
    size_t tokens = 0;
    auto join = [&](Slot& slot, size_t max_prefill) {
      const std::span<const int> in = next_input(slot, max_prefill);
      if (in.empty()) return;
      members.push_back(&slot);
      steps.push_back({&slot.conv->session(), in});
      tokens += in.size();
    };
    for (auto& s : slots_)
      if (s.job && s.job->cancelled()) next_input(s, 1);  // ends it, even if no budget is left for it
    for (auto& s : slots_)
      if (s.job && !s.gen->prefilling()) join(s, 1);
    const size_t n_slots = slots_.size();
    for (size_t k = 0; k < n_slots && tokens < batch_tokens_; ++k) {
      Slot& s = slots_[(next_prefill_ + k) % n_slots];
      if (s.job && s.gen->prefilling()) join(s, batch_tokens_ - tokens);
    }
    next_prefill_ = (next_prefill_ + 1) % n_slots;
    if (steps.empty()) continue;
    // Speculative generations read every row of theirs (and DSpark the layers' streams).
    ForwardTrace trace;
    bool traced = false;
    std::vector<StepRole> roles;
    for (Slot* s : members) {
      traced |= s->gen->needs_trace();
      s->gen->prepare(trace);
      roles.push_back(s->gen->role());
    }
    std::vector<std::vector<float>> logits;
    const auto started = std::chrono::steady_clock::now();
    try {
      logits = e_.forward(steps, traced ? &trace : nullptr, roles);
    } catch (const std::exception& e) {
      // Not a bad request (those fail in next_input): every member's session is in doubt.
      for (Slot* s : members) {
        s->conv->reset();
        end(*s, JobEvent{JobEvent::error, e.what(), {}, {}});
      }
      continue;
    }
    for (size_t i = 0, row0 = 0; i < members.size(); row0 += steps[i].tokens.size(), ++i) {
      Slot& s = *members[i];
      try {
        s.gen->fed(std::move(logits[i]), traced ? &trace : nullptr, static_cast<int>(row0));
      } catch (const std::exception& e) {
        s.conv->reset();
        end(s, JobEvent{JobEvent::error, e.what(), {}, {}});
      }
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    std::lock_guard lock(mu_);
    stats_.step_seconds.observe(seconds);
    ++stats_.steps;
    stats_.step_tokens += tokens;
    stats_.max_step_tokens = std::max(stats_.max_step_tokens, tokens);
  }
}

}  // namespace dsv4
