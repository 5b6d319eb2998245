#include "model/mtp_input.h"

#include "core/check.h"
#include "ops/norm.h"

namespace dsv4 {

void mtp_input(const MtpWeights& m, const ModelConfig& c, std::span<const float> e, std::span<const float> stream,
               int n, bool act_quant, std::vector<float>& x, MtpInputSaved* saved) {
  const int hc = c.hc_mult, dim = c.hidden_size;
  const size_t flat = static_cast<size_t>(hc) * dim;
  DSV4_CHECK(e.size() == static_cast<size_t>(n) * dim && stream.size() == n * flat,
             "mtp_input: sizes do not match ", n, " positions");
  std::vector<float> en(e.size()), ep(e.size()), hn(stream.size());
  rmsnorm(e, m.enorm, c.rms_norm_eps, dim, en);
  linear(m.e_proj, en, n, ep, act_quant);
  rmsnorm(stream, m.hnorm, c.rms_norm_eps, dim, hn);
  x.assign(stream.size(), 0.0f);
  linear(m.h_proj, hn, n * hc, x, act_quant);
  for (int t = 0; t < n; ++t)
    for (int i = 0; i < hc; ++i)
      for (int d = 0; d < dim; ++d) x[(static_cast<size_t>(t) * hc + i) * dim + d] += ep[static_cast<size_t>(t) * dim + d];
  if (saved) saved->en = std::move(en), saved->ep = std::move(ep), saved->hn = std::move(hn);
}

}  // namespace dsv4
