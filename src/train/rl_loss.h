// The losses of post-training, per token, with their gradients (tests/test_rl_loss.cpp checks
// them against hand-computed cases):
//   GRPO (DeepSeekMath): G completions sampled per prompt, each rewarded by a checker; the
//   advantage of completion i is its reward normalized within the group, and every token of it
//   is pushed by the clipped policy ratio (PPO's surrogate) with a KL penalty toward the
//   reference model (the unbiased "k3" estimator).
//   On-policy distillation: the student samples, and at every position of its own samples it
//   minimizes the reverse KL, KL(student || teacher), over the whole vocabulary.
#pragma once

#include <span>
#include <vector>

namespace dsv4 {

// A_i = (r_i - mean r) / (std r + eps), std over the group (population); all zero when the
// rewards are all equal (no signal: the group teaches nothing).
std::vector<double> group_advantages(std::span<const double> rewards, double eps = 1e-4);

struct GrpoParams {
  double clip = 0.2;   // the ratio is clipped to [1 - clip, 1 + clip]
  double beta = 0.04;  // weight of the KL penalty toward the reference
};

struct TokenLoss {
  double loss = 0;
  double dlogp = 0;  // d loss / d log pi(token)
};

// For one sampled token: logp = log pi(token) under the policy being trained, old_logp under
// the policy before this batch's updates (equal to logp on the first update, so the ratio is
// 1 there), ref_logp under the reference model.
//   ratio = exp(logp - old_logp)
//   loss  = -min(ratio A, clip(ratio, 1 - clip, 1 + clip) A) + beta (exp(ref - logp) - (ref - logp) - 1)
TokenLoss grpo_token_loss(double logp, double old_logp, double ref_logp, double advantage, const GrpoParams& p);

// KL(student || teacher) = sum_v s_v (log s_v - log t_v) of one position's logits [vocab];
// fills dstudent [vocab] with d KL / d student_logits (scaled by `scale`) and returns the KL.
double reverse_kl(std::span<const float> student_logits, std::span<const float> teacher_logits,
                  std::span<float> dstudent, double scale = 1.0);

// log softmax(logits)[token], in double.
double log_prob(std::span<const float> logits, int token);
// Its gradient times dlogp: dlogits = dlogp (onehot(token) - softmax(logits)) (overwritten).
void log_prob_backward(std::span<const float> logits, int token, double dlogp, std::span<float> dlogits);

}  // namespace dsv4
