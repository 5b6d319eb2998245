// dsv4 bench: prefill and decode speed of a checkpoint against the machine's limits: the
// memory bandwidth (measured here, STREAM triad) for decode, which reads the active weights
// once per token, and the FMA peak (measured here too) for prefill, which is arithmetic.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <random>
#include <thread>

#include "core/check.h"
#include "core/fma_peak.h"
#include "core/membench.h"
#include "core/thread_pool.h"
#include "dist/comm.h"
#include "model/cost.h"
#include "model/model.h"
#include "tools/commands.h"

namespace dsv4::tools {

namespace {

struct BenchArgs {
  std::string model_dir;
  int prefill = 64, decode = 16, threads = 0;
  bool json = false;
};

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

int run(const BenchArgs& a) {
  DSV4_CHECK(a.prefill >= 1 && a.decode >= 1, "--prefill and --decode must be >= 1");
  set_num_threads(a.threads);
  const int threads = pool().size();
  auto log = [&](const std::string& s) {
    if (!a.json) std::cerr << s << std::endl;
  };
  // Bandwidth is measured before and after the model runs and the higher value kept: the
  // machine's neighbours move it by 2x within minutes, and the ratio must not flatter decode.
  log("measuring memory bandwidth (STREAM triad, " + std::to_string(threads) + " threads)...");
  MemBandwidth bw = measure_memory_bandwidth();

  log("loading " + a.model_dir + " ...");
  Model model(a.model_dir);
  // Page the weights in once so the timings measure memory, not the disk.
  volatile uint8_t sink = 0;
  for (const auto& f : model.checkpoint().files())
    for (const auto& [name, t] : f->tensors())
      for (size_t i = 0; i < t.nbytes; i += 4096) sink = sink + t.data[i];
  const ModelConfig& c = model.config();
  const TokenCost cost = token_cost(c);
  std::mt19937 rng(1);
  std::vector<int> ids(a.prefill + a.decode);
  for (int& t : ids) t = static_cast<int>(rng() % c.vocab_size);

  Session s = model.new_session();
  log("prefill of " + std::to_string(a.prefill) + " tokens...");
  double t0 = now_s();
  model.forward(s, std::span<const int>(ids).first(a.prefill));
  const double prefill_s = now_s() - t0;
  log("decode of " + std::to_string(a.decode) + " tokens...");
  const Comm& comm = Comm::get();
  const Comm::Stats comm0 = comm.stats();
  t0 = now_s();
  for (int i = 0; i < a.decode; ++i) model.forward(s, std::span<const int>(ids).subspan(a.prefill + i, 1));
  const double decode_s = now_s() - t0;
  const double comm_bytes = static_cast<double>(comm.stats().bytes - comm0.bytes) / a.decode;
  const double comm_share = (comm.stats().seconds - comm0.seconds) / decode_s;
  log("measuring the FMA peak...");
  const double peak_gflops = measure_fma_peak_gflops();
  log("measuring memory bandwidth again...");
  const MemBandwidth after = measure_memory_bandwidth();
  bw.triad_gbps = std::max(bw.triad_gbps, after.triad_gbps);
  bw.read_gbps = std::max(bw.read_gbps, after.read_gbps);

  const double prefill_tok_s = a.prefill / prefill_s, decode_tok_s = a.decode / decode_s;
  const double decode_gbps = cost.weight_bytes * decode_tok_s / 1e9;
  const double prefill_gflops = cost.matmul_flops * prefill_tok_s / 1e9;
  if (a.json) {
    std::printf(
        "{\"threads\": %d, \"prefill_tokens\": %d, \"decode_tokens\": %d, \"prefill_tok_s\": %.3f, "
        "\"decode_tok_s\": %.3f, \"decode_weight_bytes_per_token\": %.0f, \"decode_gbps\": %.3f, "
        "\"stream_gbps\": %.3f, \"read_gbps\": %.3f, \"decode_bandwidth_ratio\": %.4f, \"prefill_gflops\": %.3f, "
        "\"fma_peak_gflops\": %.3f, \"prefill_peak_ratio\": %.4f, \"ranks\": %d, \"comm_bytes_per_token\": %.0f, "
        "\"comm_time_share\": %.4f}\n",
        threads, a.prefill, a.decode, prefill_tok_s, decode_tok_s, cost.weight_bytes, decode_gbps, bw.triad_gbps,
        bw.read_gbps, decode_gbps / bw.triad_gbps, prefill_gflops, peak_gflops,
        peak_gflops > 0 ? prefill_gflops / peak_gflops : 0.0, comm.world(), comm_bytes, comm_share);
    return 0;
  }
  std::printf("threads                 %d\n", threads);
  std::printf("memory bandwidth        %.2f GB/s STREAM triad, %.2f GB/s read (best of before and after)\n",
              bw.triad_gbps, bw.read_gbps);
  std::printf("prefill                 %d tokens in %.3f s: %.2f tok/s, %.2f GFLOP/s (%.0f%% of the measured %.1f GFLOP/s FMA peak)\n",
              a.prefill, prefill_s, prefill_tok_s, prefill_gflops, peak_gflops > 0 ? 100 * prefill_gflops / peak_gflops : 0.0,
              peak_gflops);
  std::printf("decode                  %d tokens in %.3f s: %.2f tok/s\n", a.decode, decode_s, decode_tok_s);
  std::printf("weights per token       %.1f MB -> %.2f GB/s = %.0f%% of the triad bandwidth (%.0f%% of read)\n",
              cost.weight_bytes / 1e6, decode_gbps, 100 * decode_gbps / bw.triad_gbps, 100 * decode_gbps / bw.read_gbps);
  if (comm.distributed())
    std::printf("model parallel          %d ranks (each measured its own bandwidth; weights split among them): "
                "rank 0 sent/received %.1f KB per decoded token in collectives, %.0f%% of decode time\n",
                comm.world(), comm_bytes / 1e3, 100 * comm_share);
  return 0;
}

}  // namespace

void add_bench(CLI::App& app, std::vector<Command>& out) {
  auto a = std::make_shared<BenchArgs>();
  CLI::App* sub = app.add_subcommand("bench", "prefill / decode speed against memory bandwidth and FMA peak");
  sub->add_option("-m,--model", a->model_dir, "checkpoint directory")->required();
  sub->add_option("--prefill", a->prefill, "prefill tokens");
  sub->add_option("--decode", a->decode, "decoded tokens");
  sub->add_option("--threads", a->threads, "worker threads (0 = all cores)");
  sub->add_flag("--json", a->json, "print one JSON object");
  out.push_back({sub, [a] { return run(*a); }});
}

}  // namespace dsv4::tools
