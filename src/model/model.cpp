// The layer loop: embed -> hc_mult copies -> blocks (hc_pre, norm, attention, hc_post; hc_pre,
// norm, MoE, hc_post) -> hc_head -> norm -> head, and the MTP layer on top.
#include "model/model.h"

#include <algorithm>
#include <filesystem>

#include "core/check.h"
#include "dist/comm.h"
#include "model/attention.h"
#include "model/hc.h"
#include "model/moe.h"
#include "model/mtp_input.h"
#include "ops/norm.h"

namespace dsv4 {

namespace {

ModelConfig config_of(const std::string& dir) {
  return load_config((std::filesystem::path(dir) / "config.json").string());
}

// Under mpirun: this rank's shard of a conversion for exactly as many ranks, the same
// conversion and config on every rank (checked collectively, so all ranks fail together).
std::unique_ptr<Checkpoint> open_checkpoint(const std::string& dir, WeightsIn where) {
  const Comm& comm = Comm::get();
  if (!comm.distributed()) return std::make_unique<Checkpoint>(dir, -1, where);
  auto ckpt = std::make_unique<Checkpoint>(dir, comm.rank(), where);
  DSV4_CHECK(ckpt->layout().converted, dir, " is not a model-parallel conversion; under mpirun -np ", comm.world(),
             " run `dsv4 convert --model-parallel ", comm.world(), "` first");
  DSV4_CHECK(ckpt->layout().world == comm.world(), dir, " holds a conversion for ", ckpt->layout().world,
             " ranks, but mpirun started ", comm.world());
  const auto& meta = ckpt->files().front()->metadata();
  const auto id = meta.find("dsv4_conversion");
  DSV4_CHECK(id != meta.end(), ckpt->files().front()->path(), ": no dsv4_conversion id (not written by dsv4 convert)");
  comm.check_same(std::hash<std::string>{}(id->second), "which conversion they read (shards of different conversions)");
  return ckpt;
}

}  // namespace

Model::Model(const std::string& dir, ModelOptions opts)
    : cfg_(config_of(dir)),
      opts_(opts),
      ckpt_(open_checkpoint(dir, opts.weights)),
      w_(load_weights(*ckpt_, cfg_)),
      rope_plain_(cfg_.qk_rope_head_dim, cfg_.rope_theta, 0, 1, 0, 0),
      rope_yarn_(cfg_.qk_rope_head_dim, cfg_.compress_rope_theta, cfg_.original_max_position_embeddings,
                 cfg_.rope_factor, cfg_.beta_fast, cfg_.beta_slow) {}

Session Model::new_session() const {
  Session s;
  s.layers.resize(w_->layers.size());
  for (size_t l = 0; l < w_->layers.size(); ++l) layer_cache_init(w_->layers[l], cfg_, opts_.act_quant, s.layers[l]);
  s.mtp.resize(w_->mtp.size());
  for (size_t i = 0; i < w_->mtp.size(); ++i) layer_cache_init(w_->mtp[i].block, cfg_, opts_.act_quant, s.mtp[i]);
  return s;
}

void Model::check_tokens(std::span<const int> tokens) const {
  DSV4_CHECK(!tokens.empty(), "no tokens to feed");
  for (size_t i = 0; i < tokens.size(); ++i)
    DSV4_CHECK(tokens[i] >= 0 && tokens[i] < cfg_.vocab_size, "token id ", tokens[i], " at index ", i,
               " is outside the vocabulary [0, ", cfg_.vocab_size, ")");
}

int Model::block_forward(const BlockWeights& b, std::span<const Segment> segs, std::vector<float>& h,
                         std::span<const int> tokens) const {
  const int n = static_cast<int>(tokens.size()), hc = cfg_.hc_mult, dim = cfg_.hidden_size;
  const float eps = cfg_.rms_norm_eps;
  std::vector<float> y(static_cast<size_t>(n) * dim), out(y.size());
  HcMix mix;

  hc_pre(b.hc_attn, h, n, hc, dim, eps, cfg_.hc_sinkhorn_iters, cfg_.hc_eps, y, mix);
  rmsnorm(y, b.attn_norm, eps, dim, y);
  attention_forward(b.attn, b.compress_ratio, cfg_, rope_for(b.compress_ratio), y, segs, opts_.act_quant, out);
  hc_post(mix, out, h, n, hc, dim, h);

  hc_pre(b.hc_ffn, h, n, hc, dim, eps, cfg_.hc_sinkhorn_iters, cfg_.hc_eps, y, mix);
  rmsnorm(y, b.ffn_norm, eps, dim, y);
  const int experts = moe_forward(b.ffn, b.hash, cfg_, y, tokens, n, opts_.act_quant, out);
  hc_post(mix, out, h, n, hc, dim, h);
  return experts;
}

std::vector<float> Model::head_logits(const HcParams& hc_head_p, std::span<const float> norm,
                                      std::span<const float> stream) const {
  const int dim = cfg_.hidden_size;
  const int n = static_cast<int>(stream.size() / (static_cast<size_t>(cfg_.hc_mult) * dim));
  std::vector<float> y(static_cast<size_t>(n) * dim);
  hc_head(hc_head_p, stream, n, cfg_.hc_mult, dim, cfg_.rms_norm_eps, cfg_.hc_eps, y);
  rmsnorm(y, norm, cfg_.rms_norm_eps, dim, y);
  return head(y);
}

std::vector<float> Model::head(std::span<const float> y) const {
  const int dim = cfg_.hidden_size, V = cfg_.vocab_size;
  const int n = static_cast<int>(y.size() / dim);
  // The head's rows are this rank's share of the vocabulary; the ranks' parts are gathered.
  const int part_v = w_->head.out;
  std::vector<float> part(static_cast<size_t>(n) * part_v), logits(static_cast<size_t>(n) * V);
  linear(w_->head, y, n, part, false);
  if (part_v == V) return part;  // the whole head on this rank
  std::vector<float> row(V);
  for (int t = 0; t < n; ++t) {
    Comm::get().all_gather(std::span<const float>(part).subspan(static_cast<size_t>(t) * part_v, part_v), row);
    std::copy(row.begin(), row.end(), logits.begin() + static_cast<size_t>(t) * V);
  }
  return logits;
}

std::vector<float> Model::all_logits(std::span<const float> final_stream) const {
  return head_logits(w_->hc_head, w_->norm, final_stream);
}

std::vector<float> Model::embed(std::span<const int> tokens) const {
  // The embedding's rows are this rank's share of the vocabulary: other ids give zeros here
  // and their rows from the rank that holds them.
  const bool whole = w_->embed.out == cfg_.vocab_size;
  const int dim = cfg_.hidden_size, v0 = whole ? 0 : Comm::get().rank() * w_->embed.out;
  std::vector<float> e(tokens.size() * dim, 0.0f);
  for (size_t t = 0; t < tokens.size(); ++t)
    if (tokens[t] >= v0 && tokens[t] < v0 + w_->embed.out) w_->embed.dequant_row(tokens[t] - v0, e.data() + t * dim);
  if (!whole) Comm::get().all_reduce_sum(e);
  return e;
}

std::vector<float> Model::forward(Session& s, std::span<const int> tokens, ForwardTrace* trace) const {
  const SessionStep one{&s, tokens};
  return std::move(run(std::span<const SessionStep>(&one, 1), trace, nullptr).front());
}

std::vector<std::vector<float>> Model::forward(std::span<const SessionStep> steps, StepStats* stats,
                                               ForwardTrace* trace) const {
  return run(steps, trace, stats);
}

std::vector<std::vector<float>> Model::run(std::span<const SessionStep> steps, ForwardTrace* trace,
                                           StepStats* stats) const {
  DSV4_CHECK(!steps.empty(), "no sessions to step");
  std::vector<int> tokens;  // [N]: the steps' tokens one after another
  for (size_t i = 0; i < steps.size(); ++i) {
    DSV4_CHECK(steps[i].session != nullptr, "batch entry ", i, " has no session");
    for (size_t j = 0; j < i; ++j)
      DSV4_CHECK(steps[j].session != steps[i].session, "batch entries ", j, " and ", i, " are the same session");
    check_tokens(steps[i].tokens);
    tokens.insert(tokens.end(), steps[i].tokens.begin(), steps[i].tokens.end());
  }
  const int n = static_cast<int>(tokens.size()), hc = cfg_.hc_mult, dim = cfg_.hidden_size;
  std::vector<Segment> segs(steps.size());
  for (size_t i = 0, row = 0; i < steps.size(); row += steps[i].tokens.size(), ++i)
    segs[i] = {static_cast<int>(row), static_cast<int>(steps[i].tokens.size()), steps[i].session->pos, nullptr};

  // Embedding, repeated into every hc copy: h [n, hc, dim].
  std::vector<float> h(static_cast<size_t>(n) * hc * dim);
  const std::vector<float> e = embed(tokens);
  for (int t = 0; t < n; ++t)
    for (int i = 0; i < hc; ++i)
      std::copy_n(e.begin() + static_cast<size_t>(t) * dim, dim, h.begin() + (static_cast<size_t>(t) * hc + i) * dim);
  if (trace) trace->layer_hidden.clear();
  for (size_t l = 0; l < w_->layers.size(); ++l) {
    for (size_t i = 0; i < steps.size(); ++i) segs[i].cache = &steps[i].session->layers[l];
    const int experts = block_forward(w_->layers[l], segs, h, tokens);
    if (stats) stats->routed_experts += experts;
    if (trace && trace->keep_layer_hidden) {
      const std::vector<int>& want = trace->hidden_layers;
      const bool keep = want.empty() || std::find(want.begin(), want.end(), static_cast<int>(l)) != want.end();
      trace->layer_hidden.push_back(keep ? h : std::vector<float>{});
    }
  }
  for (const SessionStep& st : steps) st.session->pos += static_cast<long long>(st.tokens.size());

  // The head over each step's last row, one GEMM.
  const size_t flat = static_cast<size_t>(hc) * dim;
  std::vector<float> last(steps.size() * flat);
  for (size_t i = 0; i < steps.size(); ++i)
    std::copy_n(h.begin() + (segs[i].row0 + segs[i].n - 1) * flat, flat, last.begin() + i * flat);
  const std::vector<float> logits = head_logits(w_->hc_head, w_->norm, last);
  std::vector<std::vector<float>> out(steps.size());
  const size_t V = cfg_.vocab_size;
  for (size_t i = 0; i < steps.size(); ++i) out[i].assign(logits.begin() + i * V, logits.begin() + (i + 1) * V);
  if (trace) trace->final_stream = std::move(h);
  return out;
}

std::vector<float> Model::mtp_forward(Session& s, std::span<const float> stream, std::span<const int> next_tokens,
                                      std::vector<float>* out_stream) const {
  DSV4_CHECK(!w_->mtp.empty(), "this model has no MTP layer (num_nextn_predict_layers = 0)");
  check_tokens(next_tokens);
  const int n = static_cast<int>(next_tokens.size()), hc = cfg_.hc_mult, dim = cfg_.hidden_size;
  const size_t flat = static_cast<size_t>(hc) * dim;
  DSV4_CHECK(stream.size() == n * flat, "mtp_forward: stream holds ", stream.size() / flat,
             " positions for ", n, " tokens");
  const MtpWeights& m = w_->mtp[0];
  std::vector<float> h;
  mtp_input(m, cfg_, embed(next_tokens), stream, n, opts_.act_quant, h);
  const Segment seg{0, n, s.mtp_pos, &s.mtp[0]};
  block_forward(m.block, std::span<const Segment>(&seg, 1), h, next_tokens);
  s.mtp_pos += n;
  std::vector<float> logits = head_logits(m.hc_head, m.norm, std::span<const float>(h).subspan((n - 1) * flat, flat));
  if (out_stream) *out_stream = std::move(h);
  return logits;
}

}  // namespace dsv4
