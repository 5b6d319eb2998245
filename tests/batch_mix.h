// Batch invariance, checked on random mixes: B sessions with random token sequences advance
// together through batched steps (Model::forward over SessionSteps), each joining a step with
// a chunk of random size or sitting it out; then every session runs alone with the same
// chunks. Every logit after every chunk must be the same bit for bit. The thread count of
// each run is random too. Used by test_session (every kernel path) and, under mpirun, by
// batch_check (test_mpi).
#pragma once

#include <string>

#include "model/model.h"

namespace dsv4::test {

struct MixReport {
  int sessions = 0, steps = 0, tokens = 0, chunks = 0;
  size_t mismatches = 0;  // chunks whose logits differ from the session run alone
  std::string first;      // the first mismatch, described
};

// One random mix from seed: 1 .. max_sessions sessions of 1 .. max_tokens tokens, chunks of
// 1 .. max_chunk tokens.
MixReport check_random_mix(const Model& m, unsigned seed, int max_sessions, int max_tokens, int max_chunk);

}  // namespace dsv4::test
