// The training optimizers against their definitions: Newton-Schulz orthogonalizes, AdamW's
// first steps by hand, Muon's update RMS and direction, the schedule and clipping.
#include <gd.h>
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <functional>
#include <random>
#include <set>

#include "chat/parse.h"
#include "core/check.h"
#include "model/attention.h"
#include "model/compressor.h"
#include "model/hc.h"
#include "model/moe.h"
#include "ops/gemm_f32.h"
#include "ops/norm.h"
#include "ops/rope.h"
#include "ops/swiglu.h"
#include "train/attention_backward.h"
#include "train/attention_head.h"
#include "train/brown.h"
#include "train/chat_data.h"
#include "train/compressor_backward.h"
#include "train/compressor_pool.h"
#include "train/cross_entropy.h"
#include "train/embedding_backward.h"
#include "train/gutenberg.h"
#include "train/hc_backward.h"
#include "train/indexer_backward.h"
#include "train/matmul.h"
#include "train/moe_backward.h"
#include "train/norm_backward.h"
#include "train/adamw.h"
#include "train/muon.h"
#include "train/schedule.h"
#include "train/plot.h"
#include "train/routing.h"
#include "train/swiglu.h"

namespace dsv4 {
namespace {

std::vector<float> randn(size_t n, std::mt19937& rng, float sd = 1.0f) {
  std::normal_distribution<float> nd(0.0f, sd);
  std::vector<float> v(n);
  for (float& x : v) x = nd(rng);
  return v;
}

// max |(X X^T or X^T X) - I| for the smaller Gram matrix of x [r, c].
double orthogonality_error(const std::vector<float>& x, int r, int c) {
  const bool wide = r <= c;
  const int n = wide ? r : c, k = wide ? c : r;
  double worst = 0;
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) {
      double s = 0;
      for (int p = 0; p < k; ++p)
        s += wide ? double(x[size_t(i) * c + p]) * x[size_t(j) * c + p] : double(x[size_t(p) * c + i]) * x[size_t(p) * c + j];
      worst = std::max(worst, std::fabs(s - (i == j ? 1.0 : 0.0)));
    }
  return worst;
}

TEST(NewtonSchulz, OrthogonalizesWideAndTallMatrices) {
  std::mt19937 rng(1);
  for (const auto& [r, c] : {std::pair{48, 80}, std::pair{80, 48}, std::pair{64, 64}}) {
    const std::vector<float> g = randn(size_t(r) * c, rng);
    // The fast steps alone leave the singular values spread around 1; the stabilizing ones
    // settle them there.
    const double fast_only = orthogonality_error(newton_schulz(g, r, c, 8, 0), r, c);
    const double both = orthogonality_error(newton_schulz(g, r, c, 8, 2), r, c);
    EXPECT_LT(both, 0.05) << r << "x" << c;
    EXPECT_LT(both, fast_only) << r << "x" << c;
    EXPECT_GT(fast_only, 0.05) << r << "x" << c << ": the quintic alone does not converge to 1";
  }
  // It keeps the singular vectors: for g = U diag(s) V^T it returns ~U V^T, so a matrix that is
  // already orthogonal (times a scale) comes back unchanged.
  const int n = 32;
  std::vector<float> q(n * n, 0.0f);
  for (int i = 0; i < n; ++i) q[i * n + (i * 7) % n] = 5.0f;  // a scaled permutation
  const std::vector<float> o = newton_schulz(q, n, n, 8, 2);
  for (int i = 0; i < n * n; ++i) EXPECT_NEAR(o[i], q[i] / 5.0f, 0.02) << i;
}

TEST(AdamW, FirstStepsByHand) {
  AdamWParams p;
  p.weight_decay = 0.1f;
  AdamWState s;
  std::vector<float> w = {1.0f, -2.0f};
  const float lr = 0.01f;
  adamw_step(w, std::vector<float>{0.5f, -0.25f}, s, p, lr);
  // Step 1: m_hat = g, v_hat = g^2, so the update is sign(g) (up to eps).
  EXPECT_NEAR(w[0], 1.0f - lr * (1.0f + 0.1f * 1.0f), 1e-6);
  EXPECT_NEAR(w[1], -2.0f - lr * (-1.0f + 0.1f * -2.0f), 1e-6);
  // Step 2 with g = 0: m = 0.9 * 0.1 * g1, v = 0.95 * 0.05 * g1^2, corrected by 1 - beta^2.
  const float w0 = w[0];
  adamw_step(w, std::vector<float>{0.0f, 0.0f}, s, p, lr);
  const double m_hat = 0.9 * 0.1 * 0.5 / (1 - 0.81), v_hat = 0.95 * 0.05 * 0.25 / (1 - 0.9025);
  EXPECT_NEAR(w[0], w0 - lr * (m_hat / (std::sqrt(v_hat) + 1e-8) + 0.1 * w0), 1e-6);
}

TEST(NewtonSchulz, IsThePlainIterationBitwise) {
  // Metric: exact. newton_schulz (Gram panels, gemm_f32's tiles, AVX2 combinations) against the
  // iteration written plainly: gemm_f32_reference's fma chains for X X^T, A A and B X (A is
  // symmetric, so A A^T is A A), a
  // rounded multiply and add per element for B and X. Wide, tall (run transposed) and odd
  // sizes (the vector loops' tails).
  std::mt19937 rng(4);
  for (const auto& [rows, cols] : {std::pair{48, 80}, std::pair{80, 48}, std::pair{37, 45}}) {
    const std::vector<float> g = randn(size_t(rows) * cols, rng);
    const bool tall = rows > cols;
    const int r = tall ? cols : rows, c = tall ? rows : cols;
    std::vector<float> x(g.size());
    for (int i = 0; i < r; ++i)
      for (int j = 0; j < c; ++j) x[size_t(i) * c + j] = tall ? g[size_t(j) * cols + i] : g[size_t(i) * cols + j];
    double norm = 0;
    for (float v : x) norm += double(v) * v;
    norm = std::sqrt(norm) + 1e-7;
    for (float& v : x) v = static_cast<float>(v / norm);
    std::vector<float> a(size_t(r) * r), aa(a.size()), b(a.size()), bx(x.size());
    for (int it = 0; it < 10; ++it) {
      const bool f = it < 8;
      const float ka = f ? 3.4445f : 2.0f, kb = f ? -4.7750f : -1.5f, kc = f ? 2.0315f : 0.5f;
      std::vector<float> xt(x.size());  // X^T [c, r]
      for (int i = 0; i < r; ++i)
        for (int j = 0; j < c; ++j) xt[size_t(j) * r + i] = x[size_t(i) * c + j];
      gemm_f32_reference(r, r, c, x.data(), c, 1, xt.data(), r, a.data(), r);
      gemm_f32_reference(r, r, r, a.data(), r, 1, a.data(), r, aa.data(), r);
      for (size_t i = 0; i < a.size(); ++i) b[i] = kb * a[i] + kc * aa[i];
      gemm_f32_reference(r, c, r, b.data(), r, 1, x.data(), c, bx.data(), c);
      for (size_t i = 0; i < x.size(); ++i) x[i] = ka * x[i] + bx[i];
    }
    const std::vector<float> got = newton_schulz(g, rows, cols, 8, 2);
    for (int i = 0; i < rows; ++i)
      for (int j = 0; j < cols; ++j)
        ASSERT_EQ(got[size_t(i) * cols + j], tall ? x[size_t(j) * c + i] : x[size_t(i) * c + j])
            << rows << "x" << cols << " at " << i << ", " << j;
  }
}

TEST(Muon, UpdateHasTheTargetRmsAndDescends) {
  std::mt19937 rng(2);
  const int r = 40, c = 96;
  const std::vector<float> w0 = randn(size_t(r) * c, rng), g = randn(size_t(r) * c, rng);
  MuonParams p;
  p.weight_decay = 0;
  MuonState s;
  std::vector<float> w = w0;
  const float lr = 0.01f;
  muon_step(w, r, c, g, s, p, lr);
  double sq = 0, dot = 0;
  for (size_t i = 0; i < w.size(); ++i) {
    const double d = w[i] - w0[i];
    sq += d * d;
    dot += d * g[i];
  }
  // An orthogonal [r, c] matrix has RMS sqrt(min(r, c) / (r c)) = 1 / sqrt(max(r, c)); scaled by
  // update_rms * sqrt(max(r, c)), the step's RMS is lr * update_rms whatever the shape.
  const double rms = std::sqrt(sq / w.size());
  EXPECT_NEAR(rms, lr * p.update_rms, 0.03 * lr * p.update_rms);
  EXPECT_LT(dot, 0) << "the step goes against the gradient";
  // Minimizing 0.5 ||W - T||^2 with Muon gets closer to T.
  const std::vector<float> target = randn(size_t(r) * c, rng);
  auto dist = [&] {
    double d = 0;
    for (size_t i = 0; i < w.size(); ++i) d += double(w[i] - target[i]) * (w[i] - target[i]);
    return d;
  };
  const double before = dist();
  MuonState s2;
  for (int step = 0; step < 30; ++step) {
    std::vector<float> grad(w.size());
    for (size_t i = 0; i < w.size(); ++i) grad[i] = w[i] - target[i];
    muon_step(w, r, c, grad, s2, p, 0.1f);
  }
  EXPECT_LT(dist(), 0.5 * before);
}

TEST(Schedule, WarmupThenCosine) {
  EXPECT_FLOAT_EQ(lr_at(0, 10, 100, 1.0f), 0.1f);
  EXPECT_FLOAT_EQ(lr_at(9, 10, 100, 1.0f), 1.0f);
  EXPECT_NEAR(lr_at(10, 10, 100, 1.0f), 1.0f, 1e-6);
  EXPECT_NEAR(lr_at(55, 10, 100, 1.0f, 0.1f), 0.55f, 1e-6);  // halfway: (1 + 0.1) / 2
  EXPECT_FLOAT_EQ(lr_at(100, 10, 100, 1.0f, 0.1f), 0.1f);
  EXPECT_FLOAT_EQ(lr_at(500, 10, 100, 1.0f, 0.1f), 0.1f);
}

TEST(ClipGradNorm, ScalesOnlyAboveTheLimit) {
  std::vector<float> a = {3.0f, 0.0f}, b = {4.0f};
  std::vector<std::span<float>> gs = {a, b};
  EXPECT_DOUBLE_EQ(clip_grad_norm(gs, 10.0), 5.0);
  EXPECT_FLOAT_EQ(a[0], 3.0f);
  EXPECT_DOUBLE_EQ(clip_grad_norm(gs, 1.0), 5.0);
  EXPECT_FLOAT_EQ(a[0], 0.6f);
  EXPECT_FLOAT_EQ(b[0], 0.8f);
}

// Gradient checks: the loss is <probe, output> for a fixed random probe, so dL/doutput = probe;
// each analytic gradient is compared with central differences of the forward, coordinate by
// coordinate. Tolerance: the forward rounds to float, so differences of step h carry ~1e-7 / h.
double loss_of(const std::vector<float>& out, const std::vector<float>& probe) {
  double l = 0;
  for (size_t i = 0; i < out.size(); ++i) l += double(out[i]) * probe[i];
  return l;
}

void check_grad(const char* what, std::vector<float>& param, const std::vector<float>& analytic,
                const std::function<double()>& loss, float h = 1e-2f) {
  ASSERT_EQ(param.size(), analytic.size()) << what;
  double worst = 0;
  for (size_t i = 0; i < param.size(); ++i) {
    const float keep = param[i];
    param[i] = keep + h;
    const double up = loss();
    param[i] = keep - h;
    const double down = loss();
    param[i] = keep;
    const double numeric = (up - down) / (2.0 * h);
    const double err = std::fabs(numeric - analytic[i]) / std::max(1.0, std::fabs(numeric));
    worst = std::max(worst, err);
    EXPECT_LT(err, 2e-3) << what << " coordinate " << i << ": analytic " << analytic[i] << ", numeric " << numeric;
  }
  std::printf("%s: worst relative gradient error %.2g over %zu coordinates\n", what, worst, param.size());
}

TEST(Backward, LinearMatchesFiniteDifferences) {
  std::mt19937 rng(3);
  const int n = 3, in = 8, out = 5;
  std::vector<float> x = randn(n * in, rng), w = randn(out * in, rng), probe = randn(n * out, rng);
  std::vector<float> dx(x.size()), dw(w.size(), 0.0f);
  linear_backward(x, w, probe, n, in, out, dx, dw);
  auto loss = [&] {
    std::vector<float> y(n * out);
    linear_forward(x, w, n, in, out, y);
    return loss_of(y, probe);
  };
  check_grad("linear dx", x, dx, loss);
  check_grad("linear dw", w, dw, loss);
}

TEST(Backward, TransposedInTilesIsTheTranspose) {
  // Metric: exact. Shapes around the 32-wide tiles, with and without zero padding of the rows.
  std::mt19937 rng(3);
  for (const auto& [rows, cols, ld] : std::vector<std::array<int, 3>>{{1, 1, 1}, {31, 33, 31}, {64, 32, 80}, {70, 5, 80}}) {
    const std::vector<float> in = randn(size_t(rows) * cols, rng);
    const std::vector<float> t = transposed(in, rows, cols, ld);
    ASSERT_EQ(t.size(), size_t(cols) * ld);
    for (int c = 0; c < cols; ++c)
      for (int r = 0; r < ld; ++r)
        ASSERT_EQ(t[size_t(c) * ld + r], r < rows ? in[size_t(r) * cols + c] : 0.0f) << rows << "x" << cols << " " << ld;
  }
  EXPECT_THROW(transposed(std::vector<float>(6), 2, 3, 1), Error);
}

TEST(Backward, GramIsTheFullProductBitwise) {
  // Metric: exact. Newton-Schulz's X X^T and A A^T from column panels of 32 down to the
  // diagonal, mirrored block by block, against the whole product: sizes across the panels (a
  // partial last one) and the kernels' 16-wide padding of k. (The AVX2 and scalar paths are symmetric in the same way: DSV4_NO_AVX512=1 /
  // DSV4_NO_AVX2=1 run this test on them.)
  std::mt19937 rng(5);
  for (const auto& [m, k] : std::vector<std::array<int, 2>>{{1, 7}, {33, 16}, {64, 256}, {70, 130}, {128, 128}, {100, 9}}) {
    const std::vector<float> a = randn(size_t(m) * k, rng);
    std::vector<float> full(size_t(m) * m), gram(full.size(), -1.0f);
    matmul_nt(a, a, m, m, k, full);
    gram_nt(a, m, k, gram);
    for (size_t i = 0; i < full.size(); ++i) ASSERT_EQ(gram[i], full[i]) << m << "x" << k << " at " << i;
  }
  std::vector<float> out(4);
  EXPECT_THROW(gram_nt(std::vector<float>(6), 2, 2, out), Error);
}

TEST(Backward, FastLinearMatchesTheReferenceLoops) {
  // The trainer's matrix products (production F32 kernels, padded) against the plain loops,
  // on shapes that are and are not multiples of the kernels' width.
  std::mt19937 rng(30);
  for (auto [n, in, out] : {std::tuple{1, 16, 3}, {5, 8, 5}, {37, 64, 48}, {130, 33, 17}}) {
    std::vector<float> x = randn(size_t(n) * in, rng), w = randn(size_t(out) * in, rng), dy = randn(size_t(n) * out, rng);
    std::vector<float> y(size_t(n) * out), yr(y.size());
    linear_forward(x, w, n, in, out, y);
    linear_forward_reference(x, w, n, in, out, yr);
    for (size_t i = 0; i < y.size(); ++i) ASSERT_NEAR(y[i], yr[i], 1e-4 * std::sqrt(in)) << n << "x" << in << "x" << out;
    std::vector<float> dx(x.size()), dxr(x.size()), dw(w.size(), 0.5f), dwr(w.size(), 0.5f);
    linear_backward(x, w, dy, n, in, out, dx, dw);
    linear_backward_reference(x, w, dy, n, in, out, dxr, dwr);
    for (size_t i = 0; i < dx.size(); ++i) ASSERT_NEAR(dx[i], dxr[i], 1e-4 * std::sqrt(out)) << "dx " << i;
    for (size_t i = 0; i < dw.size(); ++i) ASSERT_NEAR(dw[i], dwr[i], 1e-4 * std::sqrt(n)) << "dw " << i;
    // add_dx: dx added to what is there, exactly as computing it apart and adding (bitwise).
    std::vector<float> dx_added = randn(x.size(), rng), want = dx_added;
    for (size_t i = 0; i < want.size(); ++i) want[i] += dx[i];
    linear_backward(x, w, dy, n, in, out, dx_added, dw, /*add_dx=*/true);
    for (size_t i = 0; i < dx.size(); ++i) ASSERT_EQ(dx_added[i], want[i]) << "dx added " << i;
  }
}

TEST(Backward, RmsNormMatchesFiniteDifferences) {
  std::mt19937 rng(4);
  const int rows = 3, dim = 16;
  std::vector<float> x = randn(rows * dim, rng), weight = randn(dim, rng), probe = randn(rows * dim, rng);
  for (bool with_weight : {true, false}) {
    std::vector<float> wt = with_weight ? weight : std::vector<float>{};
    std::vector<float> dx(x.size()), dweight(wt.size(), 0.0f);
    rmsnorm_backward(x, wt, 1e-6f, dim, probe, dx, dweight);
    auto loss = [&] {
      std::vector<float> y(x.size());
      rmsnorm(x, wt, 1e-6f, dim, y);
      return loss_of(y, probe);
    };
    check_grad("rmsnorm dx", x, dx, loss, 1e-3f);
    if (with_weight) check_grad("rmsnorm dweight", wt, dweight, loss, 1e-3f);
  }
}

TEST(Backward, SwigluWithClampMatchesFiniteDifferences) {
  std::mt19937 rng(5);
  const size_t n = 64;
  std::vector<float> gate = randn(n, rng, 4.0f), up = randn(n, rng, 4.0f), probe = randn(n, rng);
  const float limit = 5.0f;
  // Keep every coordinate away from the clamp's kinks (finite differences straddling one would
  // measure an average of two slopes).
  for (float& v : gate) if (std::fabs(v - limit) < 0.1f) v += 0.3f;
  for (float& v : up) if (std::fabs(std::fabs(v) - limit) < 0.1f) v += 0.3f;
  std::vector<float> dgate(n), dup(n);
  swiglu_backward(gate, up, limit, probe, dgate, dup);
  int clamped = 0;
  for (size_t i = 0; i < n; ++i) clamped += gate[i] > limit || std::fabs(up[i]) > limit;
  EXPECT_GT(clamped, 5) << "the sample must exercise the clamp";
  auto loss = [&] {
    std::vector<float> y(n);
    swiglu(gate, up, limit, y);
    return loss_of(y, probe);
  };
  check_grad("swiglu dgate", gate, dgate, loss, 1e-3f);
  check_grad("swiglu dup", up, dup, loss, 1e-3f);
}

TEST(Backward, CrossEntropyMatchesFiniteDifferences) {
  std::mt19937 rng(6);
  const int n = 4, vocab = 11;
  std::vector<float> logits = randn(n * vocab, rng, 2.0f);
  const std::vector<int> targets = {3, -1, 10, 0};  // one row ignored
  std::vector<float> dlogits(logits.size());
  const double l = cross_entropy(logits, targets, vocab, dlogits);
  EXPECT_GT(l, 0);
  for (int v = 0; v < vocab; ++v) EXPECT_EQ(dlogits[1 * vocab + v], 0.0f) << "ignored row";
  auto loss = [&] {
    std::vector<float> d(logits.size());
    return cross_entropy(logits, targets, vocab, d);
  };
  check_grad("cross-entropy dlogits", logits, dlogits, loss, 1e-3f);
}

TEST(Backward, EmbeddingAccumulatesRows) {
  std::vector<float> dtable(4 * 2, 0.0f);
  embedding_backward(std::vector<int>{2, 0, 2}, std::vector<float>{1, 2, 3, 4, 5, 6}, 2, dtable);
  EXPECT_EQ(dtable, (std::vector<float>{3, 4, 0, 0, 6, 8, 0, 0}));
}

TEST(Backward, MhcSplitAndSinkhornMatchFiniteDifferences) {
  // Through the sigmoids, the row softmax and all 20 unrolled Sinkhorn iterations of the
  // production forward (model/hc.cpp).
  std::mt19937 rng(7);
  const int hc = 4, n_mix = (2 + hc) * hc, iters = 20;
  const float eps = 1e-6f;
  std::vector<float> mixes = randn(n_mix, rng), probe = randn(n_mix, rng);
  HcParams p{{}, randn(n_mix, rng, 0.5f), {0.8f, 1.2f, 0.9f}};
  auto loss = [&] {
    std::vector<float> out(n_mix);
    hc_split_sinkhorn(mixes, p, hc, iters, eps, out.data(), out.data() + hc, out.data() + 2 * hc);
    return loss_of(out, probe);
  };
  const HcSplitGrads g = hc_split_sinkhorn_backward(mixes, p, hc, iters, eps, std::span<const float>(probe).first(hc),
                                                    std::span<const float>(probe).subspan(hc, hc),
                                                    std::span<const float>(probe).subspan(2 * hc));
  check_grad("mHC split + Sinkhorn dmixes", mixes, g.mixes, loss, 1e-3f);
  check_grad("mHC split + Sinkhorn dbase", p.base, g.base, loss, 1e-3f);
  check_grad("mHC split + Sinkhorn dscale", p.scale, std::vector<float>(g.scale, g.scale + 3), loss, 1e-3f);
}

TEST(Backward, MhcPostFastPathIsThePlainLoopsBitwise) {
  // Metric: exact. hc_post_backward's 4-wide path (AVX2, hc = 4) against scalar::'s loops, on
  // the default model's width and on widths with a tail of 1-3 after the groups of 4.
  std::mt19937 rng(18);
  const int hc = 4;
  for (int dim : {256, 13, 3}) {
    std::vector<float> post = randn(hc, rng), comb = randn(hc * hc, rng), out = randn(dim, rng),
                       res = randn(hc * dim, rng), dnew = randn(hc * dim, rng);
    std::vector<float> dpost(hc), dcomb(hc * hc), dout(dim), dres(hc * dim);
    std::vector<float> want_post(hc), want_comb(hc * hc), want_out(dim), want_res(hc * dim);
    hc_post_backward(post, comb, out, res, hc, dim, dnew, dpost, dcomb, dout, dres);
    scalar::hc_post_backward(post, comb, out, res, hc, dim, dnew, want_post, want_comb, want_out, want_res);
    EXPECT_EQ(dpost, want_post) << "dim " << dim;
    EXPECT_EQ(dcomb, want_comb) << "dim " << dim;
    EXPECT_EQ(dout, want_out) << "dim " << dim;
    EXPECT_EQ(dres, want_res) << "dim " << dim;
  }
}

TEST(Backward, MhcPostMatchesFiniteDifferences) {
  std::mt19937 rng(8);
  const int hc = 4, dim = 6;
  std::vector<float> post = randn(hc, rng), comb = randn(hc * hc, rng), out = randn(dim, rng),
                     res = randn(hc * dim, rng), probe = randn(hc * dim, rng);
  std::vector<float> dpost(hc), dcomb(hc * hc), dout(dim), dres(hc * dim);
  hc_post_backward(post, comb, out, res, hc, dim, probe, dpost, dcomb, dout, dres);
  auto loss = [&] {
    std::vector<float> next(hc * dim);
    hc_post(HcMix{post, comb}, out, res, 1, hc, dim, next);
    return loss_of(next, probe);
  };
  check_grad("mHC post dpost", post, dpost, loss);
  check_grad("mHC post dcomb", comb, dcomb, loss);
  check_grad("mHC post dout", out, dout, loss);
  check_grad("mHC post dres", res, dres, loss);
}

TEST(Backward, AttentionHeadWithSinkAndRopeMatchesFiniteDifferences) {
  std::mt19937 rng(9);
  const int dim = 16, n_keys = 7;
  const Rope rope(8, 10000.0, 0, 1, 0, 0);
  std::vector<float> q = randn(dim, rng), keys = randn(n_keys * dim, rng), probe = randn(dim, rng);
  std::vector<float> sink = {0.3f};
  const float scale = 0.4f;
  const long long pos = 37;
  std::vector<float> dq(dim), dkeys(keys.size(), 0.0f);
  std::vector<double> probs;
  const float dsink =
      attention_head_backward(q, keys, n_keys, dim, scale, sink[0], rope, pos, probe, dq, dkeys, probs);
  std::vector<double> want_probs;
  attention_probs(q, keys, n_keys, dim, scale, sink[0], want_probs);
  EXPECT_EQ(probs, want_probs);  // left for the indexer's target
  auto loss = [&] {
    std::vector<float> o(dim), scores, sums;  // the inference forward's head
    std::vector<const float*> rows;
    for (int j = 0; j < n_keys; ++j) rows.push_back(keys.data() + size_t(j) * dim);
    attend_heads(q.data(), 0, 1, rows, dim, scale, sink, rope, pos, scores, sums, o.data());
    return loss_of(o, probe);
  };
  check_grad("attention dq", q, dq, loss, 1e-3f);
  check_grad("attention dkeys (keys are values too)", keys, dkeys, loss, 1e-3f);
  check_grad("attention dsink", sink, {dsink}, loss, 1e-3f);
}

TEST(Backward, RopeIsARotation) {
  std::mt19937 rng(10);
  const Rope rope(16, 160000.0, 1024, 4, 32, 1);  // YaRN frequencies
  for (bool inverse : {false, true}) {
    std::vector<float> x = randn(16, rng), probe = randn(16, rng), dx = probe;
    rope_backward(rope, dx, 1234, inverse);
    auto loss = [&] {
      std::vector<float> y = x;
      rope.apply(y.data(), 1234, inverse);
      return loss_of(y, probe);
    };
    check_grad(inverse ? "inverse rope" : "rope", x, dx, loss, 1e-3f);
  }
}

TEST(Backward, RoutingWeightsMatchFiniteDifferences) {
  std::mt19937 rng(11);
  const int E = 8;
  std::vector<float> logits = randn(E, rng, 2.0f);
  logits[5] = 25.0f;  // above softplus's linear threshold
  const std::vector<int> chosen = {1, 5, 6};
  const float route_scale = 1.5f;
  const std::vector<float> probe = randn(chosen.size(), rng);
  std::vector<float> dlogits(E, 0.0f);
  routing_weights_backward(logits, chosen, route_scale, probe, dlogits);
  auto loss = [&] {  // the weights as model/moe.cpp computes them
    std::vector<float> w;
    double total = 0;
    for (int e : chosen) {
      const float z = logits[e];
      w.push_back(std::sqrt(z > 20.0f ? z : std::log1p(std::exp(z))));
      total += w.back();
    }
    for (float& v : w) v = static_cast<float>(v / total * route_scale);
    return loss_of(w, probe);
  };
  check_grad("routing dlogits", logits, dlogits, loss, 1e-3f);
}

TEST(Backward, RoutingBiasMovesTowardBalance) {
  std::vector<float> bias = {0.0f, 0.0f, 0.0f, 0.0f};
  update_routing_bias(bias, std::vector<long long>{10, 2, 4, 4}, 0.001f);  // mean 5
  EXPECT_EQ(bias, (std::vector<float>{-0.001f, 0.001f, 0.001f, 0.001f}));
}

TEST(Backward, CompressorPoolingMatchesFiniteDifferences) {
  std::mt19937 rng(12);
  const int n_rows = 8, dim = 6;  // an overlapping ratio-4 block: 2 x 4 rows
  std::vector<float> score = randn(n_rows * dim, rng, 2.0f), kv = randn(n_rows * dim, rng), probe = randn(dim, rng);
  std::vector<float> dscore(score.size()), dkv(kv.size());
  compressor_pool_backward(score, kv, n_rows, dim, probe, dscore, dkv);
  auto loss = [&] {
    std::vector<float> e(dim);
    compressor_pool(score.data(), kv.data(), n_rows, dim, e.data());
    return loss_of(e, probe);
  };
  check_grad("compressor pool dscore", score, dscore, loss, 1e-3f);
  check_grad("compressor pool dkv", kv, dkv, loss, 1e-3f);
}

TEST(Backward, IndexerKlMatchesFiniteDifferences) {
  std::mt19937 rng(13);
  const int heads = 4, blocks = 9, dim = 8;
  std::vector<float> q = randn(heads * dim, rng), w = randn(heads, rng), keys = randn(blocks * dim, rng);
  std::vector<float> target = randn(blocks, rng);
  double total = 0;
  for (float& t : target) total += (t = std::exp(t));
  for (float& t : target) t = static_cast<float>(t / total);
  target[3] = 0;  // a block the attention gave nothing (the rest no longer sums to 1: also covered)
  std::vector<float> dq(q.size()), dw(w.size()), dkeys(keys.size(), 0.0f);
  const double kl = indexer_kl_backward(q, w, heads, keys, blocks, dim, target, dq, dw, dkeys);
  EXPECT_GT(kl, 0);
  auto loss = [&] {
    std::vector<float> a(q.size()), b(w.size()), c(keys.size(), 0.0f);
    return indexer_kl_backward(q, w, heads, keys, blocks, dim, target, a, b, c);
  };
  check_grad("indexer KL dq", q, dq, loss, 1e-3f);
  check_grad("indexer KL dw", w, dw, loss, 1e-3f);
  check_grad("indexer KL dkeys", keys, dkeys, loss, 1e-3f);
}

TEST(Brown, TagsStrippedAndPunctuationAttached) {
  const std::string tagged =
      "\n\n\tThe/at jury/nn said/vbd ``/`` no/at evidence/nn ''/'' ,/, and/cc Atlanta's/np$ mayor/nn ./.\n"
      "He/pps wasn't/bedz* there/rb (/( 1/2/cd hour/nn )/) ;/. it/pps ended/vbd ./.\n"
      "\n\n\tA/at new/jj paragraph/nn ?/.\n";
  EXPECT_EQ(brown_to_text(tagged),
            "The jury said \"no evidence\", and Atlanta's mayor. He wasn't there (1/2 hour); it ended.\n"
            "A new paragraph?\n");
}

TEST(Gutenberg, WrappedProseJoinedAndVerseKeptLineByLine) {
  const std::string wrapped1 = "Emma Woodhouse, handsome, clever, and rich, with a comfortable home";
  const std::string wrapped2 = "and happy disposition, seemed to unite some of the best blessings";
  const std::string raw = "[Emma by Jane Austen 1816]\r\n\r\nCHAPTER I\n\n\n" + wrapped1 + "\n" + wrapped2 +
                          "\nof existence; and _had_ lived  nearly\ttwenty-one years.\n\n"
                          "   Hor. Before my God, I might not this beleeue\n"
                          "Without the sensible and true auouch\n"
                          "Of mine owne eyes\n\n"
                          "1:3 And God said, Let there be light: and there was light.\n";
  EXPECT_EQ(gutenberg_to_text(raw), "[Emma by Jane Austen 1816]\nCHAPTER I\n" + wrapped1 + " " + wrapped2 +
                                        " of existence; and had lived nearly twenty-one years.\n"
                                        "Hor. Before my God, I might not this beleeue\n"
                                        "Without the sensible and true auouch\n"
                                        "Of mine owne eyes\n"
                                        "1:3 And God said, Let there be light: and there was light.\n");
  // Short lines make a paragraph verse even where one starts in lower case (Whitman's go on).
  EXPECT_EQ(gutenberg_to_text("Be it so, then I answer'd,\nshort\n" + wrapped2 + "\n"),
            "Be it so, then I answer'd,\nshort\n" + wrapped2 + "\n");
  // Every line a capital: verse, however long its lines.
  EXPECT_EQ(gutenberg_to_text(wrapped1 + "\n(" + wrapped2 + ")\n"), wrapped1 + "\n(" + wrapped2 + ")\n");
  EXPECT_EQ(gutenberg_to_text(" \n\t\n___\n"), "");
  // Not UTF-8: Latin-1, written as UTF-8; UTF-8 stays as it is.
  EXPECT_EQ(gutenberg_to_text("Cassi. And why should C\xe6sar be a Tyrant then?\n"),
            "Cassi. And why should C\xc3\xa6sar be a Tyrant then?\n");
  EXPECT_EQ(gutenberg_to_text("caf\xc3\xa9\n"), "caf\xc3\xa9\n");
}

TEST(ChatData, ConversationsAreCorrectAndRenderedInEveryMode) {
  const std::vector<ChatExample> ex = make_chat_examples(300, 7);
  ASSERT_EQ(ex.size(), 300u);
  const std::vector<ChatExample> again = make_chat_examples(300, 7);
  std::set<std::string> modes;
  int sums = 0;
  for (size_t i = 0; i < ex.size(); ++i) {
    const ChatExample& e = ex[i];
    EXPECT_EQ(e.prompt + e.completion, again[i].prompt + again[i].completion) << "deterministic";
    modes.insert(e.mode);
    // The completion is what the official parser reads back as the assistant's turn.
    const auto parsed = chat::parse_completion(e.completion, e.mode == "non-think" ? chat::ThinkingMode::chat
                                                                                  : chat::ThinkingMode::thinking);
    EXPECT_EQ(parsed.content, e.answer) << e.user;
    EXPECT_EQ(parsed.reasoning_content, e.reasoning) << e.user;
    EXPECT_EQ(e.reasoning.empty(), e.mode == "non-think");
    EXPECT_EQ(e.prompt.find("Reasoning Effort") != std::string::npos, e.mode == "think-max");
    // The sums are right.
    int a, b, c, d;
    if (std::sscanf(e.user.c_str(), "What is %d + %d?", &a, &b) == 2) {
      ASSERT_EQ(std::sscanf(e.answer.c_str(), "%d + %d = %d.", &c, &d, &c), 3) << e.answer;
      EXPECT_EQ(c, a + b) << e.answer;
      ++sums;
    }
  }
  EXPECT_EQ(modes.size(), 3u);
  EXPECT_GT(sums, 20);
}

TEST(Plot, WritesAPngWithEverySeries) {
  const std::string path = ::testing::TempDir() + "dsv4-plot-test.png";
  PlotSeries a{"muon", {}, {}, 0xd62728}, b{"adamw", {}, {}, 0x1f77b4};
  for (int i = 0; i < 200; ++i) {
    a.x.push_back(i), a.y.push_back(5.0 * std::exp(-i / 40.0) + 1.2);
    b.x.push_back(i), b.y.push_back(5.0 * std::exp(-i / 70.0) + 1.4);
  }
  write_line_plot_png(path, {a, b}, {"training loss", "step", "loss", 640, 400, false});
  FILE* f = std::fopen(path.c_str(), "rb");
  ASSERT_TRUE(f);
  gdImagePtr im = gdImageCreateFromPng(f);
  std::fclose(f);
  ASSERT_TRUE(im) << "not a readable PNG";
  EXPECT_EQ(gdImageSX(im), 640);
  EXPECT_EQ(gdImageSY(im), 400);
  int red = 0, blue = 0;
  for (int y = 0; y < 400; ++y)
    for (int x = 0; x < 640; ++x) {
      const int c = gdImageGetTrueColorPixel(im, x, y);
      red += gdTrueColorGetRed(c) == 0xd6 && gdTrueColorGetGreen(c) == 0x27;
      blue += gdTrueColorGetRed(c) == 0x1f && gdTrueColorGetBlue(c) == 0xb4;
    }
  gdImageDestroy(im);
  EXPECT_GT(red, 300) << "the first curve is drawn";
  EXPECT_GT(blue, 300) << "the second curve is drawn";
  std::remove(path.c_str());
  // Bad input is refused with the reason.
  PlotSeries bad{"bad", {1, 2}, {1}, 0};
  EXPECT_THROW(write_line_plot_png(path, {bad}, {}), Error);
  EXPECT_THROW(write_line_plot_png(path, {}, {}), Error);
  PlotSeries neg{"neg", {1, 2}, {1, -1}, 0};
  EXPECT_THROW(write_line_plot_png(path, {neg}, {"", "", "", 100, 100, true}), Error);
  EXPECT_THROW(write_line_plot_png("/nonexistent/dir/x.png", {a}, {}), Error);
}

TEST(Backward, MhcPreMatchesFiniteDifferencesOfTheProductionForward) {
  // hc_pre of model/hc.cpp, whole (mixes with their norm factor, split + Sinkhorn, weighted sum),
  // differentiated with respect to the stream, hc_*_fn, base and scale.
  std::mt19937 rng(14);
  const int hc = 4, dim = 4, flat = hc * dim, n_mix = (2 + hc) * hc, iters = 20;
  std::vector<float> fn = randn(size_t(n_mix) * flat, rng, 0.3f), base = randn(n_mix, rng, 0.5f);
  std::vector<float> scale = {0.8f, 1.2f, 0.9f}, x = randn(flat, rng);
  const std::vector<float> py = randn(dim, rng), ppost = randn(hc, rng), pcomb = randn(hc * hc, rng);
  auto loss = [&] {
    const HcParams p = HcParams::from(fn, base, scale);
    std::vector<float> y(dim);
    HcMix mix;
    hc_pre(p, x, 1, hc, dim, 1e-6f, iters, 1e-6f, y, mix);
    return loss_of(y, py) + loss_of(mix.post, ppost) + loss_of(mix.comb, pcomb);
  };
  std::vector<float> dx(flat), dfn(fn.size(), 0.0f), dbase(n_mix, 0.0f), dscale(3, 0.0f);
  hc_pre_backward(fn, HcParams::from(fn, base, scale), x, hc, dim, 1e-6f, iters, 1e-6f, py, ppost, pcomb, dx, dfn,
                  dbase, dscale);
  check_grad("mHC pre dx", x, dx, loss, 1e-3f);
  check_grad("mHC pre dfn", fn, dfn, loss, 1e-3f);
  check_grad("mHC pre dbase", base, dbase, loss, 1e-3f);
  check_grad("mHC pre dscale", scale, dscale, loss, 1e-3f);
}

TEST(Backward, MhcPreBatchMatchesTheOneTokenDefinition) {
  std::mt19937 rng(21);
  const int hc = 4, dim = 8, flat = hc * dim, mix = (2 + hc) * hc, n = 5;
  std::vector<float> fn = randn(size_t(mix) * flat, rng, 0.3f), base = randn(mix, rng, 0.5f), scale = {0.8f, 1.1f, 0.9f};
  const HcParams p = HcParams::from(fn, base, scale);
  std::vector<float> x = randn(size_t(n) * flat, rng), dy = randn(size_t(n) * dim, rng);
  std::vector<float> dpost = randn(size_t(n) * hc, rng), dcomb = randn(size_t(n) * hc * hc, rng);
  std::vector<float> dx(x.size()), dfn(fn.size(), 0.0f), dbase(mix, 0.0f), dscale(3, 0.0f);
  hc_pre_backward_batch(fn, p, x, n, hc, dim, 1e-6f, 20, 1e-6f, dy, dpost, dcomb, dx, dfn, dbase, dscale);
  std::vector<float> rdx(flat), rfn(fn.size(), 0.0f), rbase(mix, 0.0f), rscale(3, 0.0f);
  for (int t = 0; t < n; ++t) {
    hc_pre_backward(fn, p, std::span<const float>(x).subspan(size_t(t) * flat, flat), hc, dim, 1e-6f, 20, 1e-6f,
                    std::span<const float>(dy).subspan(size_t(t) * dim, dim), std::span<const float>(dpost).subspan(size_t(t) * hc, hc),
                    std::span<const float>(dcomb).subspan(size_t(t) * hc * hc, hc * hc), rdx, rfn, rbase, rscale);
    for (int i = 0; i < flat; ++i) ASSERT_NEAR(dx[size_t(t) * flat + i], rdx[i], 1e-4) << "token " << t << " dx " << i;
  }
  for (size_t i = 0; i < fn.size(); ++i) ASSERT_NEAR(dfn[i], rfn[i], 1e-4) << "dfn " << i;
  for (int i = 0; i < mix; ++i) ASSERT_NEAR(dbase[i], rbase[i], 1e-4) << "dbase " << i;
  for (int i = 0; i < 3; ++i) ASSERT_NEAR(dscale[i], rscale[i], 1e-4) << "dscale " << i;
}

TEST(Backward, MhcHeadMatchesFiniteDifferencesOfTheProductionForward) {
  std::mt19937 rng(19);
  const int hc = 4, dim = 6, flat = hc * dim;
  std::vector<float> fn = randn(size_t(hc) * flat, rng, 0.3f), base = randn(hc, rng), scale = {0.7f};
  std::vector<float> x = randn(flat, rng), probe = randn(dim, rng);
  auto loss = [&] {
    std::vector<float> y(dim);
    hc_head(HcParams::from(fn, base, scale), x, 1, hc, dim, 1e-6f, 1e-6f, y);
    return loss_of(y, probe);
  };
  std::vector<float> dx(flat), dfn(fn.size(), 0.0f), dbase(hc, 0.0f), dscale(1, 0.0f);
  hc_head_backward(fn, HcParams::from(fn, base, scale), x, hc, dim, 1e-6f, 1e-6f, probe, dx, dfn, dbase, dscale);
  check_grad("mHC head dx", x, dx, loss, 5e-3f);
  check_grad("mHC head dfn", fn, dfn, loss, 5e-3f);
  check_grad("mHC head dbase", base, dbase, loss, 5e-3f);
  check_grad("mHC head dscale", scale, dscale, loss, 5e-3f);
}

TEST(Backward, MoeTokenMatchesFiniteDifferencesOfTheProductionForward) {
  // model/moe.cpp's forward (smooth mode, float weights): gate, routing weights, two chosen
  // experts with the SwiGLU clamp, the shared expert. The biases make the choice clear, so no
  // finite difference changes it. (The production forward rounds to float at every step, hence
  // a wider step than the other checks.)
  std::mt19937 rng(15);
  ModelConfig c;
  c.hidden_size = 8, c.moe_intermediate_size = 6, c.n_routed_experts = 6, c.num_experts_per_tok = 2;
  c.scoring_func = ScoreFunc::sqrtsoftplus, c.routed_scaling_factor = 1.5f, c.swiglu_limit = 2.0f;
  const int dim = 8, inter = 6, E = 6;
  MoeF32 m, g;
  m.gate = randn(size_t(E) * dim, rng);
  auto expert = [&] { return ExpertF32{randn(size_t(inter) * dim, rng), randn(size_t(dim) * inter, rng), randn(size_t(inter) * dim, rng)}; };
  for (int e = 0; e < E; ++e) m.experts.push_back(expert());
  m.shared.push_back(expert());
  g = m;
  for (auto* v : {&g.gate}) std::fill(v->begin(), v->end(), 0.0f);
  for (auto& e : g.experts) for (auto* v : {&e.w1, &e.w2, &e.w3}) std::fill(v->begin(), v->end(), 0.0f);
  for (auto& e : g.shared) for (auto* v : {&e.w1, &e.w2, &e.w3}) std::fill(v->begin(), v->end(), 0.0f);
  std::vector<float> x = randn(dim, rng, 2.0f), probe = randn(dim, rng);
  const std::vector<float> bias = {-10, 10, -10, -10, 10, -10};
  auto view = [](WeightFormat f, int out, int in, const std::vector<float>& w) {
    Linear l;
    l.format = f, l.out = out, l.in = in, l.weight = reinterpret_cast<const uint8_t*>(w.data());
    return l;
  };
  auto loss = [&] {
    MoeWeights w;
    w.gate = view(WeightFormat::f32, E, dim, m.gate);
    w.bias = bias;
    for (const auto& e : m.experts)
      w.experts.push_back({view(WeightFormat::f32, inter, dim, e.w1), view(WeightFormat::f32, dim, inter, e.w2),
                           view(WeightFormat::f32, inter, dim, e.w3)});
    w.shared = ExpertWeights{view(WeightFormat::f32, inter, dim, m.shared[0].w1),
                             view(WeightFormat::f32, dim, inter, m.shared[0].w2),
                             view(WeightFormat::f32, inter, dim, m.shared[0].w3)};
    std::vector<float> out(dim);
    moe_forward(w, false, c, x, std::vector<int>{0}, 1, false, out);
    return loss_of(out, probe);
  };
  std::vector<float> dx(dim);
  moe_token_backward(m, c, x, std::vector<int>{1, 4}, probe, g, dx);
  int clamped = 0;  // the sample exercises the clamp
  for (int e : {1, 4}) {
    std::vector<float> gate(inter), up(inter);
    linear_forward(x, m.experts[e].w1, 1, dim, inter, gate);
    linear_forward(x, m.experts[e].w3, 1, dim, inter, up);
    for (int i = 0; i < inter; ++i) clamped += gate[i] > c.swiglu_limit || std::fabs(up[i]) > c.swiglu_limit;
  }
  EXPECT_GT(clamped, 0);
  check_grad("MoE dx", x, dx, loss, 4e-3f);
  check_grad("MoE dgate", m.gate, g.gate, loss, 4e-3f);
  check_grad("MoE expert 1 dw1", m.experts[1].w1, g.experts[1].w1, loss, 4e-3f);
  check_grad("MoE expert 4 dw2", m.experts[4].w2, g.experts[4].w2, loss, 4e-3f);
  check_grad("MoE shared dw3", m.shared[0].w3, g.shared[0].w3, loss, 4e-3f);
  for (float v : g.experts[0].w1) EXPECT_EQ(v, 0.0f) << "an expert not chosen gets no gradient";
}

TEST(Backward, MoeSequenceMatchesTheTokenDefinitionAndTheProductionForward) {
  // The trainer's MoE groups tokens per expert; per token it must be moe_token_backward, and
  // its forward the production moe_forward, for score routing (with a bias) and hash routing.
  std::mt19937 rng(16);
  ModelConfig c;
  c.hidden_size = 16, c.moe_intermediate_size = 16, c.n_routed_experts = 5, c.num_experts_per_tok = 2;
  c.scoring_func = ScoreFunc::sqrtsoftplus, c.routed_scaling_factor = 1.5f, c.swiglu_limit = 2.0f;
  const int dim = 16, inter = 16, E = 5, n = 9;
  MoeF32 m;
  m.gate = randn(size_t(E) * dim, rng);
  auto expert = [&] { return ExpertF32{randn(size_t(inter) * dim, rng, 0.5f), randn(size_t(dim) * inter, rng, 0.5f), randn(size_t(inter) * dim, rng, 0.5f)}; };
  for (int e = 0; e < E; ++e) m.experts.push_back(expert());
  m.shared.push_back(expert());
  MoeF32 zero = m;
  for (auto* v : {&zero.gate}) std::fill(v->begin(), v->end(), 0.0f);
  for (auto& e : zero.experts) for (auto* v : {&e.w1, &e.w2, &e.w3}) std::fill(v->begin(), v->end(), 0.0f);
  for (auto& e : zero.shared) for (auto* v : {&e.w1, &e.w2, &e.w3}) std::fill(v->begin(), v->end(), 0.0f);
  const std::vector<float> x = randn(size_t(n) * dim, rng), dout = randn(size_t(n) * dim, rng);
  const std::vector<int> tokens = {3, 1, 4, 1, 5, 9, 2, 6, 5};
  auto view = [](int out, int in, const std::vector<float>& w) {
    Linear l;
    l.format = WeightFormat::f32, l.out = out, l.in = in, l.weight = reinterpret_cast<const uint8_t*>(w.data());
    return l;
  };
  for (bool hash : {false, true}) {
    MoeRouting r;
    r.bias = randn(E, rng, 0.3f);
    if (hash)
      for (int t = 0; t < 10; ++t) r.tid2eid.insert(r.tid2eid.end(), {t % E, (t + 2) % E});
    MoeWeights w;
    w.gate = view(E, dim, m.gate), w.bias = r.bias, w.tid2eid = r.tid2eid;
    for (const auto& e : m.experts) w.experts.push_back({view(inter, dim, e.w1), view(dim, inter, e.w2), view(inter, dim, e.w3)});
    w.shared = ExpertWeights{view(inter, dim, m.shared[0].w1), view(dim, inter, m.shared[0].w2), view(inter, dim, m.shared[0].w3)};
    std::vector<float> theirs(x.size()), ours(x.size());
    moe_forward(w, hash, c, x, tokens, n, false, theirs);
    std::vector<long long> load;
    moe_forward_f32(m, r, c, x, tokens, n, ours, &load);
    for (size_t i = 0; i < ours.size(); ++i) ASSERT_NEAR(ours[i], theirs[i], 1e-4) << "hash " << hash << " at " << i;
    long long routed = 0;
    for (long long l : load) routed += l;
    EXPECT_EQ(routed, n * 2);
    MoeF32 g = zero, gt = zero;
    std::vector<float> dx(x.size()), dxt(x.size()), one(dim), logits(E);
    moe_backward_f32(m, r, c, x, tokens, n, dout, g, dx);
    {
      // The trainer's way: the forward's tape instead of computing it again, the same bits.
      MoeTape tape;
      MoeF32 g_tape = zero;
      std::vector<float> out(x.size()), dx_tape(x.size());
      moe_forward_f32(m, r, c, x, tokens, n, out, nullptr, &tape);
      EXPECT_EQ(out, ours);
      moe_backward_f32(m, r, c, x, tokens, n, dout, g_tape, dx_tape, &tape);
      EXPECT_EQ(dx_tape, dx) << "hash " << hash;
      EXPECT_EQ(g_tape.gate, g.gate) << "hash " << hash;
      for (int e = 0; e < E; ++e) EXPECT_EQ(g_tape.experts[e].w1, g.experts[e].w1) << "hash " << hash << " expert " << e;
      EXPECT_EQ(g_tape.shared[0].w2, g.shared[0].w2) << "hash " << hash;
    }
    for (int t = 0; t < n; ++t) {
      std::span<const float> xt(x.data() + size_t(t) * dim, dim);
      linear_forward(xt, m.gate, 1, dim, E, logits);
      std::vector<int> chosen;
      std::vector<float> weights;
      moe_route(w, hash, c, logits, tokens[t], chosen, weights);
      moe_token_backward(m, c, xt, chosen, std::span<const float>(dout).subspan(size_t(t) * dim, dim), gt, one);
      std::copy(one.begin(), one.end(), dxt.begin() + size_t(t) * dim);
    }
    for (size_t i = 0; i < dx.size(); ++i) ASSERT_NEAR(dx[i], dxt[i], 1e-4) << "dx " << i;
    for (size_t i = 0; i < g.gate.size(); ++i) ASSERT_NEAR(g.gate[i], gt.gate[i], 1e-4) << "dgate " << i;
    for (int e = 0; e < E; ++e)
      for (size_t i = 0; i < g.experts[e].w2.size(); ++i)
        ASSERT_NEAR(g.experts[e].w2[i], gt.experts[e].w2[i], 1e-4) << "expert " << e << " dw2 " << i;
    for (size_t i = 0; i < g.shared[0].w1.size(); ++i) ASSERT_NEAR(g.shared[0].w1[i], gt.shared[0].w1[i], 1e-4);
  }
}

TEST(Backward, CompressorMatchesFiniteDifferencesOfTheProductionForward) {
  // model/compressor.cpp in smooth mode over a sequence from position 0: the overlapping ratio-4
  // compressor of CSA and a plain ratio-8 one (HCA's kind), float weights.
  std::mt19937 rng(16);
  const int dim = 12, hd = 8, rd = 4, n = 16;
  const Rope rope(rd, 160000.0, 1024, 4, 32, 1);
  for (const auto& ratio_overlap : {std::pair{4, true}, std::pair{8, false}}) {
    const int ratio = ratio_overlap.first;
    const bool overlap = ratio_overlap.second;
    CompressorF32 c;
    c.ratio = ratio, c.head_dim = hd, c.dim = dim, c.overlap = overlap;
    const int width = c.width();
    c.ape = randn(size_t(ratio) * width, rng), c.wkv = randn(size_t(width) * dim, rng, 0.5f);
    c.wgate = randn(size_t(width) * dim, rng, 0.5f), c.norm = randn(hd, rng);
    CompressorF32 g = c;
    for (auto* v : {&g.ape, &g.wkv, &g.wgate, &g.norm}) std::fill(v->begin(), v->end(), 0.0f);
    std::vector<float> x = randn(size_t(n) * dim, rng), probe = randn(size_t(n / ratio) * hd, rng);
    auto loss = [&] {
      CompressorWeights w;
      w.ratio = ratio, w.head_dim = hd, w.overlap = overlap, w.ape = c.ape, w.norm = c.norm;
      auto view = [&](const std::vector<float>& m) {
        Linear l;
        l.format = WeightFormat::f32, l.out = width, l.in = dim, l.weight = reinterpret_cast<const uint8_t*>(m.data());
        return l;
      };
      w.wkv = view(c.wkv), w.wgate = view(c.wgate);
      CompressorState st;
      compressor_init(w, KvFormat::f32, rd, st);
      compressor_forward(w, x, n, 0, rope, 1e-6f, CompressedRounding::fp8_nope, false, st);
      std::vector<float> entries(st.entries.size() * hd);
      for (size_t i = 0; i < st.entries.size(); ++i) st.entries.load(i, entries.data() + i * hd);
      return loss_of(entries, probe);
    };
    std::vector<float> dx(x.size());
    compressor_backward(c, rope, 1e-6f, x, Segments::one(n), probe, g, dx);
    const std::string k = overlap ? "ratio 4 (overlap) " : "ratio 8 ";
    check_grad((k + "compressor dx").c_str(), x, dx, loss, 1e-3f);
    check_grad((k + "compressor dape").c_str(), c.ape, g.ape, loss, 1e-3f);
    check_grad((k + "compressor dwkv").c_str(), c.wkv, g.wkv, loss, 1e-3f);
    check_grad((k + "compressor dwgate").c_str(), c.wgate, g.wgate, loss, 1e-3f);
    check_grad((k + "compressor dnorm").c_str(), c.norm, g.norm, loss, 1e-3f);
  }
}

// A random attention layer of the given kind (ratio 0: window only, 4: CSA, 8: HCA) and the
// production forward of model/attention.cpp on its float weights (smooth mode).
struct AttentionCase {
  AttentionF32 a;
  ModelConfig c;
  Rope rope{4, 10000.0, 0, 1, 0, 0};

  AttentionCase(int ratio, int index_topk, std::mt19937& rng) {
    a.dim = 16, a.heads = 4, a.head_dim = 8, a.q_lora = 12, a.groups = 2, a.o_lora = 6, a.window = 4, a.ratio = ratio;
    const int H = a.heads, D = a.head_dim;
    a.attn_sink = randn(H, rng), a.wq_a = randn(size_t(a.q_lora) * a.dim, rng, 0.4f), a.q_norm = randn(a.q_lora, rng);
    a.wq_b = randn(size_t(H) * D * a.q_lora, rng, 0.4f), a.wkv = randn(size_t(D) * a.dim, rng, 0.4f);
    a.kv_norm = randn(D, rng), a.wo_a = randn(size_t(a.groups) * a.o_lora * (H * D / a.groups), rng, 0.4f);
    a.wo_b = randn(size_t(a.dim) * a.groups * a.o_lora, rng, 0.4f);
    auto compressor = [&](int hd) {
      CompressorF32 k;
      k.ratio = ratio, k.head_dim = hd, k.dim = a.dim, k.overlap = ratio == 4;
      k.ape = randn(size_t(ratio) * k.width(), rng, 0.5f), k.wkv = randn(size_t(k.width()) * a.dim, rng, 0.4f);
      k.wgate = randn(k.wkv.size(), rng, 0.4f), k.norm = randn(hd, rng);
      return k;
    };
    if (ratio > 0) a.compressor = compressor(D);
    if (ratio == 4) {
      a.indexer.heads = 2, a.indexer.head_dim = 8, a.indexer.topk = index_topk;
      a.indexer.wq_b = randn(size_t(2) * 8 * a.q_lora, rng, 0.4f), a.indexer.weights_proj = randn(size_t(2) * a.dim, rng, 0.4f);
      a.indexer.compressor = compressor(8);
    }
    c.hidden_size = a.dim, c.num_attention_heads = H, c.head_dim = D, c.qk_rope_head_dim = rope.dim();
    c.sliding_window = a.window, c.q_lora_rank = a.q_lora, c.rms_norm_eps = a.eps, c.o_groups = a.groups;
    c.o_lora_rank = a.o_lora, c.index_n_heads = 2, c.index_head_dim = 8, c.index_topk = index_topk;
  }

  AttentionF32 zero_grads() const {
    AttentionF32 g = a;
    for (auto* v : {&g.attn_sink, &g.wq_a, &g.q_norm, &g.wq_b, &g.wkv, &g.kv_norm, &g.wo_a, &g.wo_b, &g.indexer.wq_b,
                    &g.indexer.weights_proj})
      std::fill(v->begin(), v->end(), 0.0f);
    for (CompressorF32* k : {&g.compressor, &g.indexer.compressor})
      for (auto* v : {&k->ape, &k->wkv, &k->wgate, &k->norm}) std::fill(v->begin(), v->end(), 0.0f);
    return g;
  }

  // The production forward.
  std::vector<float> production(const std::vector<float>& x, int n) const {
    auto view = [](int out, int in, const std::vector<float>& w) {
      Linear l;
      l.format = WeightFormat::f32, l.out = out, l.in = in, l.weight = reinterpret_cast<const uint8_t*>(w.data());
      return l;
    };
    auto compressor = [&](const CompressorF32& k) {
      CompressorWeights w;
      w.ratio = k.ratio, w.head_dim = k.head_dim, w.overlap = k.overlap, w.ape = k.ape, w.norm = k.norm;
      w.wkv = view(k.width(), k.dim, k.wkv), w.wgate = view(k.width(), k.dim, k.wgate);
      return w;
    };
    const int H = a.heads, D = a.head_dim;
    BlockWeights b;
    AttentionWeights& w = b.attn;
    w.attn_sink = a.attn_sink, w.q_norm = a.q_norm, w.kv_norm = a.kv_norm;
    w.wq_a = view(a.q_lora, a.dim, a.wq_a), w.wq_b = view(H * D, a.q_lora, a.wq_b), w.wkv = view(D, a.dim, a.wkv);
    w.wo_a = view(a.groups * a.o_lora, H * D / a.groups, a.wo_a), w.wo_b = view(a.dim, a.groups * a.o_lora, a.wo_b);
    if (a.ratio > 0) w.compressor = compressor(a.compressor);
    if (a.ratio == 4)
      w.indexer = IndexerWeights{view(2 * 8, a.q_lora, a.indexer.wq_b), view(2, a.dim, a.indexer.weights_proj),
                                 compressor(a.indexer.compressor)};
    LayerCache cache;
    layer_cache_init(b, c, false, cache);
    std::vector<float> out(x.size());
    attention_forward(w, a.ratio, c, rope, x, n, 0, false, cache, out);
    return out;
  }
};

TEST(Backward, AttentionLayersMatchFiniteDifferencesOfTheProductionForward) {
  // Every kind of layer, 7 .. 20 tokens with a window of 4 (so the window truncates), 4 heads
  // in 2 output groups; CSA with a top-k that keeps every entry (the choice is not
  // differentiated, so a perturbation must not flip it).
  for (const auto& ratio_n : {std::pair{0, 7}, {8, 20}, {4, 14}}) {
    const int ratio = ratio_n.first, n = ratio_n.second;
    std::mt19937 rng(17 + ratio);
    AttentionCase k(ratio, /*index_topk=*/8, rng);
    AttentionF32& a = k.a;
    AttentionF32 g = k.zero_grads();
    std::vector<float> x = randn(size_t(n) * a.dim, rng), probe = randn(size_t(n) * a.dim, rng);
    // The training forward is the production forward.
    std::vector<float> ours(x.size());
    attention_forward_f32(a, k.rope, x, Segments::one(n), ours);
    const std::vector<float> theirs = k.production(x, n);
    for (size_t i = 0; i < ours.size(); ++i) ASSERT_NEAR(ours[i], theirs[i], 2e-5) << "ratio " << ratio << " at " << i;
    auto loss = [&] { return loss_of(k.production(x, n), probe); };
    std::vector<float> dx(x.size());
    attention_backward(a, k.rope, x, Segments::one(n), probe, g, dx);
    const std::string kind = ratio == 0 ? "window" : ratio == 4 ? "CSA" : "HCA";
    {
      // The trainer's way: the forward's tape instead of computing it again, the same bits.
      AttentionTape tape;
      std::vector<float> out(x.size()), dx_tape(x.size());
      AttentionF32 g_tape = k.zero_grads();
      attention_forward_f32(a, k.rope, x, Segments::one(n), out, &tape);
      EXPECT_EQ(out, ours) << kind;
      attention_backward(a, k.rope, x, Segments::one(n), probe, g_tape, dx_tape, &tape);
      EXPECT_EQ(dx_tape, dx) << kind;
      EXPECT_EQ(g_tape.wq_a, g.wq_a) << kind;
      EXPECT_EQ(g_tape.wo_a, g.wo_a) << kind;
      EXPECT_EQ(g_tape.attn_sink, g.attn_sink) << kind;
      EXPECT_EQ(g_tape.compressor.wgate, g.compressor.wgate) << kind;
      EXPECT_EQ(g_tape.indexer.compressor.wkv, g.indexer.compressor.wkv) << kind;
      EXPECT_EQ(g_tape.indexer.wq_b, g.indexer.wq_b) << kind;
    }
    auto check = [&](const char* what, std::vector<float>& p, std::vector<float>& gp) {
      check_grad((kind + " attention " + what).c_str(), p, gp, loss, 5e-3f);
    };
    check("dx", x, dx);
    check("dsink", a.attn_sink, g.attn_sink), check("dwq_a", a.wq_a, g.wq_a), check("dq_norm", a.q_norm, g.q_norm);
    check("dwq_b", a.wq_b, g.wq_b), check("dwkv", a.wkv, g.wkv), check("dkv_norm", a.kv_norm, g.kv_norm);
    check("dwo_a", a.wo_a, g.wo_a), check("dwo_b", a.wo_b, g.wo_b);
    if (ratio > 0) {
      check("compressor dwkv", a.compressor.wkv, g.compressor.wkv);
      check("compressor dwgate", a.compressor.wgate, g.compressor.wgate);
      check("compressor dape", a.compressor.ape, g.compressor.ape);
      check("compressor dnorm", a.compressor.norm, g.compressor.norm);
    }
    if (ratio == 4) {
      // The indexer's weights take their gradient from its KL loss alone.
      auto index_loss = [&] { return indexer_loss_f32(a, k.rope, x, Segments::one(n)); };
      IndexerF32& ix = a.indexer;
      check_grad("indexer dwq_b", ix.wq_b, g.indexer.wq_b, index_loss, 5e-3f);
      check_grad("indexer dweights_proj", ix.weights_proj, g.indexer.weights_proj, index_loss, 5e-3f);
      check_grad("indexer compressor dwkv", ix.compressor.wkv, g.indexer.compressor.wkv, index_loss, 5e-3f);
      check_grad("indexer compressor dape", ix.compressor.ape, g.indexer.compressor.ape, index_loss, 5e-3f);
    }
  }
}

TEST(Backward, TrainingIndexerChoosesTheProductionEntries) {
  // With a top-k smaller than the entries, the training forward (no Hadamard rotation: both
  // sides would rotate) attends to the entries the production indexer picks.
  std::mt19937 rng(40);
  AttentionCase k(4, /*index_topk=*/2, rng);
  const int n = 24;
  std::vector<float> x = randn(size_t(n) * k.a.dim, rng);
  std::vector<float> ours(x.size());
  attention_forward_f32(k.a, k.rope, x, Segments::one(n), ours);
  const std::vector<float> theirs = k.production(x, n);
  for (size_t i = 0; i < ours.size(); ++i) ASSERT_NEAR(ours[i], theirs[i], 2e-5) << i;
  const auto chosen = attention_entries_f32(k.a, k.rope, x, Segments::one(n));
  EXPECT_EQ(chosen[n - 1].size(), 2u);
  EXPECT_EQ(chosen[2].size(), 0u);
}

}  // namespace
}  // namespace dsv4
