// The optimizers DeepSeek-V4 is trained with: Muon for the 2-D hidden matrices (momentum with
// Nesterov, the update orthogonalized by Newton-Schulz iterations and scaled to the matrix's
// shape so that one learning rate serves both optimizers) and AdamW for the rest (embedding,
// head, norms, biases, mHC parameters); a warmup + cosine schedule and global gradient-norm
// clipping. Plain float loops: the models trained here are small.
#pragma once

#include <span>
#include <vector>

namespace dsv4 {

struct AdamWParams {
  float beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f, weight_decay = 0.1f;
};
struct AdamWState {
  std::vector<float> m, v;  // first and second moments (sized on the first step)
  long long step = 0;
};
// w -= lr * (m_hat / (sqrt(v_hat) + eps) + weight_decay * w), bias-corrected moments.
void adamw_step(std::span<float> w, std::span<const float> g, AdamWState& s, const AdamWParams& p, float lr);

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

// Linear warmup from 0 over `warmup` steps, then cosine decay to final_fraction * peak at `total`.
float lr_at(long long step, long long warmup, long long total, float peak, float final_fraction = 0.1f);

// Scales every gradient by min(1, max_norm / global L2 norm); returns the norm before clipping.
double clip_grad_norm(std::span<const std::span<float>> grads, double max_norm);

}  // namespace dsv4
