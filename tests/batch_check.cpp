// batch_check DIR [SEEDS]: the batch-invariance check of batch_mix.h on a checkpoint, in one
// process or on every rank of an mpirun (all ranks run the same mixes in lockstep: the
// collectives of a batched step meet like those of a single one). Prints one line per rank 0
// and exits 1 on any mismatch. Run by test_mpi under mpirun -np 2.
#include <cstdio>
#include <exception>
#include <string>

#include "batch_mix.h"
#include "dist/comm.h"

int main(int argc, char** argv) {
  dsv4::Comm::init(&argc, &argv);
  if (argc < 2) {
    std::fprintf(stderr, "usage: batch_check DIR [SEEDS]\n");
    return 2;
  }
  try {
    const dsv4::Model m(argv[1]);
    const int seeds = argc > 2 ? std::stoi(argv[2]) : 4;
    size_t mismatches = 0, chunks = 0;
    std::string first;
    for (int seed = 1; seed <= seeds; ++seed) {
      const dsv4::test::MixReport r = dsv4::test::check_random_mix(m, static_cast<unsigned>(seed), 8, 60, 16);
      if (r.mismatches && first.empty()) first = r.first;
      mismatches += r.mismatches;
      chunks += r.chunks;
    }
    if (dsv4::Comm::get().rank() == 0)
      std::printf("batch_check: %d ranks, %d random mixes, %zu chunks, %zu differ from the session alone%s%s\n",
                  dsv4::Comm::get().world(), seeds, chunks, mismatches, first.empty() ? "" : ": ", first.c_str());
    return mismatches == 0 ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "batch_check: %s\n", e.what());
    return 1;
  }
}
