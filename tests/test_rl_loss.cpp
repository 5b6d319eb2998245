// The post-training losses against hand-computed cases and finite differences.
#include <gtest/gtest.h>

#include <cmath>

#include "train/rl_loss.h"

namespace dsv4 {
namespace {

TEST(Grpo, AdvantagesAreNormalizedWithinTheGroup) {
  // rewards 1, 0, 0, 1: mean 0.5, population std 0.5 -> +-1 (up to eps).
  const std::vector<double> r = {1, 0, 0, 1};
  const std::vector<double> a = group_advantages(r, 0.0);
  EXPECT_DOUBLE_EQ(a[0], 1.0);
  EXPECT_DOUBLE_EQ(a[1], -1.0);
  EXPECT_DOUBLE_EQ(a[3], 1.0);
  // rewards 3, 1, 2: mean 2, std sqrt(2/3).
  const std::vector<double> b = group_advantages(std::vector<double>{3, 1, 2}, 0.0);
  EXPECT_NEAR(b[0], 1.0 / std::sqrt(2.0 / 3.0), 1e-12);
  EXPECT_NEAR(b[2], 0.0, 1e-12);
  // No spread, no signal.
  for (double v : group_advantages(std::vector<double>{1, 1, 1})) EXPECT_EQ(v, 0.0);
}

TEST(Grpo, TokenLossByHand) {
  GrpoParams p;
  p.clip = 0.2, p.beta = 0.0;
  // On-policy (ratio 1): loss -A, gradient -A.
  TokenLoss t = grpo_token_loss(-1.0, -1.0, -1.0, 2.0, p);
  EXPECT_DOUBLE_EQ(t.loss, -2.0);
  EXPECT_DOUBLE_EQ(t.dlogp, -2.0);
  // Ratio e^0.5 = 1.6487 > 1.2 with A > 0: clipped, loss -1.2 A, no gradient.
  t = grpo_token_loss(-0.5, -1.0, -1.0, 1.0, p);
  EXPECT_DOUBLE_EQ(t.loss, -1.2);
  EXPECT_DOUBLE_EQ(t.dlogp, 0.0);
  // Same ratio with A < 0: the unclipped term is smaller (-1.6487 * -1 = 1.6487 vs 1.2):
  // min(1.6487 * A, 1.2 * A) = -1.6487, loss 1.6487, gradient -ratio A = 1.6487.
  t = grpo_token_loss(-0.5, -1.0, -1.0, -1.0, p);
  EXPECT_NEAR(t.loss, std::exp(0.5), 1e-12);
  EXPECT_NEAR(t.dlogp, std::exp(0.5), 1e-12);
  // Ratio e^-0.5 = 0.6065 < 0.8 with A < 0: clipped at 0.8, loss 0.8, no gradient.
  t = grpo_token_loss(-1.5, -1.0, -1.0, -1.0, p);
  EXPECT_DOUBLE_EQ(t.loss, 0.8);
  EXPECT_DOUBLE_EQ(t.dlogp, 0.0);
  // The KL term alone: ref - logp = d = 0.3: k3 = e^0.3 - 0.3 - 1, derivative 1 - e^0.3.
  p.beta = 0.5;
  t = grpo_token_loss(-1.0, -1.0, -0.7, 0.0, p);
  EXPECT_NEAR(t.loss, 0.5 * (std::exp(0.3) - 1.3), 1e-12);
  EXPECT_NEAR(t.dlogp, 0.5 * (1 - std::exp(0.3)), 1e-12);
  // And its derivative by finite differences.
  const double h = 1e-6;
  const double fd = (grpo_token_loss(-1.0 + h, -1.1, -0.7, 0.7, p).loss - grpo_token_loss(-1.0 - h, -1.1, -0.7, 0.7, p).loss) / (2 * h);
  EXPECT_NEAR(grpo_token_loss(-1.0, -1.1, -0.7, 0.7, p).dlogp, fd, 1e-6);
}

TEST(Distill, ReverseKlByHandAndItsGradient) {
  // Two tokens: student logits (0, 0) -> s = (1/2, 1/2); teacher (log 3, 0) -> t = (3/4, 1/4).
  // KL = 1/2 log(2/3) + 1/2 log(2) = 1/2 log(4/3).
  std::vector<float> s = {0.0f, 0.0f}, t = {std::log(3.0f), 0.0f}, d(2);
  EXPECT_NEAR(reverse_kl(s, t, d), 0.5 * std::log(4.0 / 3.0), 1e-6);
  // d/dz_0 = s_0 (log(s_0/t_0) - KL) = 1/2 (log(2/3) - 1/2 log(4/3)).
  EXPECT_NEAR(d[0], 0.5 * (std::log(2.0 / 3.0) - 0.5 * std::log(4.0 / 3.0)), 1e-6);
  EXPECT_NEAR(d[0] + d[1], 0.0, 1e-7);  // shifting all logits changes nothing
  // Equal distributions: zero.
  std::vector<float> same = {0.3f, -1.0f, 2.0f};
  std::vector<float> d3(3);
  EXPECT_NEAR(reverse_kl(same, same, d3), 0.0, 1e-12);
  // Finite differences on a random case.
  std::vector<float> a = {0.5f, -0.2f, 1.1f, 0.0f}, b = {-0.3f, 0.8f, 0.1f, 0.4f}, da(4), scratch(4);
  reverse_kl(a, b, da);
  for (int k = 0; k < 4; ++k) {
    std::vector<float> up = a, down = a;
    up[k] += 1e-3f, down[k] -= 1e-3f;
    const double fd = (reverse_kl(up, b, scratch) - reverse_kl(down, b, scratch)) / 2e-3;
    EXPECT_NEAR(da[k], fd, 1e-4) << k;
  }
  EXPECT_NEAR(log_prob(std::vector<float>{0.0f, 0.0f}, 1), std::log(0.5), 1e-12);
  // d log p(token) / d logits = onehot - softmax, by finite differences.
  std::vector<float> dl(4), z = a;
  log_prob_backward(z, 2, 1.0, dl);
  for (int k = 0; k < 4; ++k) {
    std::vector<float> up = z, down = z;
    up[k] += 1e-3f, down[k] -= 1e-3f;
    EXPECT_NEAR(dl[k], (log_prob(up, 2) - log_prob(down, 2)) / 2e-3, 1e-4) << k;
  }
}

}  // namespace
}  // namespace dsv4
