// dsv4 bench: prefill and decode speed of a checkpoint against the machine's limits: the
// memory bandwidth (measured here, STREAM triad) for decode, which reads the active weights
// once per token, and the FMA peak (measured here too) for prefill, which is arithmetic.
// With --sessions B (a list: 1,2,4,8), B sessions decode together, one batched forward pass
// per step: the aggregate tokens/s, and the weight bytes a step reads (each routed expert
// once however many sessions chose it) with the bandwidth that implies.
// With --spec mtp|dspark: what a speculative verify step over 1 + k rows costs against a
// one-row decode step (the same weights read, so close to 1 while the reads bound a step), and
// greedy decoding with and without the drafter (tokens per pass, acceptance, tokens/s).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <random>
#include <string>
#include <thread>

#include "core/check.h"
#include "core/fma_peak.h"
#include "core/membench.h"
#include "core/thread_pool.h"
#include "dist/comm.h"
#include "ckpt/cost.h"
#include "model/model.h"
#include "quant/linear_profile.h"
#include "runtime/speculative.h"
#include "tools/commands.h"
#include "tools/options.h"

namespace dsv4::tools {

namespace {

struct BenchArgs {
  std::string model_dir;
  int prefill = 64, decode = 16, threads = 0, repeat = 1;
  std::vector<int> sessions = {1};
  bool json = false, profile = false;
  WeightsIn weights = WeightsIn::automatic;
  std::string spec = "off";
};

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

struct DecodeRun {
  int sessions = 1;
  double seconds = 0, step_weight_bytes = 0, comm_bytes_per_step = 0, comm_share = 0;
  std::vector<LinearProfileRow> profile;  // --profile
};

// B copies of the prefilled session decode `steps` tokens each, one batched step at a time.
DecodeRun decode_together(const Model& model, const Session& prefilled, int b, int steps, const TokenCost& cost,
                          bool profile) {
  std::mt19937 rng(static_cast<unsigned>(b));
  std::vector<Session> sessions(b, prefilled);
  std::vector<int> ids(static_cast<size_t>(b) * steps);
  for (int& t : ids) t = static_cast<int>(rng() % model.config().vocab_size);
  std::vector<SessionStep> batch(b);
  StepStats stats;
  const Comm& comm = Comm::get();
  const Comm::Stats comm0 = comm.stats();
  if (profile) linear_profile_start();
  const double t0 = now_s();
  for (int i = 0; i < steps; ++i) {
    for (int j = 0; j < b; ++j) batch[j] = {&sessions[j], std::span<const int>(ids).subspan(static_cast<size_t>(i) * b + j, 1)};
    model.forward(batch, &stats);
  }
  DecodeRun r;
  if (profile) r.profile = linear_profile_stop();
  r.sessions = b;
  r.seconds = now_s() - t0;
  r.step_weight_bytes = cost.fixed_bytes + (b - 1) * cost.embed_row_bytes +
                        cost.expert_bytes * static_cast<double>(stats.routed_experts) / steps;
  r.comm_bytes_per_step = static_cast<double>(comm.stats().bytes - comm0.bytes) / steps;
  r.comm_share = (comm.stats().seconds - comm0.seconds) / r.seconds;
  return r;
}

// Seconds per step of `steps` steps from the prefilled session, each feeding 1 + k random
// tokens and keeping one (a verify step that rejects every draft; k = 0: a decode step).
double verify_step_seconds(const Model& model, const Session& prefilled, int k, int steps) {
  std::mt19937 rng(static_cast<unsigned>(k + 7));
  Session s = prefilled;
  std::vector<int> rows(1 + k);
  const double t0 = now_s();
  for (int i = 0; i < steps; ++i) {
    for (int& t : rows) t = static_cast<int>(rng() % model.config().vocab_size);
    if (k == 0) {
      model.forward(s, rows);
      continue;
    }
    const SessionMark mark = model.mark(s, 1 + k);
    model.forward(s, rows);
    model.rollback(s, mark, mark.pos + 1);
  }
  return (now_s() - t0) / steps;
}

struct GreedyRun {
  double seconds = 0;
  int tokens = 0;
  SpecStats stats;
};

GreedyRun greedy(const Model& model, SpecMode mode, int draft, std::span<const int> prompt, int tokens) {
  SpecDecoder d(model, mode, draft, model.config().vocab_size, SamplingParams{.temperature = 0});
  Session s = model.new_session();
  d.prefill(s, prompt);
  GreedyRun r;
  const double t0 = now_s();
  while (r.tokens < tokens) r.tokens += static_cast<int>(d.step(s).tokens.size());
  r.seconds = now_s() - t0;
  r.stats = d.stats();
  return r;
}

// A profile row's share of a step: inline calls (one per thread at a time) count their thread
// time over the threads, as if the threads were busy with them together.
double step_ms(const LinearProfileRow& p, int steps, int threads) {
  return 1e3 * p.seconds / steps / (p.inline_on_thread ? threads : 1);
}

std::string profile_kind(const LinearProfileRow& p) {
  return p.format + (p.float_inputs ? " on float inputs" : "") + ", " + p.tokens + " token(s)" +
         (p.inline_on_thread ? ", one per thread" : "");
}

// --profile: the matrix products of each run's decode steps, by kind, per step.
void print_profile(const std::vector<DecodeRun>& runs, int steps, int threads) {
  for (const DecodeRun& r : runs) {
    double total_ms = 0;
    for (const LinearProfileRow& p : r.profile) total_ms += step_ms(p, steps, threads);
    std::printf("matrix products of a %d-session step (%.1f of its %.1f ms):\n", r.sessions, total_ms,
                1e3 * r.seconds / steps);
    std::printf("  %-48s %9s %9s %9s %7s\n", "kind", "calls", "ms", "MB", "GB/s");
    for (const LinearProfileRow& p : r.profile) {
      const double ms = step_ms(p, steps, threads), mb = p.weight_bytes / steps / 1e6;
      std::printf("  %-48s %9.1f %9.2f %9.1f %7.2f\n", profile_kind(p).c_str(), static_cast<double>(p.calls) / steps, ms, mb,
                  ms > 0 ? mb / ms : 0.0);
    }
  }
}

std::string profile_json(const DecodeRun& r, int steps, int threads) {
  std::string out = "[";
  for (const LinearProfileRow& p : r.profile) {
    char buf[320];
    std::snprintf(buf, sizeof buf,
                  "%s{\"format\": \"%s\", \"float_inputs\": %s, \"tokens\": \"%s\", \"inline\": %s, "
                  "\"calls_per_step\": %.2f, \"ms_per_step\": %.4f, \"weight_mb_per_step\": %.3f}",
                  out.size() > 1 ? ", " : "", p.format.c_str(), p.float_inputs ? "true" : "false", p.tokens.c_str(),
                  p.inline_on_thread ? "true" : "false", static_cast<double>(p.calls) / steps, step_ms(p, steps, threads),
                  p.weight_bytes / steps / 1e6);
    out += buf;
  }
  return out + "]";
}

// The --spec part of the report.
void bench_spec(const BenchArgs& a, const Model& model, const Session& prefilled, std::span<const int> prompt) {
  const ModelConfig& c = model.config();
  const SpecMode mode = parse_spec_mode(a.spec);
  if (mode == SpecMode::off) return;
  const int most = max_draft(c, mode);
  if (!a.json) {
    std::fflush(stdout);
    std::cerr << "speculative decoding (" << a.spec << ")..." << std::endl;
  }
  const double decode_s = verify_step_seconds(model, prefilled, 0, a.decode);
  std::vector<double> verify_s;
  for (int k = 1; k <= most; ++k) verify_s.push_back(verify_step_seconds(model, prefilled, k, a.decode));
  const GreedyRun plain = greedy(model, SpecMode::off, 0, prompt, a.decode);
  std::vector<GreedyRun> spec;  // draft 1 .. most
  for (int k = 1; k <= most; ++k) spec.push_back(greedy(model, mode, k, prompt, a.decode));
  const GreedyRun& dflt = spec[default_draft(c, mode) - 1];
  if (a.json) {
    std::printf("{\"spec\": \"%s\", \"draft\": %d, \"decode_step_ms\": %.3f, \"verify_step_ms\": [", a.spec.c_str(),
                default_draft(c, mode), 1e3 * decode_s);
    for (size_t k = 0; k < verify_s.size(); ++k) std::printf("%s%.3f", k ? ", " : "", 1e3 * verify_s[k]);
    std::printf("], \"plain_tok_s\": %.3f, \"spec_tok_s\": %.3f, \"tokens_per_pass\": %.3f, \"acceptance\": %.4f, "
                "\"by_draft\": [",
                plain.tokens / plain.seconds, dflt.tokens / dflt.seconds, dflt.stats.tokens_per_step(),
                dflt.stats.acceptance());
    for (size_t k = 0; k < spec.size(); ++k)
      std::printf("%s{\"draft\": %zu, \"spec_tok_s\": %.3f, \"tokens_per_pass\": %.3f, \"acceptance\": %.4f}",
                  k ? ", " : "", k + 1, spec[k].tokens / spec[k].seconds, spec[k].stats.tokens_per_step(),
                  spec[k].stats.acceptance());
    std::printf("]}\n");
    return;
  }
  std::printf("speculative (%s), a verify step over 1 + k rows against a decode step (%.1f ms):\n", a.spec.c_str(),
              1e3 * decode_s);
  for (size_t k = 0; k < verify_s.size(); ++k)
    std::printf("  k = %zu   %8.1f ms   %5.2fx\n", k + 1, 1e3 * verify_s[k], verify_s[k] / decode_s);
  std::printf("greedy decoding, %d tokens: %.2f tok/s without the drafter; with it:\n", a.decode,
              plain.tokens / plain.seconds);
  for (size_t k = 0; k < spec.size(); ++k)
    std::printf("  draft %zu%s %8.2f tok/s   %.2f tokens per pass, %.0f%% of drafts accepted\n", k + 1,
                static_cast<int>(k) + 1 == default_draft(c, mode) ? " (default)" : "          ",
                spec[k].tokens / spec[k].seconds, spec[k].stats.tokens_per_step(), 100 * spec[k].stats.acceptance());
}

int run(const BenchArgs& a) {
  DSV4_CHECK(a.prefill >= 1 && a.decode >= 1, "--prefill and --decode must be >= 1");
  DSV4_CHECK(a.repeat >= 1 && a.repeat <= 100, "--repeat: ", a.repeat, " is not in [1, 100]");
  DSV4_CHECK(!a.sessions.empty(), "--sessions is empty");
  for (int b : a.sessions) DSV4_CHECK(b >= 1 && b <= 256, "--sessions: ", b, " is not in [1, 256]");
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
  Model model(a.model_dir, ModelOptions{.weights = a.weights});
  // Page the weights in once so the timings measure memory, not the disk.
  volatile uint8_t sink = 0;
  for (const auto& f : model.checkpoint().files())
    for (const auto& [name, t] : f->tensors())
      for (size_t i = 0; i < t.nbytes; i += 4096) sink = sink + t.data[i];
  const ModelConfig& c = model.config();
  const TokenCost cost = token_cost(c);
  // An Error now, before the measurements, when the checkpoint has no such drafter.
  if (a.spec != "off")
    check_spec(c, parse_spec_mode(a.spec), std::max(1, max_draft(c, parse_spec_mode(a.spec))));
  std::mt19937 rng(1);
  std::vector<int> ids(a.prefill);
  for (int& t : ids) t = static_cast<int>(rng() % c.vocab_size);

  Session s = model.new_session();
  log("prefill of " + std::to_string(a.prefill) + " tokens...");
  const double t0 = now_s();
  model.forward(s, ids);
  const double prefill_s = now_s() - t0;
  // Each round runs every --sessions entry once, so a quiet or a busy minute of the machine's
  // neighbours falls on all of them alike; an entry keeps its fastest round.
  std::vector<DecodeRun> runs(a.sessions.size());
  for (int round = 1; round <= a.repeat; ++round)
    for (size_t i = 0; i < a.sessions.size(); ++i) {
      const int b = a.sessions[i];
      log("decode of " + std::to_string(a.decode) + " tokens by " + std::to_string(b) + " session(s) together" +
          (a.repeat > 1 ? " (round " + std::to_string(round) + " of " + std::to_string(a.repeat) + ")" : "") + "...");
      DecodeRun r = decode_together(model, s, b, a.decode, cost, a.profile);
      if (round == 1 || r.seconds < runs[i].seconds) runs[i] = std::move(r);
    }
  log("measuring the FMA peak...");
  const double peak_gflops = measure_fma_peak_gflops();
  log("measuring memory bandwidth again...");
  const MemBandwidth after = measure_memory_bandwidth();
  bw.triad_gbps = std::max(bw.triad_gbps, after.triad_gbps);
  bw.read_gbps = std::max(bw.read_gbps, after.read_gbps);

  const double prefill_tok_s = a.prefill / prefill_s;
  const double prefill_gflops = cost.matmul_flops * prefill_tok_s / 1e9;
  const Comm& comm = Comm::get();
  if (a.json) {
    // One object per --sessions entry (JSON lines).
    for (const DecodeRun& r : runs) {
      const double decode_tok_s = a.decode / r.seconds, aggregate = r.sessions * decode_tok_s;
      const double decode_gbps = cost.weight_bytes * decode_tok_s / 1e9;
      const double step_gbps = r.step_weight_bytes * a.decode / r.seconds / 1e9;
      std::printf(
          "{\"threads\": %d, \"prefill_tokens\": %d, \"decode_tokens\": %d, \"prefill_tok_s\": %.3f, "
          "\"decode_tok_s\": %.3f, \"decode_weight_bytes_per_token\": %.0f, \"decode_gbps\": %.3f, "
          "\"stream_gbps\": %.3f, \"read_gbps\": %.3f, \"decode_bandwidth_ratio\": %.4f, \"prefill_gflops\": %.3f, "
          "\"fma_peak_gflops\": %.3f, \"prefill_peak_ratio\": %.4f, \"ranks\": %d, \"comm_bytes_per_token\": %.0f, "
          "\"comm_time_share\": %.4f, \"sessions\": %d, \"aggregate_decode_tok_s\": %.3f, "
          "\"step_weight_bytes\": %.0f, \"step_gbps\": %.3f, \"decode_rounds\": %d%s}\n",
          threads, a.prefill, a.decode, prefill_tok_s, decode_tok_s, cost.weight_bytes, decode_gbps, bw.triad_gbps,
          bw.read_gbps, decode_gbps / bw.triad_gbps, prefill_gflops, peak_gflops,
          peak_gflops > 0 ? prefill_gflops / peak_gflops : 0.0, comm.world(), r.comm_bytes_per_step / r.sessions,
          r.comm_share, r.sessions, aggregate, r.step_weight_bytes, step_gbps, a.repeat,
          a.profile ? (", \"profile\": " + profile_json(r, a.decode, threads)).c_str() : "");
    }
    bench_spec(a, model, s, ids);
    return 0;
  }
  std::printf("threads                 %d\n", threads);
  std::printf("memory bandwidth        %.2f GB/s STREAM triad, %.2f GB/s read (best of before and after)\n",
              bw.triad_gbps, bw.read_gbps);
  std::printf("prefill                 %d tokens in %.3f s: %.2f tok/s, %.2f GFLOP/s (%.0f%% of the measured %.1f GFLOP/s FMA peak)\n",
              a.prefill, prefill_s, prefill_tok_s, prefill_gflops, peak_gflops > 0 ? 100 * prefill_gflops / peak_gflops : 0.0,
              peak_gflops);
  std::printf("weights per token       %.1f MB (one session's decode step)\n", cost.weight_bytes / 1e6);
  std::printf("decode, %d tokens per session after the prefill%s:\n", a.decode,
              a.repeat > 1 ? (", the fastest of " + std::to_string(a.repeat) + " rounds").c_str() : "");
  std::printf("  sessions   tok/s each   tok/s total   vs 1 session   MB per step   GB/s   %% of triad\n");
  const double single = a.decode / runs.front().seconds * runs.front().sessions;
  for (const DecodeRun& r : runs) {
    const double each = a.decode / r.seconds, step_gbps = r.step_weight_bytes * a.decode / r.seconds / 1e9;
    std::printf("  %8d   %10.2f   %11.2f   %11.2fx   %11.1f   %4.2f   %9.0f%%\n", r.sessions, each, each * r.sessions,
                each * r.sessions / single, r.step_weight_bytes / 1e6, step_gbps, 100 * step_gbps / bw.triad_gbps);
  }
  if (comm.distributed())
    std::printf("model parallel          %d ranks (each measured its own bandwidth; weights split among them): "
                "rank 0 sent/received %.1f KB per decoded token in collectives, %.0f%% of decode time (%d session(s))\n",
                comm.world(), runs.front().comm_bytes_per_step / runs.front().sessions / 1e3,
                100 * runs.front().comm_share, runs.front().sessions);
  if (a.profile) print_profile(runs, a.decode, threads);
  bench_spec(a, model, s, ids);
  return 0;
}

}  // namespace

void add_bench(CLI::App& app, std::vector<Command>& out) {
  auto a = std::make_shared<BenchArgs>();
  CLI::App* sub = app.add_subcommand("bench", "prefill / decode speed against memory bandwidth and FMA peak");
  sub->add_option("-m,--model", a->model_dir, "checkpoint directory")->required();
  add_weights_option(sub, a->weights);
  sub->add_option("--prefill", a->prefill, "prefill tokens");
  sub->add_option("--decode", a->decode, "decoded tokens (per session)");
  sub->add_option("--sessions", a->sessions, "sessions decoding together, a list: 1,2,4,8 (one run each; the "
                                             "'vs 1 session' column compares with the first)")
      ->delimiter(',');
  sub->add_option("--threads", a->threads, "worker threads (0 = all cores)");
  sub->add_option("--repeat", a->repeat,
                  "decode rounds: each runs every --sessions entry once, and each entry reports its fastest "
                  "round (the machine's neighbours move a single run by 30%)");
  sub->add_flag("--json", a->json, "print one JSON object");
  sub->add_flag("--profile", a->profile,
                "also time the decode steps' matrix products by kind (format, inputs, tokens per call) and print "
                "each kind's share of a step (--json: a \"profile\" list)");
  sub->add_option("--spec", a->spec,
                  "also measure speculative decoding with this drafter: the cost of a verify step over 1 + k rows, "
                  "and greedy decoding with and without it (--decode tokens)")
      ->check(CLI::IsMember({"off", "mtp", "dspark"}));
  out.push_back({sub, [a] { return run(*a); }});
}

}  // namespace dsv4::tools
