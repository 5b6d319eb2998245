// The leader's messages and the followers' loop.
#include "dist/mirror.h"

#include <map>
#include <mutex>

#include "core/check.h"
#include "dist/comm.h"

namespace dsv4 {

namespace {

enum Op : int { kStop, kNewSession, kForward };
constexpr int kHead = 5;  // op, id, entries, tokens, drops

}  // namespace

struct Leader::Drops {
  std::mutex mu;
  std::vector<int> ids;  // sessions released since the last message
};

Leader::Leader(const Model& model) : model_(model), drops_(std::make_shared<Drops>()) {
  DSV4_CHECK(Comm::get().distributed() && Comm::get().rank() == 0, "only rank 0 of a distributed run leads");
}

void Leader::send(int op, int id, std::span<const SessionStep> steps) {
  DSV4_CHECK(!stopped_, "the followers were stopped");
  std::vector<int> body;
  {
    std::lock_guard<std::mutex> lock(drops_->mu);
    body.swap(drops_->ids);
  }
  const int drops = static_cast<int>(body.size());
  int tokens = 0;
  for (const SessionStep& st : steps) {
    body.push_back(st.session->id);
    body.push_back(static_cast<int>(st.tokens.size()));
    tokens += static_cast<int>(st.tokens.size());
  }
  for (const SessionStep& st : steps) body.insert(body.end(), st.tokens.begin(), st.tokens.end());
  int head[kHead] = {op, id, static_cast<int>(steps.size()), tokens, drops};
  Comm::get().broadcast(head);
  if (!body.empty()) Comm::get().broadcast(body);
}

Session Leader::new_session() {
  Session s = model_.new_session();
  s.id = next_id_++;
  // Released with the last copy of the session: the followers drop their mirror with the next message.
  std::weak_ptr<Drops> drops = drops_;
  const int id = s.id;
  s.lease = std::shared_ptr<void>(nullptr, [drops, id](void*) {
    if (auto d = drops.lock()) {
      std::lock_guard<std::mutex> lock(d->mu);
      d->ids.push_back(id);
    }
  });
  send(kNewSession, s.id, {});
  return s;
}

std::vector<std::vector<float>> Leader::forward(std::span<const SessionStep> steps) {
  // Checked before sending, so that a bad step fails here alone instead of on every rank.
  DSV4_CHECK(!steps.empty(), "no sessions to step");
  for (const SessionStep& st : steps) {
    DSV4_CHECK(st.session != nullptr && st.session->id >= 0, "a session not opened by this leader");
    model_.check_tokens(st.tokens);
  }
  send(kForward, -1, steps);
  return model_.forward(steps);
}

void Leader::stop() {
  if (!stopped_) send(kStop, -1, {});
  stopped_ = true;
}

void follow(const Model& model) {
  const Comm& comm = Comm::get();
  DSV4_CHECK(comm.rank() > 0, "rank 0 leads; the other ranks follow");
  std::map<int, Session> mirrors;
  for (;;) {
    int head[kHead];
    comm.broadcast(head);
    const int entries = head[2], tokens = head[3], drops = head[4];
    std::vector<int> body(static_cast<size_t>(drops) + 2 * entries + tokens);
    if (!body.empty()) comm.broadcast(body);
    for (int i = 0; i < drops; ++i) mirrors.erase(body[i]);
    switch (head[0]) {
      case kStop: return;
      case kNewSession: mirrors[head[1]] = model.new_session(); break;
      case kForward: {
        std::vector<SessionStep> steps(entries);
        const int* tok = body.data() + drops + 2 * entries;
        for (int i = 0; i < entries; ++i) {
          const int id = body[drops + 2 * i], n = body[drops + 2 * i + 1];
          auto it = mirrors.find(id);
          DSV4_CHECK(it != mirrors.end(), "rank 0 fed session ", id, ", which this rank does not hold");
          steps[i] = {&it->second, std::span<const int>(tok, n)};
          tok += n;
        }
        model.forward(steps);
        break;
      }
      default: DSV4_CHECK(false, "unknown message ", head[0], " from rank 0");
    }
  }
}

}  // namespace dsv4
