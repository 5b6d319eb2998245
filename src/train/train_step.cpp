#include "train/train_step.h"

#include <algorithm>

#include "core/thread_pool.h"
#include "train/routing.h"

namespace dsv4 {

TrainStep::TrainStep(const ModelConfig& c, TrainWeights& w, const TrainSettings& s)
    : c_(c), w_(w), s_(s), ropes_(c), g_(zero_weights(c)),
      params_(std::make_unique<ParamSet>(c, w, g_, s.optimizer, s.weight_decay)) {}

StepLosses TrainStep::run(const std::vector<TrainSource>& sources, long long step, float lr) {
  SequenceOptions o;
  o.mtp_weight = s_.mtp_weight, o.grad_scale = 1.0f / static_cast<float>(s_.batch);
  // The batch's sequences in parallel, each on one thread (kernels called inside run inline),
  // in fixed contiguous groups with their own gradient buffers, summed in group order.
  const int groups = std::max(1, std::min(s_.batch, pool().size()));
  while (int(group_grads_.size()) < groups) group_grads_.push_back(zero_weights(c_));
  std::vector<SequenceLoss> losses(s_.batch);
  std::vector<std::vector<std::vector<long long>>> loads(s_.batch);
  pool().parallel_for(size_t(groups), [&](size_t g0, size_t g1) {
    for (size_t k = g0; k < g1; ++k) {
      for_each_param(group_grads_[k], [](const std::string&, std::vector<float>& v) { std::fill(v.begin(), v.end(), 0.0f); });
      for (int b = int(k * s_.batch / groups); b < int((k + 1) * s_.batch / groups); ++b) {
        const TrainSequence seq = sample_sequence(sources, s_.seq_len, s_.seed, step, b);
        losses[b] = train_sequence(w_, c_, ropes_, seq.inputs, seq.targets, o, &group_grads_[k], &loads[b]);
      }
    }
  });
  params_->zero_grads();
  for (int k = 0; k < groups; ++k) {
    size_t i = 0;
    for_each_param(group_grads_[k], [&](const std::string&, std::vector<float>& v) {
      std::vector<float>& dst = *params_->params()[i++].g;
      for (size_t j = 0; j < v.size(); ++j) dst[j] += v[j];
    });
  }
  std::vector<std::vector<long long>> load_sum = loads[0];
  StepLosses out;
  double index = 0;
  for (int b = 0; b < s_.batch; ++b) {
    out.loss += losses[b].main / s_.batch, out.mtp_loss += losses[b].mtp / s_.batch, index += losses[b].index;
    if (b > 0)
      for (size_t k = 0; k < loads[b].size(); ++k)
        for (size_t e = 0; e < loads[b][k].size(); ++e) load_sum[k][e] += loads[b][k][e];
  }
  // The indexers' KL loss was summed over tokens: per token, like the main loss.
  const double tokens = double(s_.batch) * s_.seq_len;
  params_->scale_indexer_grads(tokens);
  out.grad_norm = params_->step(lr, s_.grad_clip);
  // Auxiliary-loss-free balancing of the score-routed layers.
  size_t k = 0;  // load_sum is per block in for_each_block's order
  for_each_block(w_, [&](const std::string&, BlockF32& b) {
    if (!b.routing.bias.empty() && k < load_sum.size() && !load_sum[k].empty())
      update_routing_bias(b.routing.bias, load_sum[k], s_.bias_update_rate);
    ++k;
  });
  out.index_loss = index / tokens;
  return out;
}

}  // namespace dsv4
