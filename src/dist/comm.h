// The processes one model runs on: rank `rank()` of `world()`. Under mpirun (dsv4 built with
// MPI) this is MPI_COMM_WORLD; otherwise a single process, where every collective is a no-op.
// Collectives block, and every rank must make the same calls in the same order: the model code
// calls them at fixed points of the forward pass (see model/model.h).
//
// Failure: an Error on any rank ends the whole job (abort()), and OpenMPI's mpirun ends the job
// when a rank dies, so no rank waits forever in a collective.
#pragma once

#include <cstdint>
#include <span>
#include <string>

namespace dsv4 {

class Comm {
 public:
  // Initializes MPI when the process was started by mpirun (MPI built in), once.
  static void init(int* argc, char*** argv);
  static Comm& get();

  int rank() const { return rank_; }
  int world() const { return world_; }
  bool distributed() const { return world_ > 1; }

  void all_reduce_sum(std::span<float> v) const;                          // in place
  void all_gather(std::span<const float> part, std::span<float> all) const;  // equal parts, rank order
  void broadcast(std::span<int> v, int root = 0) const;
  // Throws Error naming `what` on every rank unless all ranks pass the same value.
  void check_same(uint64_t value, const std::string& what) const;
  [[noreturn]] void abort(int code) const;  // ends every rank of the job

  // Bytes and calls of the collectives so far (for the communication measurements).
  struct Stats {
    uint64_t calls = 0, bytes = 0;
    double seconds = 0;
  };
  const Stats& stats() const { return stats_; }

 private:
  int rank_ = 0, world_ = 1;
  mutable Stats stats_;
};

}  // namespace dsv4
