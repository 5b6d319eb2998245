#include "train/rl_loss.h"

#include <algorithm>
#include <cmath>

#include "core/check.h"

namespace dsv4 {

std::vector<double> group_advantages(std::span<const double> rewards, double eps) {
  DSV4_CHECK(!rewards.empty(), "group_advantages: an empty group");
  double mean = 0;
  for (double r : rewards) mean += r;
  mean /= static_cast<double>(rewards.size());
  double var = 0;
  for (double r : rewards) var += (r - mean) * (r - mean);
  const double sd = std::sqrt(var / static_cast<double>(rewards.size()));
  std::vector<double> a(rewards.size(), 0.0);
  if (sd == 0) return a;
  for (size_t i = 0; i < rewards.size(); ++i) a[i] = (rewards[i] - mean) / (sd + eps);
  return a;
}

TokenLoss grpo_token_loss(double logp, double old_logp, double ref_logp, double advantage, const GrpoParams& p) {
  const double ratio = std::exp(logp - old_logp);
  const double clipped = std::clamp(ratio, 1 - p.clip, 1 + p.clip);
  TokenLoss t;
  // The unclipped term is the smaller one (and so carries the gradient) unless clipping binds.
  const bool unclipped = ratio * advantage <= clipped * advantage;
  t.loss = -(unclipped ? ratio : clipped) * advantage;
  t.dlogp = unclipped ? -ratio * advantage : 0.0;
  const double d = ref_logp - logp;  // k3 = e^d - d - 1 >= 0
  t.loss += p.beta * (std::exp(d) - d - 1);
  t.dlogp += p.beta * (1 - std::exp(d));
  return t;
}

namespace {

// log sum exp of logits [vocab], in double.
double log_sum_exp(std::span<const float> logits) {
  const double mx = *std::max_element(logits.begin(), logits.end());
  double sum = 0;
  for (float l : logits) sum += std::exp(l - mx);
  return mx + std::log(sum);
}

// log softmax of logits [vocab] into out, in double.
void log_softmax(std::span<const float> logits, std::vector<double>& out) {
  const double lse = log_sum_exp(logits);
  out.resize(logits.size());
  for (size_t v = 0; v < logits.size(); ++v) out[v] = logits[v] - lse;
}

}  // namespace

// The RL loops call these once per completion token: no vocabulary-sized buffer.
double log_prob(std::span<const float> logits, int token) {
  DSV4_CHECK(token >= 0 && size_t(token) < logits.size(), "log_prob: token ", token, " outside the vocabulary");
  return logits[token] - log_sum_exp(logits);
}

void log_prob_backward(std::span<const float> logits, int token, double dlogp, std::span<float> dlogits) {
  DSV4_CHECK(token >= 0 && size_t(token) < logits.size() && dlogits.size() == logits.size(),
             "log_prob_backward: token ", token, " outside the vocabulary or sizes do not match");
  const double lse = log_sum_exp(logits);
  for (size_t v = 0; v < logits.size(); ++v)
    dlogits[v] = static_cast<float>(dlogp * ((int(v) == token) - std::exp(logits[v] - lse)));
}

double reverse_kl(std::span<const float> student_logits, std::span<const float> teacher_logits,
                  std::span<float> dstudent, double scale) {
  DSV4_CHECK(student_logits.size() == teacher_logits.size() && dstudent.size() == student_logits.size(),
             "reverse_kl: sizes do not match");
  std::vector<double> ls, lt;
  log_softmax(student_logits, ls);
  log_softmax(teacher_logits, lt);
  double kl = 0;
  for (size_t v = 0; v < ls.size(); ++v) kl += std::exp(ls[v]) * (ls[v] - lt[v]);
  // d KL / d z_k = s_k ((log s_k - log t_k) - KL).
  for (size_t v = 0; v < ls.size(); ++v) dstudent[v] = static_cast<float>(scale * std::exp(ls[v]) * (ls[v] - lt[v] - kl));
  return kl;
}

}  // namespace dsv4
