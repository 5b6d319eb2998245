// Model-parallel serving. Under mpirun every rank holds a shard of the model, and every
// forward pass runs on all ranks at once (the collectives inside it meet). A server takes
// requests on rank 0 only, so rank 0 leads: each session it opens and each step it runs is
// first sent to the other ranks, which follow, running the same step on mirror sessions of
// their own, until the leader stops them. Sessions the leader drops (their last copy
// released) are dropped by the followers with the next message.
//
// The wire (MPI broadcasts from rank 0): a head [op, id, entries, tokens, drops], then, when
// any of those are non-zero, a body [drops..., (session id, token count) per entry...,
// tokens...]. One thread at a time calls into a Leader.
#pragma once

#include <memory>
#include <span>
#include <vector>

#include "model/model.h"

namespace dsv4 {

class Leader {
 public:
  explicit Leader(const Model& model);  // rank 0 of a distributed run (else Error)

  Session new_session();
  // Model::forward over a batch, on every rank.
  std::vector<std::vector<float>> forward(std::span<const SessionStep> steps);
  void stop();  // the followers return from follow(); later calls are errors

 private:
  struct Drops;
  void send(int op, int id, std::span<const SessionStep> steps);

  const Model& model_;
  int next_id_ = 0;
  bool stopped_ = false;
  std::shared_ptr<Drops> drops_;
};

// Ranks > 0: runs what the leader sends until it stops.
void follow(const Model& model);

}  // namespace dsv4
