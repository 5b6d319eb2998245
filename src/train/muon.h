// Muon, DeepSeek-V4's optimizer for the 2-D hidden matrices: momentum with Nesterov, the update
// orthogonalized by Newton-Schulz iterations and scaled to the matrix's shape so that one
// learning rate serves it and AdamW (train/adamw.h) alike.
#pragma once

#include <span>
#include <vector>

namespace dsv4 {

struct MuonParams {
  float momentum = 0.95f;
  bool nesterov = true;
  // Newton-Schulz: `fast` quintic steps with Muon's coefficients (3.4445, -4.7750, 2.0315),
  // which push every singular value into about [0.7, 1.2] quickly, then `stable` steps with
  // (2, -1.5, 0.5), whose fixed point 1 is superattracting, to settle them at 1.
  int ns_fast = 8, ns_stable = 2;
  float update_rms = 0.2f;  // the update is scaled to this RMS times lr (AdamW's typical RMS)
  float weight_decay = 0.1f;
};
struct MuonState {
  std::vector<float> momentum;
};
// w [rows, cols] row-major: buf = momentum * buf + g; u = nesterov ? g + momentum * buf : buf;
// w -= lr * (update_rms * sqrt(max(rows, cols)) * NS(u) + weight_decay * w).
void muon_step(std::span<float> w, int rows, int cols, std::span<const float> g, MuonState& s, const MuonParams& p,
               float lr);

// The orthogonalization of g [rows, cols]: approximately U V^T of its SVD.
std::vector<float> newton_schulz(std::span<const float> g, int rows, int cols, int fast, int stable);

}  // namespace dsv4
