// Model-parallel serving. Under mpirun every rank holds a shard of the model, and every
// forward pass runs on all ranks at once (the collectives inside it meet). A server takes
// requests on rank 0 only, so rank 0 leads: each session it opens and each step it runs is
// first sent to the other ranks, which follow, running the same step on mirror sessions of
// their own, until the leader stops them. Sessions the leader drops (their last copy
// released) are dropped by the followers with the next message.
//
// Speculative decoding (runtime/speculative.h) runs on the mirrors too: a decoder's passes are
// collective (its drafter's and the verify rows' logits), so each follower keeps a decoder per
// mirror session and makes the same calls as rank 0, told which by the role of each entry of
// a step (a prefill chunk, with the prompt token after it, or a verify step) and by a message
// when rank 0 starts a decoder. Both sides check after each choice that they chose alike.
//
// The wire (MPI broadcasts from rank 0): a head [op, id, entries, ints, drops], then, when any
// of those are non-zero, a body [drops..., then for a step (session id, token count, role,
// next) per entry and the tokens; for a decoder its settings]. One thread at a time calls into
// a Leader.
#pragma once

#include <memory>
#include <span>
#include <vector>

#include "model/model.h"
#include "runtime/speculative.h"

namespace dsv4 {

// What a step's entry is to the session's speculative decoder.
struct StepRole {
  enum Kind : int { plain, prefill, verify } kind = plain;
  int next = -1;  // prefill: the prompt token after the chunk, -1 after the last one
};

// A decoder rank 0 started on a session (SpecDecoder's constructor or restart).
struct DrafterStart {
  bool restart = false;
  SpecMode mode = SpecMode::off;
  int draft = 0, n_ids = 0;
  SamplingParams sampling;
};

class Leader {
 public:
  explicit Leader(const Model& model);  // rank 0 of a distributed run (else Error)

  Session new_session();
  // Model::forward over a batch, on every rank; roles (empty: all plain) say what each entry
  // is to its speculative decoder, trace as Model::forward's.
  std::vector<std::vector<float>> forward(std::span<const SessionStep> steps, std::span<const StepRole> roles = {},
                                          ForwardTrace* trace = nullptr);
  void start_drafter(const Session& s, const DrafterStart& d);
  void stop();  // the followers return from follow(); later calls are errors

 private:
  struct Drops;
  void send(int op, int id, std::span<const SessionStep> steps, std::span<const StepRole> roles,
            std::span<const int> settings);

  const Model& model_;
  int next_id_ = 0;
  bool stopped_ = false;
  std::shared_ptr<Drops> drops_;
};

// Ranks > 0: runs what the leader sends until it stops.
void follow(const Model& model);

}  // namespace dsv4
