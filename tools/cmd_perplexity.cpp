// dsv4 perplexity: how well a model predicts a text. The text is tokenized (BOS first when the
// config names one) and fed in chunks; every position's logits give the log-probability of
// the next token (log-softmax in double). Texts longer than --ctx are scored in consecutive
// windows of --ctx tokens, each starting a fresh session.
#include <cmath>
#include <cstdio>
#include <iostream>
#include <memory>

#include "core/check.h"
#include "core/read_file.h"
#include "core/thread_pool.h"
#include "model/model.h"
#include "runtime/engine.h"
#include "tools/commands.h"
#include "tools/progress.h"

namespace dsv4::tools {

namespace {

struct PerplexityArgs {
  std::string model_dir, text_file;
  int ctx = 2048, threads = 0;
  bool json = false;
};

constexpr int kChunk = 256;  // tokens per forward call

int run(const PerplexityArgs& a) {
  set_num_threads(a.threads);
  DSV4_CHECK(a.ctx >= 2, "--ctx must be at least 2");
  const std::string content = read_file(a.text_file);
  const Engine engine(a.model_dir);
  const Model& model = engine.model();
  std::vector<int> ids;
  if (engine.bos_id() >= 0) ids.push_back(engine.bos_id());
  const std::vector<int> text = engine.tokenizer().encode(content);
  ids.insert(ids.end(), text.begin(), text.end());
  DSV4_CHECK(ids.size() >= 2, a.text_file, ": no tokens to score (the text is empty)");

  const int V = model.config().vocab_size;
  double nll = 0;
  long long scored = 0;
  ProgressBar bar("perplexity");
  for (size_t w0 = 0; w0 + 1 < ids.size(); w0 += a.ctx) {
    const size_t w1 = std::min(ids.size(), w0 + a.ctx);
    Session s = model.new_session();
    for (size_t c0 = w0; c0 < w1; c0 += kChunk) {
      const size_t c1 = std::min(w1, c0 + kChunk);
      ForwardTrace trace;
      model.forward(s, std::span<const int>(ids).subspan(c0, c1 - c0), &trace);
      const std::vector<float> logits = model.all_logits(trace.final_stream);
      for (size_t i = c0; i < c1 && i + 1 < w1; ++i) {  // position i predicts token i + 1
        const float* l = logits.data() + (i - c0) * V;
        double mx = l[0];
        for (int v = 1; v < V; ++v) mx = std::max(mx, static_cast<double>(l[v]));
        double sum = 0;
        for (int v = 0; v < V; ++v) sum += std::exp(l[v] - mx);
        nll += mx + std::log(sum) - l[ids[i + 1]];
        ++scored;
      }
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
  sub->add_option("--ctx", a->ctx, "window length in tokens (default 2048)");
  sub->add_option("--threads", a->threads, "worker threads (0 = all cores)");
  sub->add_flag("--json", a->json, "print {\"tokens\", \"nll\", \"ppl\"}");
  out.push_back({sub, [a] { return run(*a); }});
}

}  // namespace dsv4::tools
