#include "train/param_set.h"

#include <algorithm>
#include <atomic>
#include <numeric>
#include <span>

#include "core/check.h"
#include "core/thread_pool.h"
#include "train/schedule.h"

namespace dsv4 {

ParamSet::ParamSet(const ModelConfig& c, TrainWeights& w, TrainWeights& g, const std::string& optimizer,
                   float weight_decay)
    : weight_decay_(weight_decay) {
  DSV4_CHECK(optimizer == "muon" || optimizer == "adamw", "optimizer must be muon or adamw, got ", optimizer);
  const auto shapes = param_shapes(c);
  std::vector<std::pair<std::string, std::vector<float>*>> ws, gs;
  for_each_param(w, [&](const std::string& n, std::vector<float>& v) { ws.push_back({n, &v}); });
  for_each_param(g, [&](const std::string& n, std::vector<float>& v) { gs.push_back({n, &v}); });
  DSV4_CHECK(ws.size() == gs.size(), "internal: weights and gradients differ in layout");
  for (size_t i = 0; i < ws.size(); ++i) {
    Param p;
    p.name = ws[i].first, p.w = ws[i].second, p.g = gs[i].second, p.shape = shapes.at(p.name);
    p.muon = optimizer == "muon" && uses_muon(p.name, p.shape);
    p.decay = p.shape.size() == 2;
    p.indexer = p.name.find(".indexer.") != std::string::npos;
    params_.push_back(std::move(p));
  }
}

void ParamSet::zero_grads() {
  pool().parallel_for(params_.size(), [&](size_t i0, size_t i1) {
    for (size_t i = i0; i < i1; ++i) std::fill(params_[i].g->begin(), params_[i].g->end(), 0.0f);
  });
}

void ParamSet::scale_indexer_grads(double tokens) {
  DSV4_CHECK(tokens > 0, "scale_indexer_grads: no tokens");
  for (Param& p : params_)
    if (p.indexer)
      for (float& v : *p.g) v = static_cast<float>(v / tokens);
}

double ParamSet::step(float lr, float grad_clip) {
  std::vector<std::span<float>> grads;
  for (Param& p : params_) grads.push_back(*p.g);
  const double norm = clip_grad_norm(grads, grad_clip);
  // Each parameter's update runs whole on one thread (its products inline there): the default
  // model's matrices are too small for the threads to share one product well, and Muon was a
  // third of its step. Costliest first, claimed in turn, so that the threads finish together;
  // an update depends on its parameter alone, so the bits do not depend on who ran it.
  auto cost = [](const Param& p) {
    const double n = static_cast<double>(p.w->size());
    return p.muon ? n * static_cast<double>(std::min(p.shape[0], p.shape[1])) : n;
  };
  std::vector<size_t> order(params_.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return cost(params_[a]) > cost(params_[b]); });
  std::atomic<size_t> next{0};
  pool().parallel_for(static_cast<size_t>(pool().size()), [&](size_t, size_t) {
    for (size_t i = next++; i < order.size(); i = next++) update(params_[order[i]], lr);
  });
  return norm;
}

void ParamSet::update(Param& p, float lr) const {
  if (p.muon) {
    MuonParams mp;
    mp.weight_decay = weight_decay_;
    muon_step(*p.w, static_cast<int>(p.shape[0]), static_cast<int>(p.shape[1]), *p.g, p.muon_state, mp, lr);
  } else {
    AdamWParams ap;
    ap.weight_decay = p.decay ? weight_decay_ : 0.0f;
    adamw_step(*p.w, *p.g, p.adam, ap, lr);
  }
}

}  // namespace dsv4
