// Plain double-accumulating loops, except the matrix products: those go through the production
// F32 kernels (matmul_nt), tested against the plain *_reference loops kept here.
#include "train/backward.h"

#include <algorithm>
#include <cmath>

#include "core/check.h"
#include "model/moe.h"
#include "ops/dot.h"
#include "ops/rope.h"
#include "quant/linear.h"

namespace dsv4 {

namespace {

// in [rows, cols] -> out [cols, ld] = in^T, each row padded with zeros from rows to ld.
std::vector<float> transposed(std::span<const float> in, int rows, int cols, int ld) {
  std::vector<float> out(size_t(cols) * ld, 0.0f);
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c) out[size_t(c) * ld + r] = in[size_t(r) * cols + c];
  return out;
}

// [rows, k] -> [rows, ld] with zero columns after k.
std::vector<float> padded(std::span<const float> in, int rows, int k, int ld) {
  std::vector<float> out(size_t(rows) * ld, 0.0f);
  for (int r = 0; r < rows; ++r) std::copy_n(in.begin() + size_t(r) * k, k, out.begin() + size_t(r) * ld);
  return out;
}

int pad16(int k) { return (k + 15) / 16 * 16; }

// C = A . B^T with A [m, ld], B [p, ld] already padded.
void matmul_padded(const float* a, const float* b, int m, int p, int ld, std::span<float> c) {
  Linear w;
  w.format = WeightFormat::f32, w.out = p, w.in = ld, w.weight = reinterpret_cast<const uint8_t*>(b);
  linear(w, std::span<const float>(a, size_t(m) * ld), m, c, false);
}

}  // namespace

void add_to(std::span<float> dst, std::span<const float> src) {
  DSV4_CHECK(dst.size() == src.size(), "add_to: sizes ", dst.size(), " and ", src.size(), " differ");
  for (size_t i = 0; i < dst.size(); ++i) dst[i] += src[i];
}

void matmul_nt(std::span<const float> a, std::span<const float> b, int m, int p, int k, std::span<float> c) {
  DSV4_CHECK(a.size() == size_t(m) * k && b.size() == size_t(p) * k && c.size() == size_t(m) * p,
             "matmul_nt: sizes do not match [", m, ", ", k, "] x [", p, ", ", k, "]^T");
  if (m == 0 || p == 0) return;
  if (k % 16 == 0) return matmul_padded(a.data(), b.data(), m, p, k, c);
  const int ld = pad16(k);
  const std::vector<float> ap = padded(a, m, k, ld), bp = padded(b, p, k, ld);
  matmul_padded(ap.data(), bp.data(), m, p, ld, c);
}

void linear_forward(std::span<const float> x, std::span<const float> w, int n, int in, int out, std::span<float> y) {
  DSV4_CHECK(x.size() == size_t(n) * in && w.size() == size_t(out) * in && y.size() == size_t(n) * out,
             "linear_forward: sizes do not match [", n, ", ", in, "] x [", out, ", ", in, "]");
  matmul_nt(x, w, n, out, in, y);
}

void linear_backward(std::span<const float> x, std::span<const float> w, std::span<const float> dy, int n, int in,
                     int out, std::span<float> dx, std::span<float> dw) {
  DSV4_CHECK(x.size() == size_t(n) * in && w.size() == size_t(out) * in && dy.size() == size_t(n) * out &&
                 dx.size() == x.size() && dw.size() == w.size(),
             "linear_backward: sizes do not match");
  if (n == 0) return;
  // dx = dy . w: w^T [in, out] as the weights.
  const int ld_out = pad16(out);
  const std::vector<float> wt = transposed(w, out, in, ld_out);
  if (ld_out == out) matmul_padded(dy.data(), wt.data(), n, in, ld_out, dx);
  else matmul_padded(padded(dy, n, out, ld_out).data(), wt.data(), n, in, ld_out, dx);
  // dw += dy^T . x: dy^T [out, n] times (x^T [in, n])^T.
  const int ld_n = pad16(n);
  const std::vector<float> dyt = transposed(dy, n, out, ld_n), xt = transposed(x, n, in, ld_n);
  std::vector<float> g(size_t(out) * in);
  matmul_padded(dyt.data(), xt.data(), out, in, ld_n, g);
  for (size_t i = 0; i < g.size(); ++i) dw[i] += g[i];
}

void linear_forward_reference(std::span<const float> x, std::span<const float> w, int n, int in, int out,
                              std::span<float> y) {
  DSV4_CHECK(x.size() == size_t(n) * in && w.size() == size_t(out) * in && y.size() == size_t(n) * out,
             "linear_forward: sizes do not match [", n, ", ", in, "] x [", out, ", ", in, "]");
  for (int t = 0; t < n; ++t)
    for (int o = 0; o < out; ++o) {
      double acc = 0;
      for (int k = 0; k < in; ++k) acc += double(x[size_t(t) * in + k]) * w[size_t(o) * in + k];
      y[size_t(t) * out + o] = static_cast<float>(acc);
    }
}

void linear_backward_reference(std::span<const float> x, std::span<const float> w, std::span<const float> dy, int n,
                               int in, int out, std::span<float> dx, std::span<float> dw) {
  DSV4_CHECK(dy.size() == size_t(n) * out && dx.size() == x.size() && dw.size() == w.size(),
             "linear_backward: sizes do not match");
  for (int t = 0; t < n; ++t)
    for (int k = 0; k < in; ++k) {
      double acc = 0;
      for (int o = 0; o < out; ++o) acc += double(dy[size_t(t) * out + o]) * w[size_t(o) * in + k];
      dx[size_t(t) * in + k] = static_cast<float>(acc);
    }
  for (int o = 0; o < out; ++o)
    for (int k = 0; k < in; ++k) {
      double acc = 0;
      for (int t = 0; t < n; ++t) acc += double(dy[size_t(t) * out + o]) * x[size_t(t) * in + k];
      dw[size_t(o) * in + k] += static_cast<float>(acc);
    }
}

void rmsnorm_forward(std::span<const float> x, std::span<const float> weight, float eps, int dim, std::span<float> y) {
  for (size_t r = 0; r < x.size() / dim; ++r) {
    const float* xr = x.data() + r * dim;
    double ms = 0;
    for (int i = 0; i < dim; ++i) ms += double(xr[i]) * xr[i];
    const double inv = 1.0 / std::sqrt(ms / dim + eps);
    for (int i = 0; i < dim; ++i) y[r * dim + i] = static_cast<float>(xr[i] * inv * (weight.empty() ? 1.0f : weight[i]));
  }
}

void rmsnorm_backward(std::span<const float> x, std::span<const float> weight, float eps, int dim,
                      std::span<const float> dy, std::span<float> dx, std::span<float> dweight) {
  // y_i = x_i r w_i with r = (mean(x^2) + eps)^-1/2; dr/dx_j = -r^3 x_j / dim, so
  // dx_j = r w_j dy_j - r^3 x_j / dim * sum_i dy_i w_i x_i.
  for (size_t row = 0; row < x.size() / dim; ++row) {
    const float* xr = x.data() + row * dim;
    const float* g = dy.data() + row * dim;
    double ms = 0, dot = 0;
    for (int i = 0; i < dim; ++i) ms += double(xr[i]) * xr[i];
    const double r = 1.0 / std::sqrt(ms / dim + eps);
    for (int i = 0; i < dim; ++i) dot += double(g[i]) * (weight.empty() ? 1.0 : weight[i]) * xr[i];
    for (int i = 0; i < dim; ++i) {
      const double wi = weight.empty() ? 1.0 : weight[i];
      dx[row * dim + i] = static_cast<float>(r * wi * g[i] - r * r * r * xr[i] * dot / dim);
      if (!weight.empty()) dweight[i] += static_cast<float>(g[i] * xr[i] * r);
    }
  }
}

namespace {
double sigmoid(double v) { return 1.0 / (1.0 + std::exp(-v)); }
}  // namespace

void swiglu_forward(std::span<const float> gate, std::span<const float> up, float limit, std::span<float> y) {
  for (size_t i = 0; i < gate.size(); ++i) {
    double g = gate[i], u = up[i];
    if (limit > 0) u = std::clamp(u, double(-limit), double(limit)), g = std::min(g, double(limit));
    y[i] = static_cast<float>(g * sigmoid(g) * u);
  }
}

void swiglu_backward(std::span<const float> gate, std::span<const float> up, float limit, std::span<const float> dy,
                     std::span<float> dgate, std::span<float> dup) {
  for (size_t i = 0; i < gate.size(); ++i) {
    double g = gate[i], u = up[i];
    bool g_clamped = false, u_clamped = false;
    if (limit > 0) {
      if (u > limit || u < -limit) u = std::clamp(u, double(-limit), double(limit)), u_clamped = true;
      if (g > limit) g = limit, g_clamped = true;
    }
    const double s = sigmoid(g);
    const double dsilu = s * (1 + g * (1 - s));  // d(g s(g))/dg
    dgate[i] = g_clamped ? 0.0f : static_cast<float>(dy[i] * u * dsilu);
    dup[i] = u_clamped ? 0.0f : static_cast<float>(dy[i] * g * s);
  }
}

double cross_entropy(std::span<const float> logits, std::span<const int> targets, int vocab, std::span<float> dlogits) {
  const size_t n = targets.size();
  DSV4_CHECK(logits.size() == n * vocab && dlogits.size() == logits.size(), "cross_entropy: sizes do not match");
  size_t counted = 0;
  for (int t : targets) counted += t >= 0;
  double loss = 0;
  std::fill(dlogits.begin(), dlogits.end(), 0.0f);
  if (counted == 0) return 0;
  for (size_t r = 0; r < n; ++r) {
    if (targets[r] < 0) continue;
    DSV4_CHECK(targets[r] < vocab, "cross_entropy: target ", targets[r], " outside the vocabulary");
    const float* l = logits.data() + r * vocab;
    const double mx = *std::max_element(l, l + vocab);
    double sum = 0;
    for (int v = 0; v < vocab; ++v) sum += std::exp(l[v] - mx);
    loss += mx + std::log(sum) - l[targets[r]];
    for (int v = 0; v < vocab; ++v)
      dlogits[r * vocab + v] = static_cast<float>((std::exp(l[v] - mx) / sum - (v == targets[r])) / counted);
  }
  return loss / counted;
}

void embedding_backward(std::span<const int> ids, std::span<const float> dy, int dim, std::span<float> dtable) {
  for (size_t t = 0; t < ids.size(); ++t)
    for (int i = 0; i < dim; ++i) dtable[size_t(ids[t]) * dim + i] += dy[t * dim + i];
}

namespace {

std::vector<const float*> rows_of(std::span<const float> keys, int n_keys, int dim) {
  std::vector<const float*> rows(n_keys);
  for (int j = 0; j < n_keys; ++j) rows[j] = keys.data() + size_t(j) * dim;
  return rows;
}

}  // namespace

double attention_probs(std::span<const float> q, std::span<const float> keys, int n_keys, int dim, float scale,
                       float sink, std::vector<double>& p) {
  std::vector<float> dots(n_keys);
  dot_rows(q.data(), 1, rows_of(keys, n_keys, dim).data(), n_keys, dim, dots.data());
  p.resize(n_keys);
  double mx = sink;
  for (int j = 0; j < n_keys; ++j) mx = std::max(mx, p[j] = double(scale) * dots[j]);
  double sum = std::exp(sink - mx);
  for (int j = 0; j < n_keys; ++j) sum += (p[j] = std::exp(p[j] - mx));
  for (double& v : p) v /= sum;
  return std::exp(sink - mx) / sum;
}

void attention_head_forward(std::span<const float> q, std::span<const float> keys, int n_keys, int dim, float scale,
                            float sink, const Rope& rope, long long pos, std::span<float> o) {
  std::vector<double> p;
  attention_probs(q, keys, n_keys, dim, scale, sink, p);
  const std::vector<float> pf(p.begin(), p.end());
  weighted_rows(pf.data(), 1, rows_of(keys, n_keys, dim).data(), n_keys, dim, o.data());
  rope.apply(o.data() + dim - rope.dim(), pos, /*inverse=*/true);
}

float attention_head_backward(std::span<const float> q, std::span<const float> keys, int n_keys, int dim, float scale,
                              float sink, const Rope& rope, long long pos, std::span<const float> dout,
                              std::span<float> dq, std::span<float> dkeys) {
  // Before the inverse rotation: do = R(pos) dout on the rope dims.
  std::vector<float> d(dout.begin(), dout.end()), dp(n_keys);
  rope.apply(d.data() + dim - rope.dim(), pos, /*inverse=*/false);
  std::vector<double> p;
  const double p_sink = attention_probs(q, keys, n_keys, dim, scale, sink, p);
  const std::vector<const float*> rows = rows_of(keys, n_keys, dim);
  dot_rows(d.data(), 1, rows.data(), n_keys, dim, dp.data());
  double pdp = 0;  // sum_j p_j dp_j (the sink carries no value: its dp is 0)
  for (int j = 0; j < n_keys; ++j) pdp += p[j] * dp[j];
  std::vector<float> dz(n_keys);  // scale * dL/dz_j
  for (int j = 0; j < n_keys; ++j) dz[j] = static_cast<float>(scale * p[j] * (dp[j] - pdp));
  weighted_rows(dz.data(), 1, rows.data(), n_keys, dim, dq.data());
  for (int j = 0; j < n_keys; ++j) {
    float* dk = dkeys.data() + size_t(j) * dim;
    const float a = dz[j], b = static_cast<float>(p[j]);
    for (int i = 0; i < dim; ++i) dk[i] += a * q[i] + b * d[i];
  }
  return static_cast<float>(-p_sink * pdp);
}

void rope_backward(const Rope& rope, std::span<float> dx, long long pos, bool inverse_in_forward) {
  rope.apply(dx.data(), pos, !inverse_in_forward);
}

void routing_weights_backward(std::span<const float> logits, std::span<const int> chosen, float route_scale,
                              std::span<const float> dweights, std::span<float> dlogits) {
  std::vector<double> s(chosen.size());
  double total = 0;
  for (size_t k = 0; k < chosen.size(); ++k) total += (s[k] = sqrt_softplus<double>(logits[chosen[k]]));
  double dot = 0;
  for (size_t k = 0; k < chosen.size(); ++k) dot += dweights[k] * s[k];
  for (size_t k = 0; k < chosen.size(); ++k) {
    // w_k = c s_k / T: dw/ds_k = c (1 / T) on its own, and -c s_l / T^2 through T.
    const double ds = route_scale * (dweights[k] / total - dot / (total * total));
    const double z = logits[chosen[k]];
    const double dsp = z > 20 ? 1.0 : 1.0 / (1.0 + std::exp(-z));  // softplus' = sigmoid
    dlogits[chosen[k]] += static_cast<float>(ds * dsp / (2 * s[k]));
  }
}

void compressor_pool_forward(std::span<const float> score, std::span<const float> kv, int n_rows, int dim,
                             std::span<float> entry) {
  for (int d = 0; d < dim; ++d) {
    double mx = score[d];
    for (int i = 1; i < n_rows; ++i) mx = std::max(mx, double(score[size_t(i) * dim + d]));
    double sum = 0, acc = 0;
    for (int i = 0; i < n_rows; ++i) {
      const double e = std::exp(score[size_t(i) * dim + d] - mx);
      sum += e;
      acc += e * kv[size_t(i) * dim + d];
    }
    entry[d] = static_cast<float>(acc / sum);
  }
}

void compressor_pool_backward(std::span<const float> score, std::span<const float> kv, int n_rows, int dim,
                              std::span<const float> dentry, std::span<float> dscore, std::span<float> dkv) {
  std::vector<double> p(n_rows);
  for (int d = 0; d < dim; ++d) {
    double mx = score[d];
    for (int i = 1; i < n_rows; ++i) mx = std::max(mx, double(score[size_t(i) * dim + d]));
    double sum = 0, entry = 0;
    for (int i = 0; i < n_rows; ++i) sum += (p[i] = std::exp(score[size_t(i) * dim + d] - mx));
    for (int i = 0; i < n_rows; ++i) entry += (p[i] /= sum) * kv[size_t(i) * dim + d];
    for (int i = 0; i < n_rows; ++i) {
      dkv[size_t(i) * dim + d] = static_cast<float>(p[i] * dentry[d]);
      dscore[size_t(i) * dim + d] = static_cast<float>(p[i] * (kv[size_t(i) * dim + d] - entry) * dentry[d]);
    }
  }
}

double indexer_kl_backward(std::span<const float> q, std::span<const float> w, int heads, std::span<const float> keys,
                           int blocks, int dim, std::span<const float> target, std::span<float> dq, std::span<float> dw,
                           std::span<float> dkeys) {
  std::vector<double> dot(static_cast<size_t>(heads) * blocks), score(blocks, 0.0);
  for (int h = 0; h < heads; ++h)
    for (int b = 0; b < blocks; ++b) {
      double s = 0;
      for (int i = 0; i < dim; ++i) s += double(q[size_t(h) * dim + i]) * keys[size_t(b) * dim + i];
      dot[size_t(h) * blocks + b] = s;
      score[b] += w[h] * std::max(s, 0.0);
    }
  const double mx = *std::max_element(score.begin(), score.end());
  double sum = 0;
  for (int b = 0; b < blocks; ++b) sum += std::exp(score[b] - mx);
  double loss = 0, mass = 0;
  for (int b = 0; b < blocks; ++b) mass += target[b];
  std::vector<double> dscore(blocks);
  for (int b = 0; b < blocks; ++b) {
    const double log_q = score[b] - mx - std::log(sum);
    if (target[b] > 0) loss += target[b] * (std::log(target[b]) - log_q);
    dscore[b] = std::exp(log_q) * mass - target[b];  // d KL / d I_b (mass = 1 for a distribution)
  }
  std::fill(dq.begin(), dq.end(), 0.0f);
  for (int h = 0; h < heads; ++h) {
    double dwh = 0;
    for (int b = 0; b < blocks; ++b) {
      const double s = dot[size_t(h) * blocks + b];
      dwh += dscore[b] * std::max(s, 0.0);
      if (s <= 0) continue;  // relu passes no gradient
      const double g = dscore[b] * w[h];
      for (int i = 0; i < dim; ++i) {
        dq[size_t(h) * dim + i] += static_cast<float>(g * keys[size_t(b) * dim + i]);
        dkeys[size_t(b) * dim + i] += static_cast<float>(g * q[size_t(h) * dim + i]);
      }
    }
    dw[h] = static_cast<float>(dwh);
  }
  return loss;
}

void update_routing_bias(std::span<float> bias, std::span<const long long> load, float gamma) {
  DSV4_CHECK(bias.size() == load.size(), "update_routing_bias: ", bias.size(), " biases for ", load.size(), " loads");
  double mean = 0;
  for (long long l : load) mean += static_cast<double>(l);
  mean /= static_cast<double>(load.size());
  for (size_t e = 0; e < bias.size(); ++e)
    bias[e] += gamma * (load[e] < mean ? 1.0f : load[e] > mean ? -1.0f : 0.0f);
}

}  // namespace dsv4
