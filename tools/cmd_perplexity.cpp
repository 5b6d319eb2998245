// dsv4 perplexity: how well a model predicts a text. The text is tokenized (BOS first when the
// config names one) and fed in chunks; every position's logits give the log-probability of
// the next token (log-softmax in double). Texts longer than --ctx are scored in consecutive
// windows of --ctx tokens, each starting a fresh session. With --float the float master weights
// of a dsv4 training run are scored through the training forward instead (the same windows):
// the model before its quantization to the released FP8 / FP4 format.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>

#include "core/check.h"
#include "core/read_file.h"
#include "core/thread_pool.h"
#include "model/model.h"
#include "runtime/engine.h"
#include "tools/commands.h"
#include "tools/progress.h"
#include "train/rl_loss.h"
#include "train/train_model.h"
#include "train/train_state.h"

namespace dsv4::tools {

namespace {

struct PerplexityArgs {
  std::string model_dir, text_file;
  int ctx = 2048, threads = 0;
  bool json = false, float_weights = false;
};

constexpr int kChunk = 256;  // tokens per forward call

// The mean of -log softmax(logits row)[next] over rows [c0, c1) of a window ending at w1.
void score_rows(const std::vector<float>& logits, const std::vector<int>& ids, size_t c0, size_t c1, size_t w1, int V,
                double& nll, long long& scored) {
  for (size_t i = c0; i < c1 && i + 1 < w1; ++i) {  // position i predicts token i + 1
    nll -= log_prob(std::span<const float>(logits).subspan((i - c0) * V, V), ids[i + 1]);
    ++scored;
  }
}

int run(const PerplexityArgs& a) {
  set_num_threads(a.threads);
  DSV4_CHECK(a.ctx >= 2, "--ctx must be at least 2");
  const std::string content = read_file(a.text_file);
  namespace fs = std::filesystem;
  // --float: the float master weights a dsv4 training run saved, through the training forward
  // (the model before its FP8 / FP4 quantization); else the checkpoint as dsv4 serves it.
  std::unique_ptr<Engine> engine;
  std::unique_ptr<Tokenizer> float_tok;
  ModelConfig c;
  TrainWeights fw;
  if (a.float_weights) {
    const std::string state = (fs::path(a.model_dir) / "train_state.safetensors").string();
    DSV4_CHECK(fs::exists(state), "--float needs the float weights of a dsv4 training run: ", state, " does not exist");
    c = load_config((fs::path(a.model_dir) / "config.json").string());
    fw = read_model_weights(a.model_dir, c);
    float_tok = std::make_unique<Tokenizer>(Tokenizer::load((fs::path(a.model_dir) / "tokenizer.json").string()));
  } else {
    engine = std::make_unique<Engine>(a.model_dir);
    c = engine->model().config();
  }
  const Tokenizer& tok = engine ? engine->tokenizer() : *float_tok;
  const int bos = engine ? engine->bos_id() : c.bos_token_id;
  std::vector<int> ids;
  if (bos >= 0) ids.push_back(bos);
  const std::vector<int> text = tok.encode(content);
  ids.insert(ids.end(), text.begin(), text.end());
  DSV4_CHECK(ids.size() >= 2, a.text_file, ": no tokens to score (the text is empty)");

  const int V = c.vocab_size;
  const TrainRopes ropes(c);
  double nll = 0;
  long long scored = 0;
  ProgressBar bar("perplexity");
  for (size_t w0 = 0; w0 + 1 < ids.size(); w0 += a.ctx) {
    const size_t w1 = std::min(ids.size(), w0 + a.ctx);
    if (!engine) {
      score_rows(train_logits(fw, c, ropes, std::span<const int>(ids).subspan(w0, w1 - w0)), ids, w0, w1, w1, V, nll,
                 scored);
      bar.update(static_cast<double>(w1) / ids.size());
      continue;
    }
    const Model& model = engine->model();
    Session s = model.new_session();
    for (size_t c0 = w0; c0 < w1; c0 += kChunk) {
      const size_t c1 = std::min(w1, c0 + kChunk);
      ForwardTrace trace;
      model.forward(s, std::span<const int>(ids).subspan(c0, c1 - c0), &trace);
      score_rows(model.all_logits(trace.final_stream), ids, c0, c1, w1, V, nll, scored);
      bar.update(static_cast<double>(c1) / ids.size());
    }
  }
  bar.done();
  const double mean = nll / static_cast<double>(scored);
  if (a.json) {
    std::printf("{\"tokens\": %lld, \"nll\": %.6f, \"ppl\": %.4f}\n", scored, mean, std::exp(mean));
  } else {
    std::printf("%lld tokens scored: mean negative log-likelihood %.4f nats, perplexity %.3f\n", scored, mean,
                std::exp(mean));
  }
  return 0;
}

}  // namespace

void add_perplexity(CLI::App& app, std::vector<Command>& out) {
  auto a = std::make_shared<PerplexityArgs>();
  CLI::App* sub = app.add_subcommand("perplexity", "negative log-likelihood and perplexity of a text");
  sub->add_option("-m,--model", a->model_dir, "checkpoint directory (with tokenizer.json)")->required();
  sub->add_option("--text-file", a->text_file, "the text")->required();
  sub->add_option("--ctx", a->ctx, "window length in tokens");
  sub->add_option("--threads", a->threads, "worker threads (0 = all cores)");
  sub->add_flag("--float", a->float_weights, "score the float weights of a dsv4 training run (before quantization)");
  sub->add_flag("--json", a->json, "print {\"tokens\", \"nll\", \"ppl\"}");
  out.push_back({sub, [a] { return run(*a); }});
}

}  // namespace dsv4::tools
