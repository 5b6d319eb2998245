// Rotary position embedding on interleaved pairs (x[2i], x[2i+1]) of the last rope_dim dims,
// with optional YaRN frequency interpolation (the reference's precompute_freqs_cis). Layers
// with a compressor use compress_rope_theta + YaRN; pure sliding-window layers rope_theta only.
#pragma once

#include <span>
#include <cstdint>
#include <vector>

namespace dsv4 {

class Rope {
 public:
  // original_seq_len = 0 disables YaRN.
  Rope(int rope_dim, double theta, int original_seq_len, double factor, double beta_fast,
       double beta_slow);

  // Rotates x [rope_dim] (the tail of a head) for position pos; inverse rotates backwards.
  // Each thread keeps the cos / sin of the last position it rotated by, so the heads of one
  // token share them (the values are those recomputed, so no bit depends on the calls' order).
  void apply(float* x, long long pos, bool inverse = false) const;
  int dim() const { return dim_; }
  const std::vector<float>& freqs() const { return freqs_; }

 private:
  int dim_;
  std::vector<float> freqs_;  // [dim / 2] radians per position, float32 like the reference
  uint64_t id_;               // which frequencies a thread's cached cos / sin belong to
};

}  // namespace dsv4
