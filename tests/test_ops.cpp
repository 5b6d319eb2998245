// The small ops against their definitions: RMSNorm, RoPE (inverse undoes it; YaRN leaves the
// high frequencies alone and divides the low ones by the factor), Hadamard (orthogonal, self-
// inverse), top-k (ties as the reference's torch.topk), mHC Sinkhorn (doubly stochastic).
// Metrics: max-abs error, tolerances stated per test.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "model/hc.h"
#include "ops/hadamard.h"
#include "ops/norm.h"
#include "ops/rope.h"
#include "ops/topk.h"
#include "test_util.h"

namespace dsv4 {
namespace {

std::vector<float> randn(int n, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd;
  std::vector<float> v(n);
  for (float& x : v) x = nd(rng);
  return v;
}

TEST(Ops, RmsNormUnitRms) {
  std::vector<float> x = randn(256, 1), y(256), w(128, 2.0f);
  rmsnorm(x, w, 1e-6f, 128, y);
  for (int r = 0; r < 2; ++r) {
    double ss = 0;
    for (int i = 0; i < 128; ++i) ss += double(y[r * 128 + i]) * y[r * 128 + i];
    EXPECT_NEAR(std::sqrt(ss / 128), 2.0, 1e-5);  // weight 2 -> rms 2
  }
}

TEST(Ops, RopeInverseUndoesRotation) {
  Rope rope(64, 160000.0, 64, 4, 32, 1);
  std::vector<float> x = randn(64, 2), y = x;
  rope.apply(y.data(), 12345);
  rope.apply(y.data(), 12345, true);
  EXPECT_LE(test::max_abs_err(y, x).err, 1e-5);
}

TEST(Ops, YarnScalesOnlyLowFrequencies) {
  Rope plain(64, 160000.0, 0, 4, 32, 1), yarn(64, 160000.0, 64, 4, 32, 1);
  EXPECT_EQ(yarn.freqs()[0], plain.freqs()[0]);  // fastest pair: untouched
  EXPECT_NEAR(yarn.freqs()[31], plain.freqs()[31] / 4, 1e-12);  // slowest: divided by factor
}

TEST(Ops, HadamardIsOrthogonalAndSelfInverse) {
  std::vector<float> x = randn(128, 3), y = x;
  hadamard_rotate(y);
  double nx = 0, ny = 0;
  for (int i = 0; i < 128; ++i) nx += double(x[i]) * x[i], ny += double(y[i]) * y[i];
  EXPECT_NEAR(nx, ny, 1e-4 * nx);
  hadamard_rotate(y);
  EXPECT_LE(test::max_abs_err(y, x).err, 1e-5);
}

TEST(Ops, TopkPicksLargestAndBreaksTiesLikeTorch) {
  const std::vector<float> s = {0.5f, 2.0f, -1.0f, 3.0f, 2.5f};
  EXPECT_EQ(topk_indices(s, 2), (std::vector<int>{3, 4}));
  EXPECT_EQ(topk_indices(s, 9).size(), 5u);
  // The tie of golden tiny, faithful, layer 3, position 42: blocks 0, 3, 5 score exactly 0;
  // the reference keeps block 5.
  const std::vector<float> g = {0, -0.22f, -0.14f, 0, 0.60f, 0, -0.04f, 0.53f, 1.19f, -0.28f};
  EXPECT_EQ(topk_indices(g, 4), (std::vector<int>{4, 5, 7, 8}));
}

TEST(Ops, SinkhornCombIsDoublyStochastic) {
  const int hc = 4, mix = (2 + hc) * hc;
  HcParams p{{}, randn(mix, 4), {1.0f, 1.0f, 1.0f}};
  const std::vector<float> mixes = randn(mix, 5);
  std::vector<float> pre(hc), post(hc), comb(hc * hc);
  hc_split_sinkhorn(mixes, p, hc, 20, 1e-6f, pre.data(), post.data(), comb.data());
  for (int j = 0; j < hc; ++j) {
    float row = 0, col = 0;
    for (int k = 0; k < hc; ++k) row += comb[j * hc + k], col += comb[k * hc + j];
    EXPECT_NEAR(row, 1.0f, 1e-3);
    EXPECT_NEAR(col, 1.0f, 1e-5);  // the last normalisation is over columns
    EXPECT_GT(post[j], 0.0f);
    EXPECT_LT(post[j], 2.0f);
    EXPECT_GT(pre[j], 0.0f);
  }
}

}  // namespace
}  // namespace dsv4
