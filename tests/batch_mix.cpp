#include "batch_mix.h"

#include <algorithm>
#include <cstring>
#include <random>
#include <sstream>

#include "core/thread_pool.h"

namespace dsv4::test {

MixReport check_random_mix(const Model& m, unsigned seed, int max_sessions, int max_tokens, int max_chunk) {
  std::mt19937 rng(seed);
  auto uniform = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  MixReport r;
  r.sessions = uniform(1, max_sessions);
  std::vector<std::vector<int>> tokens(r.sessions);
  for (auto& t : tokens) {
    t.resize(uniform(1, max_tokens));
    for (int& v : t) v = uniform(0, m.config().vocab_size - 1);
  }

  // Batched: each step takes a random subset of the unfinished sessions (at least one), each
  // with a chunk of random size, in a random order.
  set_num_threads(uniform(1, 3));
  std::vector<Session> batched;
  for (int i = 0; i < r.sessions; ++i) batched.push_back(m.new_session());
  std::vector<size_t> done(r.sessions, 0);
  std::vector<std::vector<int>> chunks(r.sessions);
  std::vector<std::vector<std::vector<float>>> got(r.sessions);
  for (;;) {
    std::vector<int> open;
    for (int i = 0; i < r.sessions; ++i)
      if (done[i] < tokens[i].size()) open.push_back(i);
    if (open.empty()) break;
    std::shuffle(open.begin(), open.end(), rng);
    std::vector<int> members;
    for (int i : open)
      if (members.empty() || uniform(0, 3) > 0) members.push_back(i);
    std::vector<SessionStep> steps;
    for (int i : members) {
      const int n = std::min<int>(uniform(1, max_chunk), static_cast<int>(tokens[i].size() - done[i]));
      steps.push_back({&batched[i], std::span<const int>(tokens[i]).subspan(done[i], n)});
      chunks[i].push_back(n);
      done[i] += n;
      r.tokens += n;
    }
    const std::vector<std::vector<float>> logits = m.forward(steps);
    for (size_t k = 0; k < members.size(); ++k) got[members[k]].push_back(logits[k]);
    ++r.steps;
  }

  // Alone, with the same chunks, on another thread count.
  set_num_threads(uniform(1, 3));
  for (int i = 0; i < r.sessions; ++i) {
    Session s = m.new_session();
    size_t at = 0;
    for (size_t c = 0; c < chunks[i].size(); ++c) {
      const std::vector<float> want = m.forward(s, std::span<const int>(tokens[i]).subspan(at, chunks[i][c]));
      at += chunks[i][c];
      ++r.chunks;
      if (want.size() == got[i][c].size() && std::memcmp(want.data(), got[i][c].data(), want.size() * 4) == 0)
        continue;
      if (r.mismatches++ == 0) {
        std::ostringstream os;
        os << "seed " << seed << ": session " << i << " of " << r.sessions << ", chunk " << c << " (tokens " << at - chunks[i][c]
           << " .. " << at << ") differs from the session run alone";
        r.first = os.str();
      }
    }
  }
  set_num_threads(0);
  return r;
}

}  // namespace dsv4::test
