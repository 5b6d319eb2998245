#include "train/train_step.h"

#include "train/routing.h"

namespace dsv4 {

TrainStep::TrainStep(const ModelConfig& c, TrainWeights& w, const TrainSettings& s)
    : c_(c), w_(w), s_(s), ropes_(c), g_(zero_weights(c)),
      params_(std::make_unique<ParamSet>(c, w, g_, s.optimizer, s.weight_decay)) {}

StepLosses TrainStep::run(const std::vector<TrainSource>& sources, long long step, float lr) {
  SequenceOptions o;
  o.mtp_weight = s_.mtp_weight, o.grad_scale = 1.0f / static_cast<float>(s_.batch);
  // The batch's sequences as the rows of one matrix: each product one GEMM over all their
  // tokens, threads over rows, the same bits for any number of threads.
  std::vector<TrainSequence> seqs;
  std::vector<BatchSequence> batch;
  for (int b = 0; b < s_.batch; ++b) seqs.push_back(sample_sequence(sources, s_.seq_len, s_.seed, step, b));
  for (const TrainSequence& q : seqs) batch.push_back({q.inputs, q.targets});
  params_->zero_grads();
  std::vector<std::vector<long long>> load_sum;
  const BatchLoss losses = train_batch(w_, c_, ropes_, batch, o, &g_, &load_sum);
  StepLosses out;
  for (const SequenceLoss& l : losses.seqs) out.loss += l.main / s_.batch, out.mtp_loss += l.mtp / s_.batch;
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
  out.index_loss = losses.index / tokens;
  return out;
}

}  // namespace dsv4
