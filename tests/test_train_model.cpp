// The whole training model: its gradient against finite differences of its own loss on a tiny
// model with every V4 feature (window, CSA with the indexer, HCA, mHC, a hash layer and score
// routed MoE, MTP), its logits against the production forward on the exported (quantized)
// checkpoint, and the export's quantization.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "ckpt/cost.h"
#include "core/check.h"
#include "core/thread_pool.h"
#include "io/safetensors.h"
#include "model/model.h"
#include "test_util.h"
#include "tokenizer/bpe_train.h"
#include "train/matmul.h"
#include "train/train_cost.h"
#include "train/train_model.h"
#include "train/train_weights.h"
#include "train/trainer.h"

namespace dsv4 {
namespace {

std::string tiny_config_json(int index_topk, int vocab = 40) {
  nlohmann::ordered_json c = {
      {"vocab_size", vocab}, {"hidden_size", 128}, {"moe_intermediate_size", 128}, {"num_hidden_layers", 3},
      {"num_hash_layers", 1}, {"num_nextn_predict_layers", 1}, {"num_attention_heads", 2}, {"n_routed_experts", 4},
      {"n_shared_experts", 1}, {"num_experts_per_tok", 2}, {"scoring_func", "sqrtsoftplus"},
      {"routed_scaling_factor", 1.5}, {"swiglu_limit", 10.0}, {"q_lora_rank", 128}, {"head_dim", 128},
      {"qk_rope_head_dim", 64}, {"rms_norm_eps", 1e-6}, {"o_groups", 2}, {"o_lora_rank", 64}, {"sliding_window", 4},
      {"compress_ratios", {0, 4, 8, 0}}, {"compress_rope_theta", 160000.0}, {"rope_theta", 10000.0},
      {"rope_scaling", {{"type", "yarn"}, {"factor", 4}, {"original_max_position_embeddings", 64},
                        {"beta_fast", 32}, {"beta_slow", 1}}},
      {"index_n_heads", 2}, {"index_head_dim", 128}, {"index_topk", index_topk}, {"hc_mult", 4},
      {"hc_sinkhorn_iters", 20}, {"hc_eps", 1e-6}, {"expert_dtype", "fp4"},
      {"quantization_config", {{"activation_scheme", "dynamic"}, {"fmt", "e4m3"}, {"quant_method", "fp8"},
                               {"scale_fmt", "ue8m0"}, {"weight_block_size", {128, 128}}}}};
  return c.dump();
}

const std::vector<int> kInputs = {3, 17, 5, 9, 22, 31, 8, 1, 14, 27, 6, 11, 39, 2};

TEST(TrainModel, GradientOfTheWholeModelMatchesFiniteDifferences) {
  // Every parameter tensor, a few coordinates each. The routing biases make the experts'
  // choice clear and the indexer keeps every entry, so no perturbation flips a discrete choice.
  const ModelConfig c = parse_config(tiny_config_json(8), "test");
  TrainWeights w = init_weights(c, 5);
  std::mt19937 rng(7);
  for (auto& v : {&w.layers[0].hc_attn.fn, &w.layers[1].hc_ffn.fn, &w.layers[2].hc_attn.fn, &w.hc_head.fn}) {
    std::normal_distribution<float> nd(0.0f, 0.3f);
    for (float& x : *v) x = nd(rng);  // mHC mixes that matter
  }
  for (BlockF32* b : {&w.layers[1], &w.layers[2], &w.mtp[0].block}) b->routing.bias = {10, -10, 10, -10};
  const TrainRopes ropes(c);
  std::vector<int> targets(kInputs.begin() + 1, kInputs.end());
  targets.push_back(-1);
  targets[4] = -1;  // an uncounted target
  SequenceOptions o;
  o.mtp_weight = 0.5f, o.grad_scale = 1.0f;
  TrainWeights g = zero_weights(c);
  train_sequence(w, c, ropes, kInputs, targets, o, &g);
  auto loss = [&] {
    const SequenceLoss l = train_sequence(w, c, ropes, kInputs, targets, o, nullptr);
    return l.main + o.mtp_weight * l.mtp;
  };
  std::map<std::string, std::vector<float>*> grads;
  for_each_param(g, [&](const std::string& name, std::vector<float>& v) { grads[name] = &v; });
  int checked = 0, tensors = 0;
  double worst = 0;
  for_each_param(w, [&](const std::string& name, std::vector<float>& v) {
    if (name.find(".indexer.") != std::string::npos) return;  // its own loss: below
    const std::vector<float>& gv = *grads.at(name);
    ++tensors;
    for (int k = 0; k < 3; ++k) {
      const size_t i = (size_t(k) * 7919 + name.size()) % v.size();
      const float keep = v[i], h = 1e-2f * std::max(1.0f, std::fabs(keep));
      v[i] = keep + h;
      const double up = loss();
      v[i] = keep - h;
      const double down = loss();
      v[i] = keep;
      const double numeric = (up - down) / (2.0 * h);
      const double err = std::fabs(numeric - gv[i]) / std::max(1e-2, std::fabs(numeric) + std::fabs(gv[i]));
      worst = std::max(worst, err);
      ++checked;
      EXPECT_LT(err, 2e-2) << name << "[" << i << "]: analytic " << gv[i] << ", numeric " << numeric;
    }
  });
  std::printf("whole model: worst relative gradient error %.2g over %d coordinates of %d tensors\n", worst, checked,
              tensors);
  EXPECT_GT(tensors, 100);
}

TEST(TrainModel, ABatchIsItsSequencesAsRowsAndItsBitsDoNotDependOnTheThreads) {
  // Sequences of different lengths (one too short for the MTP layer, ones shorter than the
  // window, CSA with a top-k smaller than the entries) trained as one batch of rows.
  const ModelConfig c = parse_config(tiny_config_json(2), "test");
  TrainWeights w = init_weights(c, 11);
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.0f, 0.3f);
  for (auto& v : {&w.layers[0].hc_attn.fn, &w.layers[1].hc_ffn.fn, &w.hc_head.fn})
    for (float& x : *v) x = nd(rng);
  const TrainRopes ropes(c);
  std::vector<std::vector<int>> inputs, targets;
  for (int len : {14, 3, 1, 21, 9}) {
    std::uniform_int_distribution<int> id(0, c.vocab_size - 1);
    inputs.emplace_back(len), targets.emplace_back(len);
    for (int t = 0; t < len; ++t) inputs.back()[t] = id(rng), targets.back()[t] = t == 1 ? -1 : id(rng);
  }
  std::vector<BatchSequence> batch;
  for (size_t s = 0; s < inputs.size(); ++s) batch.push_back({inputs[s], targets[s]});
  SequenceOptions o;
  o.mtp_weight = 0.3f, o.grad_scale = 0.25f;

  // The forward of each row is its sequence's alone, bit for bit; the gradients are the sums
  // of the sequences' own (up to float summation order).
  TrainWeights g = zero_weights(c), g_sum = zero_weights(c);
  const BatchLoss batched = train_batch(w, c, ropes, batch, o, &g);
  double index = 0;
  for (size_t s = 0; s < batch.size(); ++s) {
    TrainWeights gs = zero_weights(c);
    const BatchLoss alone = train_batch(w, c, ropes, std::span<const BatchSequence>(&batch[s], 1), o, &gs);
    EXPECT_EQ(batched.seqs[s].main, alone.seqs[0].main) << "sequence " << s;
    EXPECT_EQ(batched.seqs[s].mtp, alone.seqs[0].mtp) << "sequence " << s;
    EXPECT_EQ(batched.seqs[s].main_targets, alone.seqs[0].main_targets);
    EXPECT_EQ(batched.seqs[s].mtp_targets, alone.seqs[0].mtp_targets);
    index += alone.index;
    std::vector<std::vector<float>*> into;
    for_each_param(g_sum, [&](const std::string&, std::vector<float>& v) { into.push_back(&v); });
    size_t k = 0;
    for_each_param(gs, [&](const std::string&, std::vector<float>& v) { add_to(*into[k++], v); });
  }
  EXPECT_EQ(batched.seqs[2].mtp_targets, 0);  // one token: no MTP target
  EXPECT_NEAR(batched.index, index, 1e-6 * std::max(1.0, std::fabs(index)));
  std::map<std::string, const std::vector<float>*> sums;
  for_each_param(g_sum, [&](const std::string& name, const std::vector<float>& v) { sums[name] = &v; });
  double worst = 0;
  for_each_param(g, [&](const std::string& name, const std::vector<float>& v) {
    const std::vector<float>& ref = *sums.at(name);
    double scale = 0, diff = 0;
    for (size_t i = 0; i < v.size(); ++i) scale = std::max(scale, double(std::fabs(ref[i])));
    for (size_t i = 0; i < v.size(); ++i) diff = std::max(diff, double(std::fabs(v[i] - ref[i])));
    const double rel = scale > 0 ? diff / scale : diff;
    worst = std::max(worst, rel);
    EXPECT_LT(rel, 1e-4) << name;
  });
  std::printf("batch of %zu: gradients within %.2g (relative to each tensor's largest) of the sequences' sums\n",
              batch.size(), worst);

  // The same bits with 1, 2 or 3 threads.
  for (int threads : {1, 3, 2}) {
    set_num_threads(threads);
    TrainWeights gt = zero_weights(c);
    const BatchLoss lt = train_batch(w, c, ropes, batch, o, &gt);
    EXPECT_EQ(lt.index, batched.index) << threads << " threads";
    std::map<std::string, const std::vector<float>*> ref;
    for_each_param(g, [&](const std::string& name, const std::vector<float>& v) { ref[name] = &v; });
    for_each_param(gt, [&](const std::string& name, const std::vector<float>& v) {
      EXPECT_EQ(v, *ref.at(name)) << name << " with " << threads << " threads";
    });
  }
  set_num_threads(0);
}

TEST(TrainModel, ExportedCheckpointComputesWhatTheTrainingForwardComputes) {
  // The released format (FP8 / FP4 with power-of-two block scales) read back into float
  // masters: the training forward on those values and the production forward of dsv4 on the
  // checkpoint (smooth mode) give the same logits at every position.
  const ModelConfig c = parse_config(tiny_config_json(2), "test");
  const TrainWeights w = init_weights(c, 9);
  const std::string dir = (std::filesystem::temp_directory_path() / "dsv4_train_export").string();
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/config.json") << tiny_config_json(2);
  write_released_checkpoint(dir + "/model.safetensors", c, w);
  const TrainWeights back = read_checkpoint_weights(dir, c);
  // Quantization error bounded by the formats: e4m3 within 2^-4 of the block's scale grid.
  double fp8_err = 0, fp4_err = 0;
  std::map<std::string, const std::vector<float>*> orig;
  for_each_param(w, [&](const std::string& name, const std::vector<float>& v) { orig[name] = &v; });
  for_each_param(back, [&](const std::string& name, const std::vector<float>& v) {
    const std::vector<float>& o = *orig.at(name);
    double num = 0, den = 0;
    for (size_t i = 0; i < v.size(); ++i) num += (v[i] - o[i]) * (v[i] - o[i]), den += double(o[i]) * o[i];
    const double rel = den > 0 ? std::sqrt(num / den) : 0;
    if (name.find(".experts.") != std::string::npos) fp4_err = std::max(fp4_err, rel);
    else if (name.find(".wq_a.") != std::string::npos) fp8_err = std::max(fp8_err, rel);
  });
  std::printf("export: relative RMS error fp8 %.3g, fp4 %.3g\n", fp8_err, fp4_err);
  EXPECT_LT(fp8_err, 0.05);
  EXPECT_LT(fp4_err, 0.2);
  EXPECT_GT(fp4_err, 0.0);

  const TrainRopes ropes(c);
  const std::vector<float> ours = train_logits(back, c, ropes, kInputs);
  ModelOptions mo;
  mo.act_quant = false;
  const Model model(dir, mo);
  Session s = model.new_session();
  ForwardTrace trace;
  model.forward(s, kInputs, &trace);
  const std::vector<float> theirs = model.all_logits(trace.final_stream);
  ASSERT_EQ(ours.size(), theirs.size());
  double worst = 0;
  for (size_t i = 0; i < ours.size(); ++i) worst = std::max(worst, double(std::fabs(ours[i] - theirs[i])));
  std::printf("training forward vs production forward: worst logit difference %.3g\n", worst);
  EXPECT_LT(worst, 2e-3);
}

TEST(TrainModel, TrainingForwardComputesTheGoldensLogits) {
  // The official reference's checkpoints read into float masters (every FP8 / FP4 weight
  // dequantized exactly): the training forward's logits at every position against the
  // production forward's in smooth mode (act_quant off), and against the reference's own smooth
  // logits at the rows its golden keeps (the prefill's last position, each decode step, the
  // full prefill). Both forwards compute the same float32 arithmetic in different orders (the
  // production kernels' blocked sums, the training forward's one fused multiply-add chain per
  // output), so they agree to float32 summation-order error: measured 3.7e-6 .. 5.3e-6 against
  // the production forward and 3.4e-6 .. 6.4e-6 against the reference (the goldens allow 1e-3),
  // bounded here by 2e-5 and 1e-4. tiny-fp8's softmax gate is routed as the production forward
  // routes it.
  for (const std::string name : {"tiny", "tiny-long", "tiny-fp8", "tiny-short"}) {
    const std::string dir = test::golden_dir(name);
    const ModelConfig c = load_config(dir + "/config.json");
    SafetensorsFile g(dir + "/golden_smooth.safetensors");
    const int P = std::stoi(g.metadata().at("prefill")), D = std::stoi(g.metadata().at("decode")), V = c.vocab_size;
    const std::vector<int> tokens = test::ints(g, "tokens");
    const int n = static_cast<int>(tokens.size());
    ASSERT_EQ(n, P + D) << name;

    const std::vector<float> ours = train_logits(read_checkpoint_weights(dir, c), c, TrainRopes(c), tokens);
    const Model model(dir, ModelOptions{.act_quant = false});
    Session s = model.new_session();
    ForwardTrace trace;
    model.forward(s, tokens, &trace);
    const std::vector<float> production = model.all_logits(trace.final_stream);
    ASSERT_EQ(ours.size(), production.size()) << name;
    const double vs_production = test::max_abs_err(ours, production).err;
    auto row = [&](int t) { return std::span<const float>(ours).subspan(size_t(t) * V, V); };
    const std::vector<float> decode = test::floats(g, "decode.logits");
    double vs_reference = std::max(test::max_abs_err(row(P - 1), test::floats(g, "prefill.logits")).err,
                                   test::max_abs_err(row(n - 1), test::floats(g, "full_prefill.logits")).err);
    for (int i = 0; i < D; ++i)
      vs_reference = std::max(
          vs_reference, test::max_abs_err(row(P + i), std::span<const float>(decode).subspan(size_t(i) * V, V)).err);
    std::printf("%-10s %3d positions: training forward vs production forward %.3g, vs the reference %.3g\n",
                name.c_str(), n, vs_production, vs_reference);
    EXPECT_LT(vs_production, 2e-5) << name;
    EXPECT_LT(vs_reference, 1e-4) << name;
  }
}

// A training run directory with a byte-level tokenizer, a small text and the tiny model.
struct TinyRun {
  std::string dir;
  TrainRun run;
  explicit TinyRun(const std::string& name, const std::string& train_json) {
    dir = (std::filesystem::temp_directory_path() / name).string();
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    const int vocab = (static_cast<int>(v4_special_tokens().size()) + 256 + 127) / 128 * 128;
    std::ofstream(dir + "/cfg.json") << "{\"model\": " << tiny_config_json(2, vocab) << ", \"train\": " << train_json
                                     << "}";
    std::ofstream(dir + "/tokenizer.json") << byte_level_tokenizer_json();
    std::ofstream text(dir + "/text.txt");
    for (int i = 0; i < 60; ++i) text << "the cat sat on the mat. the dog sat on the log. ";
    run.config_path = dir + "/cfg.json", run.tokenizer_path = dir + "/tokenizer.json";
    run.data = {dir + "/text.txt"}, run.eval_path = dir + "/text.txt";
  }
};

TEST(Trainer, ResumedRunEndsWithTheBitsOfAnUninterruptedOne) {
  const std::string settings = R"({"steps": 4, "batch": 3, "seq_len": 24, "warmup": 1, "eval_every": 2,
                                   "save_every": 10, "eval_sequences": 2, "lr": 0.01})";
  TinyRun a("dsv4_train_straight", settings), b("dsv4_train_resumed", settings);
  a.run.out_dir = a.dir + "/out";
  const std::vector<StepLog> straight = train(a.run);
  b.run.out_dir = b.dir + "/out";
  b.run.stop_at = 2;
  ASSERT_EQ(train(b.run).size(), 2u);
  b.run.stop_at = -1, b.run.resume = true;
  const std::vector<StepLog> resumed = train(b.run);
  ASSERT_EQ(straight.size(), 4u);
  ASSERT_EQ(resumed.size(), 4u);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(straight[i].loss, resumed[i].loss) << "step " << i + 1;
    EXPECT_EQ(straight[i].eval_loss, resumed[i].eval_loss) << "step " << i + 1;
  }
  // Every saved tensor (float masters, optimizer moments, routing) bit for bit, and the
  // released checkpoint byte for byte.
  const SafetensorsFile sa(a.run.out_dir + "/train_state.safetensors"), sb(b.run.out_dir + "/train_state.safetensors");
  ASSERT_EQ(sa.tensors().size(), sb.tensors().size());
  int moments = 0;
  for (const auto& [name, t] : sa.tensors()) {
    const TensorView& u = sb.get(name);
    ASSERT_EQ(t.nbytes, u.nbytes) << name;
    EXPECT_EQ(std::memcmp(t.data, u.data, t.nbytes), 0) << name << " differs after resuming";
    moments += name.rfind("muon/", 0) == 0 || name.rfind("adam_v/", 0) == 0;
  }
  EXPECT_GT(moments, 50);
  std::ifstream fa(a.run.out_dir + "/model.safetensors", std::ios::binary), fb(b.run.out_dir + "/model.safetensors", std::ios::binary);
  const std::string ba((std::istreambuf_iterator<char>(fa)), {}), bb((std::istreambuf_iterator<char>(fb)), {});
  EXPECT_EQ(ba, bb);
  // A stop asked for after a step (`dsv4 train` on a signal) saves there; resumed, the same.
  TinyRun c("dsv4_train_signalled", settings);
  c.run.out_dir = c.dir + "/out";
  int asked = 0;
  c.run.should_stop = [&asked] { return ++asked == 3; };
  ASSERT_EQ(train(c.run).size(), 3u);
  c.run.should_stop = nullptr, c.run.resume = true;
  const std::vector<StepLog> signalled = train(c.run);
  ASSERT_EQ(signalled.size(), 4u);
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ(straight[i].loss, signalled[i].loss) << "step " << i + 1;
  std::ifstream fc(c.run.out_dir + "/model.safetensors", std::ios::binary);
  EXPECT_EQ(ba, std::string((std::istreambuf_iterator<char>(fc)), {}));
  // The output loads as a model.
  ModelOptions mo;
  const Model model(a.run.out_dir, mo);
  EXPECT_EQ(model.config().vocab_size, parse_config(tiny_config_json(2, model.config().vocab_size), "t").vocab_size);
  // The achieved GFLOP/s of every step, those read back from the saved history included, and
  // the log's last column.
  const double flops = training_flops_per_token(model.config(), true);
  for (const auto* log : {&straight, &resumed})
    for (const StepLog& l : *log) {
      EXPECT_GT(l.gflops, 0.0) << "step " << l.step;
      EXPECT_NEAR(l.gflops, l.tokens_per_s * flops / 1e9, 1e-9 * l.gflops) << "step " << l.step;
    }
  std::ifstream tsv(a.run.out_dir + "/train_log.tsv");
  std::string header, row;
  std::getline(tsv, header);
  EXPECT_EQ(header.substr(header.rfind('\t') + 1), "gflops");
  for (const StepLog& l : straight) {
    ASSERT_TRUE(std::getline(tsv, row));
    EXPECT_NEAR(std::stod(row.substr(row.rfind('\t') + 1)), l.gflops, 1e-5 * l.gflops) << row;
  }
}

TEST(TrainCost, EveryMatrixCountsThreePassesAndTheMtpLayerOnTop) {
  // Metric: exact up to summation order. The blocks' FLOPs are token_cost's (an independent
  // count of the same tensors) less the head; MTP adds the shared head, e_proj and h_proj (once
  // per hc copy) and its block, 3 passes each.
  const ModelConfig c = parse_config(tiny_config_json(2), "test");
  ASSERT_GT(c.num_nextn_predict_layers, 0);
  const double head = 2.0 * c.vocab_size * c.hidden_size, blocks = token_cost(c).matmul_flops - head;
  const double plain = training_flops_per_token(c, false);
  EXPECT_NEAR(plain, 3 * (blocks + head), 1e-12 * plain);
  const double d2 = 2.0 * c.hidden_size * c.hidden_size;
  const double projections = 3 * (d2 + c.hc_mult * d2);
  const double mtp_block = training_flops_per_token(c, true) - plain - 3 * head - projections;
  // Its block (window attention, score routing) costs about as much as a main one.
  EXPECT_GT(mtp_block, 0.5 * 3 * blocks / c.num_hidden_layers);
  EXPECT_LT(mtp_block, 1.5 * 3 * blocks / c.num_hidden_layers);
}

TEST(Trainer, LearnsARepetitiveText) {
  // Both optimizers bring the loss of a two-sentence text well down in 30 steps.
  for (const char* opt : {"muon", "adamw"}) {
    TinyRun r(std::string("dsv4_train_learns_") + opt, R"({"steps": 30, "batch": 2, "seq_len": 32, "warmup": 3,
        "eval_every": 30, "save_every": 30, "eval_sequences": 2, "lr": 0.01})");
    r.run.out_dir = r.dir + "/out";
    r.run.optimizer_override = opt;
    const std::vector<StepLog> log = train(r.run);
    ASSERT_EQ(log.size(), 30u);
    std::printf("%s: loss %.3f -> %.3f, held-out %.3f\n", opt, log.front().loss, log.back().loss, log.back().eval_loss);
    EXPECT_LT(log.back().loss, 0.5 * log.front().loss) << opt;
    EXPECT_TRUE(std::filesystem::exists(r.run.out_dir + "/loss.png"));
    EXPECT_TRUE(std::filesystem::exists(r.run.out_dir + "/train_log.tsv"));
  }
}

TEST(Trainer, BadInputIsRefusedWithItsName) {
  TinyRun r("dsv4_train_bad", R"({"steps": 2, "batch": 1, "seq_len": 16})");
  r.run.out_dir = r.dir + "/out";
  auto error_of = [](const TrainRun& run) {
    try {
      train(run);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  TrainRun missing = r.run;
  missing.data = {r.dir + "/nope.txt"};
  EXPECT_NE(error_of(missing).find("nope.txt"), std::string::npos) << error_of(missing);
  TrainRun resume = r.run;
  resume.resume = true;
  EXPECT_NE(error_of(resume).find("nothing to resume"), std::string::npos) << error_of(resume);
  TrainRun opt = r.run;
  opt.optimizer_override = "sgd";
  EXPECT_NE(error_of(opt).find("--optimizer"), std::string::npos) << error_of(opt);
  std::ofstream(r.dir + "/bad.json") << R"({"model": )" << tiny_config_json(2, 384) << R"(, "train": {"stpes": 3}})";
  TrainRun key = r.run;
  key.config_path = r.dir + "/bad.json";
  EXPECT_NE(error_of(key).find("train.stpes"), std::string::npos) << error_of(key);
  std::ofstream(r.dir + "/small.json") << R"({"model": )" << tiny_config_json(2, 40) << "}";
  TrainRun vocab = r.run;
  vocab.config_path = r.dir + "/small.json";
  EXPECT_NE(error_of(vocab).find("vocab_size"), std::string::npos) << error_of(vocab);
  TrainRun first = r.run;
  first.stop_at = 1;
  ASSERT_EQ(train(first).size(), 1u);
  TrainRun other = r.run;
  other.resume = true, other.optimizer_override = "adamw";
  EXPECT_NE(error_of(other).find("other settings"), std::string::npos) << error_of(other);
  TrainRun longer = r.run;
  longer.data = {r.dir + "/short.txt"};
  std::ofstream(r.dir + "/short.txt") << "the cat";
  EXPECT_NE(error_of(longer).find("short.txt"), std::string::npos) << error_of(longer);
  std::ofstream(r.dir + "/chat.jsonl") << "{\"prompt\": \"a\"}\n";
  TrainRun chat = r.run;
  chat.data = {r.dir + "/chat.jsonl"};
  EXPECT_NE(error_of(chat).find("chat.jsonl:1"), std::string::npos) << error_of(chat);
}

}  // namespace
}  // namespace dsv4
