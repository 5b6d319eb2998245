// MPI when DSV4_WITH_MPI, a single process otherwise.
#include "dist/comm.h"

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <vector>

#include "core/check.h"

#ifdef DSV4_WITH_MPI
#include <mpi.h>
#endif

namespace dsv4 {

namespace {

Comm& instance() {
  static Comm c;
  return c;
}

// Times a collective and counts its bytes.
class Timed {
 public:
  Timed(Comm::Stats& s, size_t bytes) : s_(s), t0_(std::chrono::steady_clock::now()) {
    s_.calls++;
    s_.bytes += bytes;
  }
  ~Timed() { s_.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count(); }

 private:
  Comm::Stats& s_;
  std::chrono::steady_clock::time_point t0_;
};

}  // namespace

void Comm::init(int* argc, char*** argv) {
#ifdef DSV4_WITH_MPI
  // Launched by mpirun: OpenMPI, MPICH / PMI and Slurm set one of these.
  if (!std::getenv("OMPI_COMM_WORLD_SIZE") && !std::getenv("PMI_SIZE") && !std::getenv("PMIX_RANK")) return;
  // A server calls the collectives from its engine thread, one thread at a time.
  int provided = 0;
  MPI_Init_thread(argc, argv, MPI_THREAD_SERIALIZED, &provided);
  DSV4_CHECK(provided >= MPI_THREAD_SERIALIZED, "this MPI library cannot be called from several threads in turn");
  std::atexit([] {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Finalize();
  });
  Comm& c = instance();
  MPI_Comm_rank(MPI_COMM_WORLD, &c.rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &c.world_);
#else
  (void)argc;
  (void)argv;
#endif
}

Comm& Comm::get() { return instance(); }

void Comm::all_reduce_sum([[maybe_unused]] std::span<float> v) const {
  if (!distributed()) return;
  // Fault injection for the tests: DSV4_TEST_KILL_RANK=r kills rank r at its 20th all-reduce,
  // in the middle of a forward pass, as a crashed machine would.
  static const char* kill = std::getenv("DSV4_TEST_KILL_RANK");
  if (kill && std::atoi(kill) == rank_ && stats_.calls == 20) std::raise(SIGKILL);
#ifdef DSV4_WITH_MPI
  Timed t(stats_, v.size_bytes());
  MPI_Allreduce(MPI_IN_PLACE, v.data(), static_cast<int>(v.size()), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
#endif
}

void Comm::all_gather(std::span<const float> part, std::span<float> all) const {
  DSV4_CHECK(all.size() == part.size() * static_cast<size_t>(world_), "all_gather: ", all.size(),
             " floats for ", world_, " parts of ", part.size());
  if (!distributed()) {
    std::copy(part.begin(), part.end(), all.begin());
    return;
  }
#ifdef DSV4_WITH_MPI
  Timed t(stats_, all.size_bytes());
  MPI_Allgather(part.data(), static_cast<int>(part.size()), MPI_FLOAT, all.data(), static_cast<int>(part.size()),
                MPI_FLOAT, MPI_COMM_WORLD);
#endif
}

void Comm::broadcast([[maybe_unused]] std::span<int> v, [[maybe_unused]] int root) const {
  if (!distributed()) return;
#ifdef DSV4_WITH_MPI
  Timed t(stats_, v.size_bytes());
  MPI_Bcast(v.data(), static_cast<int>(v.size()), MPI_INT, root, MPI_COMM_WORLD);
#endif
}

void Comm::check_same([[maybe_unused]] uint64_t value, [[maybe_unused]] const std::string& what) const {
  if (!distributed()) return;
#ifdef DSV4_WITH_MPI
  std::vector<uint64_t> all(world_);
  MPI_Allgather(&value, 1, MPI_UINT64_T, all.data(), 1, MPI_UINT64_T, MPI_COMM_WORLD);
  for (int r = 1; r < world_; ++r)
    DSV4_CHECK(all[r] == all[0], "ranks disagree on ", what, " (rank 0 and rank ", r, " differ)");
#endif
}

void Comm::abort(int code) const {
#ifdef DSV4_WITH_MPI
  if (distributed()) MPI_Abort(MPI_COMM_WORLD, code);
#endif
  std::exit(code);
}

}  // namespace dsv4
