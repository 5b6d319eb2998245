// The leader's messages and the followers' loop.
#include "dist/mirror.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <mutex>

#include "core/check.h"
#include "dist/comm.h"

namespace dsv4 {

namespace {

enum Op : int { kStop, kNewSession, kForward, kDrafter };
constexpr int kHead = 5;      // op, id, entries, ints, drops
constexpr int kEntry = 4;     // session id, token count, role, next
constexpr int kSettings = 10;  // DrafterStart

int bits(float f) {
  int i;
  std::memcpy(&i, &f, sizeof i);
  return i;
}

float from_bits(int i) {
  float f;
  std::memcpy(&f, &i, sizeof f);
  return f;
}

std::vector<int> settings_of(const DrafterStart& d) {
  const SamplingParams& p = d.sampling;
  return {d.restart, static_cast<int>(d.mode), d.draft, d.n_ids, bits(p.temperature), bits(p.top_p), p.top_k,
          bits(p.min_p), static_cast<int>(p.seed & 0xffffffffu), static_cast<int>(p.seed >> 32)};
}

DrafterStart drafter_of(const int* v) {
  DrafterStart d;
  d.restart = v[0] != 0;
  d.mode = static_cast<SpecMode>(v[1]);
  d.draft = v[2];
  d.n_ids = v[3];
  d.sampling = {from_bits(v[4]), from_bits(v[5]), v[6], from_bits(v[7]),
                static_cast<uint64_t>(static_cast<uint32_t>(v[8])) | static_cast<uint64_t>(static_cast<uint32_t>(v[9])) << 32};
  return d;
}

}  // namespace

struct Leader::Drops {
  std::mutex mu;
  std::vector<int> ids;  // sessions released since the last message
};

Leader::Leader(const Model& model) : model_(model), drops_(std::make_shared<Drops>()) {
  DSV4_CHECK(Comm::get().distributed() && Comm::get().rank() == 0, "only rank 0 of a distributed run leads");
}

void Leader::send(int op, int id, std::span<const SessionStep> steps, std::span<const StepRole> roles,
                  std::span<const int> settings) {
  DSV4_CHECK(!stopped_, "the followers were stopped");
  std::vector<int> body;
  {
    std::lock_guard<std::mutex> lock(drops_->mu);
    body.swap(drops_->ids);
  }
  const int drops = static_cast<int>(body.size());
  int tokens = 0;
  for (size_t i = 0; i < steps.size(); ++i) {
    const StepRole role = roles.empty() ? StepRole{} : roles[i];
    body.insert(body.end(), {steps[i].session->id, static_cast<int>(steps[i].tokens.size()), role.kind, role.next});
    tokens += static_cast<int>(steps[i].tokens.size());
  }
  for (const SessionStep& st : steps) body.insert(body.end(), st.tokens.begin(), st.tokens.end());
  body.insert(body.end(), settings.begin(), settings.end());
  int head[kHead] = {op, id, static_cast<int>(steps.size()), tokens + static_cast<int>(settings.size()), drops};
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
  send(kNewSession, s.id, {}, {}, {});
  return s;
}

std::vector<std::vector<float>> Leader::forward(std::span<const SessionStep> steps, std::span<const StepRole> roles,
                                                ForwardTrace* trace) {
  // Checked before sending, so that a bad step fails here alone instead of on every rank.
  DSV4_CHECK(!steps.empty(), "no sessions to step");
  DSV4_CHECK(roles.empty() || roles.size() == steps.size(), "a role for each entry of the step");
  for (const SessionStep& st : steps) {
    DSV4_CHECK(st.session != nullptr && st.session->id >= 0, "a session not opened by this leader");
    model_.check_tokens(st.tokens);
  }
  send(kForward, -1, steps, roles, {});
  return model_.forward(steps, nullptr, trace);
}

void Leader::start_drafter(const Session& s, const DrafterStart& d) {
  DSV4_CHECK(s.id >= 0, "a session not opened by this leader");
  send(kDrafter, s.id, {}, {}, settings_of(d));
}

void Leader::stop() {
  if (!stopped_) send(kStop, -1, {}, {}, {});
  stopped_ = true;
}

namespace {

// A follower's copy of one of rank 0's sessions, with the decoder rank 0 runs on it.
struct Mirror {
  Session s;
  std::unique_ptr<SpecDecoder> decoder;
};

// One step as rank 0 made it: verify rows from the mirrors' own decoders (checked against rank
// 0's), the forward, then each decoder's call in rank 0's order.
void follow_step(const Model& model, std::map<int, Mirror>& mirrors, std::span<const int> entries,
                 std::span<const int> tokens) {
  const size_t n = entries.size() / kEntry;
  std::vector<SessionStep> steps(n);
  std::vector<Mirror*> ms(n);
  bool traced = false;
  ForwardTrace tr;
  const int* tok = tokens.data();
  for (size_t i = 0; i < n; ++i) {
    const int* e = entries.data() + i * kEntry;
    auto it = mirrors.find(e[0]);
    DSV4_CHECK(it != mirrors.end(), "rank 0 fed session ", e[0], ", which this rank does not hold");
    Mirror& m = it->second;
    ms[i] = &m;
    std::span<const int> in(tok, static_cast<size_t>(e[1]));
    tok += e[1];
    if (e[2] != StepRole::plain) {
      DSV4_CHECK(m.decoder != nullptr, "rank 0 decodes session ", e[0], " speculatively, but started no decoder here");
      traced = true;
      m.decoder->prepare(tr);
    }
    if (e[2] == StepRole::verify) {
      const std::span<const int> rows = m.decoder->begin_step(m.s);
      DSV4_CHECK(std::equal(rows.begin(), rows.end(), in.begin(), in.end()),
                 "ranks disagree on the drafts of session ", e[0]);
    }
    steps[i] = {&m.s, in};
  }
  const std::vector<std::vector<float>> logits = model.forward(steps, nullptr, traced ? &tr : nullptr);
  for (size_t i = 0, row0 = 0; i < n; row0 += steps[i].tokens.size(), ++i) {
    const int* e = entries.data() + i * kEntry;
    if (e[2] == StepRole::prefill) {
      const int first = ms[i]->decoder->prefilled(ms[i]->s, steps[i].tokens, tr, static_cast<int>(row0), logits[i], e[3]);
      if (first >= 0) check_ranks_chose_alike(std::span<const int>(&first, 1));
    } else if (e[2] == StepRole::verify) {
      check_ranks_chose_alike(ms[i]->decoder->end_step(ms[i]->s, tr, static_cast<int>(row0)).tokens);
    }
  }
}

}  // namespace

void follow(const Model& model) {
  const Comm& comm = Comm::get();
  DSV4_CHECK(comm.rank() > 0, "rank 0 leads; the other ranks follow");
  std::map<int, Mirror> mirrors;
  for (;;) {
    int head[kHead];
    comm.broadcast(head);
    const int entries = head[2], ints = head[3], drops = head[4];
    std::vector<int> body(static_cast<size_t>(drops) + kEntry * entries + ints);
    if (!body.empty()) comm.broadcast(body);
    for (int i = 0; i < drops; ++i) mirrors.erase(body[i]);
    const std::span<const int> rest = std::span<const int>(body).subspan(drops);
    switch (head[0]) {
      case kStop: return;
      case kNewSession: mirrors[head[1]].s = model.new_session(); break;
      case kForward: follow_step(model, mirrors, rest.first(kEntry * entries), rest.subspan(kEntry * entries)); break;
      case kDrafter: {
        DSV4_CHECK(ints == kSettings, "a decoder's settings of ", ints, " values from rank 0");
        auto it = mirrors.find(head[1]);
        DSV4_CHECK(it != mirrors.end(), "rank 0 started a decoder on session ", head[1], ", which this rank does not hold");
        const DrafterStart d = drafter_of(rest.data());
        Mirror& m = it->second;
        if (d.restart) {
          DSV4_CHECK(m.decoder != nullptr, "rank 0 restarted a decoder on session ", head[1], " that is not here");
          m.decoder->restart(d.draft, d.sampling);
        } else {
          m.decoder = std::make_unique<SpecDecoder>(model, d.mode, d.draft, d.n_ids, d.sampling);
        }
        break;
      }
      default: DSV4_CHECK(false, "unknown message ", head[0], " from rank 0");
    }
  }
}

}  // namespace dsv4
