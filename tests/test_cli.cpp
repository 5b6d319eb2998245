// The dsv4 command end to end: `logits` writes the documented rows (checked against the
// faithful golden of tiny-short, max-abs 1e-3), `info` on the official configs (KV-cache bytes
// exact, bf16 / packed / f32; the 1M-context table is printed) and on a checkpoint, and bad
// flags / ids / paths exit non-zero with a message naming the problem.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <sstream>
#include <tuple>
#include <nlohmann/json.hpp>

#include "io/safetensors.h"
#include "runtime/engine.h"
#include "test_util.h"

namespace dsv4 {
namespace {

std::string ids_of(const std::vector<int>& t) {
  std::string s;
  for (size_t i = 0; i < t.size(); ++i) s += (i ? "," : "") + std::to_string(t[i]);
  return s;
}

std::vector<float> read_floats(const std::string& path) {
  const std::string b = test::read_file(path);
  std::vector<float> v(b.size() / 4);
  std::memcpy(v.data(), b.data(), v.size() * 4);
  return v;
}

TEST(Cli, LogitsRowsMatchGolden) {
  const std::string dir = test::golden_dir("tiny-short");
  SafetensorsFile g(dir + "/golden.safetensors");
  const int P = std::stoi(g.metadata().at("prefill")), D = std::stoi(g.metadata().at("decode"));
  const std::vector<int> tokens = test::ints(g, "tokens");
  test::TempDir tmp;
  const auto r = test::run_command(test::dsv4_binary() + " logits -m " + dir + " --ids " + ids_of(tokens) +
                                   " --prefill " + std::to_string(P) + " -o " + tmp.file("out.bin") +
                                   " --mtp-out " + tmp.file("mtp.bin") + " --threads 2");
  ASSERT_EQ(r.status, 0) << r.output;
  const std::vector<float> out = read_floats(tmp.file("out.bin")), mtp = read_floats(tmp.file("mtp.bin"));
  const size_t V = 1024;
  ASSERT_EQ(out.size(), (1 + D) * V);
  ASSERT_EQ(mtp.size(), V);
  EXPECT_LE(test::max_abs_err(std::span<const float>(out).first(V), test::floats(g, "prefill.logits")).err, 1e-3);
  EXPECT_LE(test::max_abs_err(std::span<const float>(out).subspan(V), test::floats(g, "decode.logits")).err, 1e-3);
  EXPECT_LE(test::max_abs_err(mtp, test::floats(g, "prefill.mtp_logits")).err, 1e-3);
}

struct BadCase {
  std::string args, fragment;
};

TEST(Cli, BadInputExitsWithMessage) {
  const std::string tiny = test::golden_dir("tiny");
  const std::vector<BadCase> cases = {
      {"logits -m " + tiny + " --ids 1,2,1024 --prefill 2 -o /dev/null", "token id 1024"},
      {"logits -m " + tiny + " --ids 1,x,3 --prefill 2 -o /dev/null", "'x' is not an integer"},
      {"logits -m " + tiny + " --ids 1,2,3 --prefill 4 -o /dev/null", "--prefill 4"},
      {"logits -m " + tiny + " --ids 1,2,3 --prefill 3 -o /dev/null --mtp-out /dev/null", "--mtp-out"},
      {"logits -m /nonexistent --ids 1 --prefill 1 -o /dev/null", "/nonexistent"},
      {"logits -m " + tiny + " --ids 1 --prefill 1 -o /nonexistent/dir/out.bin", "cannot open"},
      {"logits -m " + tiny + " --ids 1 --prefill 1 -o /dev/null --threads -2", "--threads"},
      {"info", "-m DIR or --config FILE"},
      {"info --config /nonexistent.json", "/nonexistent.json"},
      {"frobnicate", "frobnicate"},
      {"convert --hf-ckpt " + tiny + " --out /tmp/dsv4-cli-never --expert-dtype fp16", "--expert-dtype must be fp8 or fp4"},
      {"convert --hf-ckpt /nonexistent --out /tmp/dsv4-cli-never", "/nonexistent"},
      {"convert --hf-ckpt " + tiny + " --out /tmp/dsv4-cli-never --model-parallel 9", "more ranks (9) than routed experts (8)"},
      {"convert --hf-ckpt " + tiny + " --out " + tiny, "not an empty directory"},
      {"convert --out /tmp/dsv4-cli-never", "--hf-ckpt"},
      {"train-tokenizer --text-file /nonexistent.txt -o /tmp/dsv4-cli-never.json", "/nonexistent.txt"},
      {"train-tokenizer --text-file " + tiny + "/config.json -o /tmp/dsv4-cli-never.json --vocab-size 100",
       "--vocab-size must be at least 271"},
  };
  for (const auto& c : cases) {
    const auto r = test::run_command(test::dsv4_binary() + " " + c.args);
    EXPECT_NE(r.status, 0) << c.args;
    EXPECT_LT(r.status, 128) << c.args << " crashed:\n" << r.output;
    EXPECT_NE(r.output.find(c.fragment), std::string::npos) << c.args << "\n" << r.output;
  }
  // What --threads 0 stands for, from the environment.
  for (const std::string bad : {"abc", "0", "2x", "-1"}) {
    const auto r = test::run_command("DSV4_THREADS=" + bad + " " + test::dsv4_binary() + " logits -m " + tiny +
                                     " --ids 1 --prefill 1 -o /dev/null");
    EXPECT_NE(r.status, 0) << bad;
    EXPECT_LT(r.status, 128) << bad << " crashed:\n" << r.output;
    EXPECT_NE(r.output.find("DSV4_THREADS must be a thread count from 1 to 4096, got '" + bad + "'"), std::string::npos)
        << r.output;
  }
}

// `dsv4 bench --json` on the tiny model: every documented key, ratios consistent with the
// values they divide (the speeds themselves are this machine's business, not a test's).
TEST(Cli, BenchJsonReportsEveryKey) {
  const auto r = test::run_command(test::dsv4_binary() + " bench -m " + test::golden_dir("tiny") +
                                   " --prefill 4 --decode 4 --threads 2 --json");
  ASSERT_EQ(r.status, 0) << r.output;
  const nlohmann::json j = nlohmann::json::parse(r.output.substr(r.output.rfind('{')));
  for (const char* key : {"prefill_tok_s", "decode_tok_s", "decode_weight_bytes_per_token", "decode_gbps", "stream_gbps",
                          "read_gbps", "decode_bandwidth_ratio", "prefill_gflops", "fma_peak_gflops", "prefill_peak_ratio"}) {
    ASSERT_TRUE(j.contains(key)) << key << " missing from " << j.dump();
    EXPECT_GT(j[key].get<double>(), 0.0) << key;
  }
  EXPECT_NEAR(j["decode_bandwidth_ratio"].get<double>(), j["decode_gbps"].get<double>() / j["stream_gbps"].get<double>(), 1e-3);
  EXPECT_NEAR(j["prefill_peak_ratio"].get<double>(), j["prefill_gflops"].get<double>() / j["fma_peak_gflops"].get<double>(), 1e-3);
  EXPECT_EQ(j["threads"].get<int>(), 2);
  const auto bad = test::run_command(test::dsv4_binary() + " bench -m " + test::golden_dir("tiny") + " --decode 0");
  EXPECT_NE(bad.status, 0);
  EXPECT_NE(bad.output.find("--decode"), std::string::npos) << bad.output;
}

// `--sessions 1,4`: one JSON line per count, with the batched keys; a step of 4 sessions reads
// at least the bytes of one (more experts) and at most 4 times them, and its aggregate is 4
// sessions' worth of each one's rate.
TEST(Cli, BenchSpecReportsVerifyCostsAndBothRates) {
  const auto r = test::run_command(test::dsv4_binary() + " bench -m " + test::golden_dir("tiny-dspark") +
                                   " --prefill 4 --decode 6 --threads 2 --spec dspark --json 2>/dev/null");
  ASSERT_EQ(r.status, 0) << r.output;
  const std::string last = r.output.substr(r.output.rfind("{\"spec\""));
  const auto j = nlohmann::json::parse(last);
  EXPECT_EQ(j["spec"], "dspark");
  EXPECT_EQ(j["draft"], 5);
  EXPECT_EQ(j["verify_step_ms"].size(), 5u);
  EXPECT_GT(j["decode_step_ms"].get<double>(), 0);
  EXPECT_GT(j["plain_tok_s"].get<double>(), 0);
  EXPECT_GT(j["spec_tok_s"].get<double>(), 0);
  EXPECT_GE(j["tokens_per_pass"].get<double>(), 1);
  ASSERT_EQ(j["by_draft"].size(), 5u);  // greedy decoding at every draft length
  for (size_t k = 0; k < 5; ++k) {
    EXPECT_EQ(j["by_draft"][k]["draft"], k + 1);
    EXPECT_GE(j["by_draft"][k]["tokens_per_pass"].get<double>(), 1);
  }
  const auto bad = test::run_command(test::dsv4_binary() + " bench -m " + test::golden_dir("tiny") +
                                     " --prefill 2 --decode 2 --spec dspark 2>&1");
  EXPECT_EQ(bad.status, 1);
  EXPECT_NE(bad.output.find("has no DSpark drafter"), std::string::npos) << bad.output;
}

// The JSON lines of `dsv4 bench` on the tiny model with these flags (one per --sessions entry).
std::vector<nlohmann::json> bench_lines(const std::string& flags) {
  const auto r = test::run_command(test::dsv4_binary() + " bench -m " + test::golden_dir("tiny") + " " + flags +
                                   " --json 2>/dev/null");
  EXPECT_EQ(r.status, 0) << r.output;
  std::vector<nlohmann::json> lines;
  std::istringstream in(r.output);
  for (std::string line; std::getline(in, line);)
    if (!line.empty() && line[0] == '{') lines.push_back(nlohmann::json::parse(line));
  return lines;
}

TEST(Cli, BenchSessionsReportsEachBatch) {
  const std::vector<nlohmann::json> lines = bench_lines("--prefill 4 --decode 4 --threads 2 --sessions 1,4");
  ASSERT_EQ(lines.size(), 2u);
  for (const auto& j : lines)
    for (const char* key : {"sessions", "aggregate_decode_tok_s", "step_weight_bytes", "step_gbps", "decode_tok_s"})
      ASSERT_TRUE(j.contains(key)) << key << " missing from " << j.dump();
  EXPECT_EQ(lines[0]["sessions"].get<int>(), 1);
  EXPECT_EQ(lines[1]["sessions"].get<int>(), 4);
  const double one = lines[0]["step_weight_bytes"].get<double>(), four = lines[1]["step_weight_bytes"].get<double>();
  EXPECT_NEAR(one, lines[0]["decode_weight_bytes_per_token"].get<double>(), 1e-6 * one);  // one token: k experts
  EXPECT_GE(four, one);
  EXPECT_LE(four, 4 * one);
  EXPECT_NEAR(lines[1]["aggregate_decode_tok_s"].get<double>(), 4 * lines[1]["decode_tok_s"].get<double>(),
              1e-3 * lines[1]["aggregate_decode_tok_s"].get<double>() + 1e-3);
}

// `--repeat 3`: three rounds, each running every --sessions entry (the log names them in that
// order), one JSON line per entry that says how many rounds it is the fastest of.
TEST(Cli, BenchRepeatRunsEveryEntryEachRound) {
  const std::vector<nlohmann::json> lines = bench_lines("--prefill 4 --decode 2 --threads 2 --sessions 1,2 --repeat 3");
  ASSERT_EQ(lines.size(), 2u);
  for (const auto& j : lines) EXPECT_EQ(j["decode_rounds"].get<int>(), 3) << j.dump();
  const auto log = test::run_command(test::dsv4_binary() + " bench -m " + test::golden_dir("tiny") +
                                     " --prefill 4 --decode 2 --threads 2 --sessions 1,2 --repeat 3");
  ASSERT_EQ(log.status, 0) << log.output;
  size_t at = 0;
  for (int round = 1; round <= 3; ++round)
    for (int b : {1, 2}) {
      const std::string want = "by " + std::to_string(b) + " session(s) together (round " + std::to_string(round) + " of 3)";
      at = log.output.find(want, at);
      ASSERT_NE(at, std::string::npos) << want << " missing or out of order in\n" << log.output;
    }
  const auto bad = test::run_command(test::dsv4_binary() + " bench -m " + test::golden_dir("tiny") + " --repeat 0 2>&1");
  EXPECT_EQ(bad.status, 1);
  EXPECT_NE(bad.output.find("--repeat: 0 is not in [1, 100]"), std::string::npos) << bad.output;
}

// `--profile`: each run's matrix products by kind. Every kind row is a real one (calls, time,
// bytes); the 1-session step has only 1-token calls and the 4-session one has 4-token calls
// spread over the threads (the dense projections); the kinds' time fits in the step and their
// weight bytes in the step's.
TEST(Cli, BenchProfileSplitsTheStepByKind) {
  const std::vector<nlohmann::json> lines = bench_lines("--prefill 4 --decode 4 --threads 2 --sessions 1,4 --profile");
  ASSERT_EQ(lines.size(), 2u);
  for (const auto& j : lines) {
    ASSERT_TRUE(j.contains("profile")) << j.dump();
    ASSERT_FALSE(j["profile"].empty()) << j.dump();
    double ms = 0, mb = 0;
    bool four_spread = false;
    for (const auto& p : j["profile"]) {
      for (const char* key : {"format", "float_inputs", "tokens", "inline", "calls_per_step", "ms_per_step",
                              "weight_mb_per_step"})
        ASSERT_TRUE(p.contains(key)) << key << " missing from " << p.dump();
      EXPECT_GT(p["calls_per_step"].get<double>(), 0) << p.dump();
      EXPECT_GT(p["weight_mb_per_step"].get<double>(), 0) << p.dump();
      if (j["sessions"] == 1) {
        EXPECT_EQ(p["tokens"], "1") << p.dump();
      }
      four_spread |= p["tokens"] == "4-8" && !p["inline"].get<bool>();
      ms += p["ms_per_step"].get<double>();
      mb += p["weight_mb_per_step"].get<double>();
    }
    if (j["sessions"] == 4) {
      EXPECT_TRUE(four_spread) << j.dump();
    }
    EXPECT_LE(ms, 1e3 / j["decode_tok_s"].get<double>() * 1.01) << j.dump();
    EXPECT_LE(mb, j["step_weight_bytes"].get<double>() / 1e6 * 1.01) << j.dump();
  }
  const auto text = test::run_command(test::dsv4_binary() + " bench -m " + test::golden_dir("tiny") +
                                      " --prefill 4 --decode 2 --threads 2 --sessions 4 --profile 2>/dev/null");
  ASSERT_EQ(text.status, 0) << text.output;
  EXPECT_NE(text.output.find("matrix products of a 4-session step"), std::string::npos) << text.output;
}

TEST(Cli, InfoShowsTheDsparkDrafter) {
  const std::string dir = test::golden_dir("tiny-dspark");
  const auto text = test::run_command(test::dsv4_binary() + " info -m " + dir);
  ASSERT_EQ(text.status, 0) << text.output;
  for (const char* part : {"4 layers + 3 DSpark stages", "drafter: DSpark, 3 stages over the states of target layers 1, 2, 3",
                           "blocks of 5 (the anchor + 4 x noise token 1000)", "Markov bias rank 16", "all 413 tensors validated"})
    EXPECT_NE(text.output.find(part), std::string::npos) << part << " in\n" << text.output;
  const auto r = test::run_command(test::dsv4_binary() + " info --json -m " + dir);
  ASSERT_EQ(r.status, 0) << r.output;
  const auto j = nlohmann::json::parse(r.output);
  EXPECT_EQ(j["drafter"], "dspark");
  EXPECT_EQ(j["dspark_stages"], 3);
  EXPECT_GT(j["params_mtp"].get<double>(), 1e6);
  EXPECT_EQ(j["layer_kinds"], "SWA CSA HCA(16) CSA | dspark: SWA SWA SWA");
}

TEST(Cli, InfoOfficialConfigs) {
  // Published sizes: V4-Pro 1.6T total / 49B active, V4-Flash 284B / 13B (main model).
  // KV cache at 1M tokens, exact: a kv row (head_dim 512, 64 rope dims) is 1024 bytes in bf16,
  // 448 e4m3 + 7 ue8m0 + 64 x 4 float32 = 711 bytes packed; an index key (128) 256 bytes in
  // bf16, 64 + 4 = 68 packed. The windows of every layer hold 128 rows.
  struct Want {
    std::string file;
    double total_b, active_b;
  };
  const double ctx = 1048576;
  for (const Want& w : {Want{"deepseek-v4-pro.json", 1573, 49.8}, Want{"deepseek-v4-flash.json", 284.3, 13.8}}) {
    const std::string cmd = test::dsv4_binary() + " info --ctx 1048576 --config " + test::shared_dir() + "/configs/" + w.file;
    const auto r = test::run_command(test::dsv4_binary() + " info --json --ctx 1048576 --config " +
                                     test::shared_dir() + "/configs/" + w.file);
    ASSERT_EQ(r.status, 0) << r.output;
    const auto j = nlohmann::json::parse(r.output);
    EXPECT_NEAR(j["params_main"].get<double>() / 1e9, w.total_b, 0.5) << w.file;
    EXPECT_NEAR(j["params_active"].get<double>() / 1e9, w.active_b, 0.5) << w.file;
    EXPECT_EQ(j["kv_elem_bytes"].get<int>(), 2);
    const double n_layers = j["n_swa"].get<double>() + j["n_csa"].get<double>() + j["n_hca"].get<double>();
    const double n_csa = j["n_csa"].get<double>(), n_hca = j["n_hca"].get<double>();
    for (const auto& [key, row, index_key] : {std::tuple{"kv_bytes_at_ctx", 1024.0, 256.0},
                                              std::tuple{"kv_bytes_at_ctx_compact", 711.0, 68.0},
                                              std::tuple{"kv_bytes_at_ctx_f32", 2048.0, 512.0}}) {
      const auto& kv = j[key];
      EXPECT_EQ(kv["window"].get<double>(), n_layers * 128 * row) << w.file << " " << key;
      EXPECT_EQ(kv["csa"].get<double>(), n_csa * (ctx / 4) * row) << w.file << " " << key;
      EXPECT_EQ(kv["indexer"].get<double>(), n_csa * (ctx / 4) * index_key) << w.file << " " << key;
      EXPECT_EQ(kv["hca"].get<double>(), n_hca * (ctx / 128) * row) << w.file << " " << key;
      EXPECT_GT(kv["compressor_state"].get<double>(), 0);
      EXPECT_NEAR(kv["total"].get<double>(), kv["window"].get<double>() + kv["csa"].get<double>() +
                                                 kv["hca"].get<double>() + kv["indexer"].get<double>() +
                                                 kv["compressor_state"].get<double>(), 1.0);
    }
    const auto& pt = j["kv_bytes_per_token_compact"];
    EXPECT_EQ(pt["csa"].get<double>(), n_csa * 711.0 / 4) << w.file;
    EXPECT_EQ(pt["total"].get<double>(), n_csa * (711.0 + 68.0) / 4 + n_hca * 711.0 / 128) << w.file;
    EXPECT_LT(j["kv_bytes_at_ctx_compact"]["total"].get<double>(), 0.65 * j["kv_bytes_at_ctx"]["total"].get<double>());
    // The numbers, for the log.
    const auto text = test::run_command(cmd);
    ASSERT_EQ(text.status, 0) << text.output;
    EXPECT_NE(text.output.find("dsv4 (e4m3"), std::string::npos) << text.output;
    std::printf("%s, --ctx 1048576:\n%s", w.file.c_str(), text.output.substr(text.output.find("kv cache")).c_str());
  }
}

TEST(Cli, InfoPerRank) {
  // Weights per rank: the routed experts and the split matrices divide, the rest is on every
  // rank, so a rank holds more than 1/R of the whole and less than 1/R + the replicated part;
  // the KV cache is whole on every rank.
  const std::string pro = test::shared_dir() + "/configs/deepseek-v4-pro.json";
  const auto one = nlohmann::json::parse(test::run_command(test::dsv4_binary() + " info --json --config " + pro).output);
  for (int ranks : {2, 8}) {
    const auto r = test::run_command(test::dsv4_binary() + " info --json --ctx 1048576 --ranks " +
                                     std::to_string(ranks) + " --config " + pro);
    ASSERT_EQ(r.status, 0) << r.output;
    const auto j = nlohmann::json::parse(r.output);
    const double total = one["bytes_on_disk_expected"].get<double>(), per_rank = j["bytes_per_rank"].get<double>();
    EXPECT_GT(per_rank, total / ranks) << ranks;
    EXPECT_LT(per_rank, total / ranks * 1.1) << ranks << " ranks: the replicated part should be small";
    EXPECT_EQ(j["kv_bytes_at_ctx_compact_per_rank"].get<double>(), j["kv_bytes_at_ctx_compact"]["total"].get<double>());
  }
  const auto bad = test::run_command(test::dsv4_binary() + " info --ranks 1000 --config " + pro);
  EXPECT_NE(bad.status, 0);
  EXPECT_NE(bad.output.find("more ranks (1000) than routed experts (384)"), std::string::npos) << bad.output;
}

TEST(Cli, InfoOfCheckpoint) {
  const auto r = test::run_command(test::dsv4_binary() + " info -m " + test::golden_dir("tiny") + " --ctx 64");
  ASSERT_EQ(r.status, 0) << r.output;
  // One line per layer kind, the layers as runs.
  EXPECT_NE(r.output.find("  SWA (sliding window only)     1 layer: 0; MTP\n"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("  CSA (ratio 4, indexer top 4)  2 layers: 1, 3\n"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("  HCA (ratio 16)                1 layer: 2\n"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("tensors validated"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace dsv4

namespace dsv4 {
namespace {

// A synthetic model written by `dsv4 synth` once for the run / chat tests.
const std::string& synth_model() {
  static test::TempDir dir;
  static const std::string path = [] {
    const auto r = test::run_command(test::dsv4_binary() + " synth --preset tiny --seed 5 -o " + dir.file("m"));
    EXPECT_EQ(r.status, 0) << r.output;
    return dir.file("m");
  }();
  return path;
}

TEST(Cli, RunIsReproducibleWithASeed) {
  // Only stdout (the answer): stderr carries timings.
  const std::string cmd = "(" + test::dsv4_binary() + " run -m " + synth_model() + " -p 'Hello there' -n 12 --seed 4 2>/dev/null)";
  const auto a = test::run_command(cmd), b = test::run_command(cmd);
  ASSERT_EQ(a.status, 0) << a.output;
  EXPECT_EQ(a.output, b.output);
  EXPECT_FALSE(a.output.empty());
  const auto c = test::run_command("(" + test::dsv4_binary() + " run -m " + synth_model() + " -p 'Hello there' -n 12 --seed 5 2>/dev/null)");
  EXPECT_NE(a.output, c.output);
  const auto stats = test::run_command("(" + test::dsv4_binary() + " run -m " + synth_model() + " -p hi -n 3 >/dev/null)");
  EXPECT_NE(stats.output.find("tok/s"), std::string::npos) << stats.output;
}

// Greedy speculative decoding prints what decoding one token at a time prints, with MTP alone
// or chained and each DSpark block size; the default model's trained MTP layer gets drafts
// accepted (greedy: the same numbers every run).
TEST(Cli, RunSpeculativeEqualsPlain) {
  for (const std::string& model : {synth_model(), std::string(DSV4_SOURCE_DIR) + "/models/dsv4-tiny"}) {
    const std::string base = test::dsv4_binary() + " run -m " + model + " -p 'Write a short story about a cat.' -n 60 --temperature 0";
    const auto plain = test::run_command("(" + base + " --spec off 2>/dev/null)");
    const auto spec = test::run_command("(" + base + " --spec mtp 2>/dev/null)");
    ASSERT_EQ(plain.status, 0) << plain.output;
    ASSERT_EQ(spec.status, 0) << spec.output;
    EXPECT_EQ(spec.output, plain.output) << model;
    const auto stats = test::run_command("(" + base + " >/dev/null)");  // --spec auto: the MTP layer, chained once
    EXPECT_NE(stats.output.find("speculative mtp, draft 2"), std::string::npos) << stats.output;
    for (const int draft : {1, 4})  // alone and chained as far as it goes
      EXPECT_EQ(test::run_command("(" + base + " --draft " + std::to_string(draft) + " 2>/dev/null)").output, plain.output)
          << model << " MTP draft " << draft;
  }
  // DSpark (dsv4 synth's V4-Flash-0731 layout): the same text, each draft size.
  test::TempDir d;
  ASSERT_EQ(test::run_command(test::dsv4_binary() + " synth --preset tiny-dspark -o " + d.file("m")).status, 0);
  const std::string base = test::dsv4_binary() + " run -m " + d.file("m") + " -p 'Hello there' -n 50 --temperature 0";
  const auto plain = test::run_command("(" + base + " --spec off 2>/dev/null)");
  ASSERT_EQ(plain.status, 0) << plain.output;
  for (int draft = 1; draft <= 5; ++draft)
    EXPECT_EQ(test::run_command("(" + base + " --draft " + std::to_string(draft) + " 2>/dev/null)").output, plain.output)
        << "DSpark draft " << draft;
  const auto dstats = test::run_command("(" + base + " >/dev/null)");
  EXPECT_NE(dstats.output.find("speculative dspark, draft 5"), std::string::npos) << dstats.output;
  const auto bad = test::run_command(base + " --draft 6 < /dev/null");
  EXPECT_EQ(bad.status, 1);
  EXPECT_NE(bad.output.find("--draft 6: dspark proposes 1 .. 5 tokens per pass"), std::string::npos) << bad.output;

  const auto r = test::run_command("(" + test::dsv4_binary() + " run -m " + std::string(DSV4_SOURCE_DIR) +
                                   "/models/dsv4-tiny -p 'Write a short story about a cat.' -n 60 --temperature 0 >/dev/null)");
  const size_t at = r.output.find("draft 2: ");
  ASSERT_NE(at, std::string::npos) << r.output;
  EXPECT_GT(std::stod(r.output.substr(at + 9)), 1.5) << r.output;  // tokens per pass
}

TEST(Cli, RunInputFileAnswersEachPrompt) {
  test::TempDir d;
  test::write_file(d.file("p.txt"), "first prompt\nstill the first\n\n\nsecond prompt\n");
  const auto r = test::run_command("(" + test::dsv4_binary() + " run -m " + synth_model() + " --input-file " +
                                   d.file("p.txt") + " -n 4 --reasoning high 2>/dev/null)");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("### prompt 1: first prompt\nstill the first"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("### prompt 2: second prompt"), std::string::npos) << r.output;
  test::write_file(d.file("empty.txt"), "\n\n");
  const auto e = test::run_command(test::dsv4_binary() + " run -m " + synth_model() + " --input-file " + d.file("empty.txt"));
  EXPECT_EQ(e.status, 1);
  EXPECT_NE(e.output.find("no prompts"), std::string::npos) << e.output;
}

TEST(Cli, ChatCommands) {
  test::TempDir d;
  test::write_file(d.file("in.txt"), "hello\n/think\nmore\n/max\n/nothink\n/clear\n/bogus\nbye\n/exit\nnever read\n");
  const auto r = test::run_command(test::dsv4_binary() + " chat -m " + synth_model() + " -n 3 --seed 1 < " + d.file("in.txt"));
  ASSERT_EQ(r.status, 0) << r.output;
  for (const char* want : {"(think high)", "(think max)", "warning: think max", "(non-think)", "(conversation cleared)",
                           "unknown command /bogus"})
    EXPECT_NE(r.output.find(want), std::string::npos) << want << "\n" << r.output;
  // Three turns were answered (hello, more, bye); nothing after /exit.
  size_t turns = 0;
  for (size_t at = r.output.find("prompt tokens"); at != std::string::npos; at = r.output.find("prompt tokens", at + 1)) ++turns;
  EXPECT_EQ(turns, 3u) << r.output;
}

// chat --session: the conversation is saved after every turn and resumed by the next chat with
// the same file, cache included: the resumed second turn finds as many tokens cached and says
// what the uninterrupted chat says. A file that is not a session is refused by name.
TEST(Cli, ChatSessionResumes) {
  test::TempDir d;
  // The trained default model: its answers are text that tokenizes back to what it generated,
  // so the next turn's prompt continues the conversation's tokens (random weights' bytes do not).
  const std::string chat = test::dsv4_binary() + " chat -m " + std::string(DSV4_SOURCE_DIR) +
                           "/models/dsv4-tiny -n 4 --temperature 0 --history-file '' ";
  const auto cached = [](const std::string& out) {  // the "prompt tokens (N cached)" of each turn
    std::vector<std::string> v;
    const std::string mark = " prompt tokens (";
    for (size_t at = out.find(mark); at != std::string::npos; at = out.find(mark, at + 1)) {
      const size_t from = at + mark.size();
      v.push_back(out.substr(from, out.find(' ', from) - from));
    }
    return v;
  };
  test::write_file(d.file("both.txt"), "hello there\nand more\n");
  const auto both = test::run_command(chat + "2>&1 < " + d.file("both.txt"));
  ASSERT_EQ(both.status, 0) << both.output;

  test::write_file(d.file("one.txt"), "hello there\n");
  test::write_file(d.file("two.txt"), "and more\n");
  const std::string session = d.file("talk.dsv4");
  const auto first = test::run_command(chat + "--session " + session + " 2>&1 < " + d.file("one.txt"));
  ASSERT_EQ(first.status, 0) << first.output;
  const auto second = test::run_command(chat + "--session " + session + " 2>&1 < " + d.file("two.txt"));
  ASSERT_EQ(second.status, 0) << second.output;
  EXPECT_NE(second.output.find("(resumed " + session + ": 2 messages"), std::string::npos) << second.output;
  const std::vector<std::string> want = cached(both.output), got = cached(second.output);
  ASSERT_EQ(want.size(), 2u) << both.output;
  ASSERT_EQ(got.size(), 1u) << second.output;
  EXPECT_EQ(got[0], want[1]);
  EXPECT_NE(want[1], "0");
  // The second answer as the uninterrupted chat gave it: the line before each turn's summary.
  const auto answers = [](const std::string& out) {
    std::vector<std::string> v;
    std::string prev, line;
    std::istringstream in(out);
    while (std::getline(in, line)) {
      if (line.starts_with("[") && line.find(" prompt tokens (") != std::string::npos) v.push_back(prev);
      prev = line;
    }
    return v;
  };
  ASSERT_EQ(answers(both.output).size(), 2u);
  ASSERT_EQ(answers(second.output).size(), 1u);
  EXPECT_EQ(answers(second.output)[0], answers(both.output)[1]);
  EXPECT_FALSE(answers(second.output)[0].empty());

  test::write_file(d.file("bad.dsv4"), "not a session at all, but long enough to have a header of forty-eight bytes");
  const auto bad = test::run_command(chat + "--session " + d.file("bad.dsv4") + " 2>&1 < " + d.file("two.txt"));
  EXPECT_NE(bad.status, 0);
  EXPECT_NE(bad.output.find("not a dsv4 snapshot"), std::string::npos) << bad.output;
}

TEST(Cli, RunBadInput) {
  for (const auto& [args, fragment] : std::vector<std::pair<std::string, std::string>>{
           {"run -m " + synth_model() + " -p hi --reasoning sideways", "reasoning mode 'sideways'"},
           {"run -m " + synth_model() + " -p hi --temperature -1", "temperature"},
           {"run -m " + synth_model() + " -p hi -n 100 --ctx 20", "exceeds --ctx"},
           {"run -m " + synth_model(), "exactly one of -p"},
           {"run -m " + test::golden_dir("tiny") + " -p hi", "tokenizer.json"},
           {"synth -o /tmp/x --preset huge", "unknown preset 'huge'"},
           {"serve -m " + synth_model() + " --port 70000", "--port"},
           {"serve -m " + synth_model() + " --parallel 4 --batch-tokens 3", "--batch-tokens (3) must be at least --parallel (4)"},
           {"serve -m " + synth_model() + " --port 0 --spec dspark", "has no DSpark drafter"},
           {"serve -m " + synth_model() + " --port 0 --draft 9", "--draft 9: mtp proposes 1 .. 4"},
           {"run -m " + synth_model() + " -p hi --mmap --no-mmap", "--mmap excludes --no-mmap"},
           {"bench -m " + synth_model() + " --sessions 0", "--sessions: 0"},
           {"run -m " + synth_model() + " -p hi --temperature 0 --spec dspark", "has no DSpark drafter"},
           {"run -m " + synth_model() + " -p hi --temperature 0 --spec mtp --draft 0", "--draft 0: mtp proposes 1 .. 4"},
           {"run -m " + synth_model() + " -p hi --temperature 0.7 --spec mtp --draft 5", "--draft 5: mtp proposes 1 .. 4"}}) {
    const auto r = test::run_command(test::dsv4_binary() + " " + args + " < /dev/null");
    // 1; CLI11's own checks (one flag excluding another) exit with its code for the error.
    if (fragment.find("excludes") != std::string::npos) EXPECT_NE(r.status, 0) << args;
    else EXPECT_EQ(r.status, 1) << args << "\n" << r.output;
    EXPECT_NE(r.output.find(fragment), std::string::npos) << args << "\n" << r.output;
  }
}

TEST(Cli, PerplexityMatchesTokenByTokenDecoding) {
  // The command's all-position logits against feeding one token at a time (forward()'s last
  // logits), windows of --ctx tokens each in a fresh session; BOS first.
  test::TempDir tmp;
  const std::string text = "The quick brown fox jumps over the lazy dog. It was the best of times.";
  test::write_file(tmp.file("t.txt"), text);
  const Engine e(synth_model());
  std::vector<int> ids = {e.bos_id()};
  for (int t : e.tokenizer().encode(text)) ids.push_back(t);
  const int V = e.model().config().vocab_size;
  for (int ctx : {2048, 7}) {
    double nll = 0;
    long long n = 0;
    for (size_t w0 = 0; w0 + 1 < ids.size(); w0 += ctx) {
      Session s = e.model().new_session();
      for (size_t i = w0; i + 1 < std::min(ids.size(), w0 + ctx); ++i) {
        const std::vector<float> l = e.model().forward(s, std::span<const int>(ids).subspan(i, 1));
        double mx = *std::max_element(l.begin(), l.end()), sum = 0;
        for (int v = 0; v < V; ++v) sum += std::exp(l[v] - mx);
        nll += mx + std::log(sum) - l[ids[i + 1]];
        ++n;
      }
    }
    const auto r = test::run_command("(" + test::dsv4_binary() + " perplexity --json -m " + synth_model() +
                                     " --text-file " + tmp.file("t.txt") + " --ctx " + std::to_string(ctx) + " 2>/dev/null)");
    ASSERT_EQ(r.status, 0) << r.output;
    const auto j = nlohmann::json::parse(r.output);
    EXPECT_EQ(j["tokens"].get<long long>(), n) << "ctx " << ctx;
    EXPECT_NEAR(j["nll"].get<double>(), nll / n, 1e-5) << "ctx " << ctx;
    EXPECT_NEAR(j["ppl"].get<double>(), std::exp(nll / n), 1e-3 * std::exp(nll / n)) << "ctx " << ctx;
  }
  test::write_file(tmp.file("empty.txt"), "");
  for (const auto& [args, fragment] :
       {std::pair<std::string, std::string>{" --text-file " + tmp.file("empty.txt"), "no tokens to score"},
        {" --text-file " + tmp.file("t.txt") + " --ctx 1", "--ctx must be at least 2"},
        {" --text-file /nonexistent.txt", "/nonexistent.txt"}}) {
    const auto bad = test::run_command(test::dsv4_binary() + " perplexity -m " + synth_model() + args);
    EXPECT_NE(bad.status, 0) << args;
    EXPECT_NE(bad.output.find(fragment), std::string::npos) << args << "\n" << bad.output;
  }
}

}  // namespace
}  // namespace dsv4

namespace dsv4 {
namespace {

// Ctrl-C or SIGTERM in the middle of `dsv4 train`: the step under way finishes, the run is
// saved at it, and the process exits 0 saying so (a long run loses nothing).
TEST(Cli, TrainSavesAndStopsOnASignal) {
  test::TempDir d;
  const std::string src = DSV4_SOURCE_DIR, out = d.file("run");
  const auto r = test::run_command(
      "bash -c '" + test::dsv4_binary() + " train --config " + src + "/models/dsv4-tiny/pretrain.json --data " + src +
      "/tests/data/brown-held-sample.txt --tokenizer " + src + "/models/dsv4-tiny/tokenizer.json --out " + out +
      " --steps 1000 --threads 1 & pid=$!; sleep 3; kill -TERM $pid; wait $pid; echo status=$?'");
  EXPECT_NE(r.output.find("status=0"), std::string::npos) << r.output;
  const size_t at = r.output.find("stopped after step ");
  ASSERT_NE(at, std::string::npos) << r.output;
  const int step = std::stoi(r.output.substr(at + 19));
  EXPECT_GE(step, 1);
  EXPECT_LT(step, 1000);
  // The log saved ends at that step (Trainer.ResumedRun... resumes a run stopped so).
  const std::string log = test::read_file(out + "/train_log.tsv");
  const size_t last = log.rfind('\n', log.size() - 2) + 1;
  EXPECT_EQ(std::stoi(log.substr(last)), step) << log;
  EXPECT_TRUE(std::filesystem::exists(out + "/train_state.safetensors"));
}

// Every subcommand, given something wrong, exits non-zero (and below 128: no crash) naming the
// problem; so does a command whose standard output cannot be written (a full disk).
TEST(Cli, EverySubcommandFailsWithNonZeroStatus) {
  const std::string tiny = test::golden_dir("tiny"), m = synth_model(), never = "/nonexistent/dsv4-never";
  test::TempDir d;
  test::write_file(d.file("hi.jsonl"), "\"hi\"\n");
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", "Usage:"},
      {"run -m " + m + " -p hi --reasoning-output sideways", "--reasoning-output 'sideways'"},
      {"chat -m /nonexistent", "/nonexistent"},
      {"serve -m /nonexistent", "/nonexistent"},
      {"info --config /nonexistent.json", "/nonexistent.json"},
      {"tokenize -t /nonexistent.json", "/nonexistent.json"},
      {"render --thinking-mode sideways", "unknown thinking mode 'sideways'"},
      {"parse --thinking-mode chat", "end-of-sentence"},
      {"synth -o /proc/dsv4-never", "/proc/dsv4-never"},
      {"logits -m /nonexistent --ids 1 --prefill 1 -o /dev/null", "/nonexistent"},
      {"bench -m /nonexistent", "/nonexistent"},
      {"convert --hf-ckpt /nonexistent --out " + never, "/nonexistent"},
      {"perplexity -m " + m + " --text-file /nonexistent.txt", "/nonexistent.txt"},
      {"train --config /nonexistent.json --data x.txt --tokenizer t.json --out " + never, "/nonexistent.json"},
      {"train --config " + std::string(DSV4_SOURCE_DIR) + "/models/dsv4-tiny/pretrain.json --data brown-train.txt "
       "--tokenizer " + m + "/tokenizer.json --out " + never, "brown-train.txt: cannot open"},
      {"plot-runs --run /nonexistent -o " + never + ".png", "/nonexistent"},
      {"eval -m /nonexistent", "/nonexistent"},
      {"make-task-data --domain sideways -o " + never + ".jsonl", "sideways"},
      {"sft -m /nonexistent --data x.jsonl --out " + never, "/nonexistent"},
      {"grpo -m /nonexistent --domain math --out " + never, "/nonexistent"},
      {"distill -m /nonexistent --expert /nonexistent --out " + never, "/nonexistent"},
      {"average /nonexistent /nonexistent2 -o " + never, "/nonexistent"},
      {"train-tokenizer --text-file /nonexistent.txt -o " + never + ".json", "/nonexistent.txt"},
      {"prepare-brown --corpus /nonexistent --out-train a.txt --out-held-out b.txt", "/nonexistent"},
      {"prepare-gutenberg --corpus /nonexistent --out-train a.txt --out-held-out b.txt", "/nonexistent"},
      {"prepare-gutenberg --corpus " + d.path() + " --out-train " + never + " --out-held-out b.txt", "no Gutenberg books"},
      {"make-chat-data -o /proc/dsv4-never.jsonl", "/proc/dsv4-never.jsonl"},
      {"run -m " + m + " -p hi -n 2 > /dev/full", "cannot write to standard output"},
      {"info --config " + tiny + "/config.json > /dev/full", "cannot write to standard output"},
      {"tokenize -t " + m + "/tokenizer.json < " + d.file("hi.jsonl") + " > /dev/full", "cannot write to standard output"},
      {"chat -m " + m + " -n 2 --ctx 20 <<< 'a long enough line to pass the context'", "exceeds --ctx"},
  };
  for (const auto& [args, fragment] : cases) {
    const auto r = test::run_command("bash -c \"" + test::dsv4_binary() + " " + args + "\" < /dev/null");
    EXPECT_NE(r.status, 0) << args << "\n" << r.output;
    EXPECT_LT(r.status, 128) << args << " crashed:\n" << r.output;
    EXPECT_NE(r.output.find(fragment), std::string::npos) << args << "\n" << r.output;
  }
}

// Runs `dsv4 run` on the synthetic model with the given flags; stdout only.
std::string answer_with(const std::string& flags) {
  const auto r = test::run_command("(" + test::dsv4_binary() + " run -m " + synth_model() + " " + flags + " 2>/dev/null)");
  EXPECT_EQ(r.status, 0) << flags << "\n" << r.output;
  return r.output;
}

// llama.cpp's spellings mean what dsv4's do: the same answer, bit for bit, either way.
TEST(Cli, LlamaCppAliases) {
  test::TempDir d;
  test::write_file(d.file("p.txt"), "first prompt\n\nsecond prompt\n");
  const std::string ours = answer_with("--input-file " + d.file("p.txt") +
                                       " --ctx 2048 --threads 1 --temperature 0.7 --seed 9 --top-k 20 --min-p 0.05 "
                                       "--max-tokens 6");
  const std::string theirs = answer_with("-f " + d.file("p.txt") + " -c 2k -t 1 --temp 0.7 -s 9 --top-k 20 --min-p 0.05 "
                                         "--n-predict 6");
  EXPECT_EQ(ours, theirs);
  EXPECT_NE(ours.find("### prompt 2"), std::string::npos) << ours;
  // -s is the seed: another seed, another answer.
  EXPECT_NE(answer_with("-p hello -s 1 -n 8 --temp 1"), answer_with("-p hello -s 2 -n 8 --temp 1"));
  // -c takes sizes: 2k = 2048 tokens, and a prompt beyond it is refused in the same words.
  const auto small = test::run_command(test::dsv4_binary() + " run -m " + synth_model() + " -p hi -n 64 -c 32");
  EXPECT_EQ(small.status, 1);
  EXPECT_NE(small.output.find("exceeds --ctx 32"), std::string::npos) << small.output;
  // info: -c 1M is --ctx 1048576.
  const std::string cfg = " --json --config " + test::shared_dir() + "/configs/deepseek-v4-flash.json";
  const auto a = test::run_command(test::dsv4_binary() + " info -c 1M" + cfg),
             b = test::run_command(test::dsv4_binary() + " info --ctx-size 1048576" + cfg);
  ASSERT_EQ(a.status, 0) << a.output;
  const auto ja = nlohmann::json::parse(a.output), jb = nlohmann::json::parse(b.output);
  EXPECT_EQ(ja["ctx"].get<long long>(), 1048576);
  EXPECT_EQ(ja["kv_bytes_at_ctx"], jb["kv_bytes_at_ctx"]);
  // serve takes the same spellings (checked by its --help, which lists them).
  const auto help = test::run_command(test::dsv4_binary() + " serve --help");
  for (const char* flag : {"-c,--ctx,--ctx-size", "-t,--threads", "--parallel,--np", "-n,--max-tokens,--n-predict"})
    EXPECT_NE(help.output.find(flag), std::string::npos) << flag << "\n" << help.output;
}

TEST(Cli, VersionUsageAndDefaults) {
  const auto v = test::run_command(test::dsv4_binary() + " --version");
  EXPECT_EQ(v.status, 0);
  EXPECT_EQ(v.output.rfind("dsv4 ", 0), 0u) << v.output;
  EXPECT_GT(v.output.size(), 6u) << v.output;
  // A bare dsv4 lists the subcommands and fails.
  const auto bare = test::run_command(test::dsv4_binary());
  EXPECT_EQ(bare.status, 1);
  for (const char* want : {"Usage:", "run", "chat", "serve", "info"})
    EXPECT_NE(bare.output.find(want), std::string::npos) << want << "\n" << bare.output;
  // Every --help shows the defaults.
  const auto run = test::run_command(test::dsv4_binary() + " run --help");
  for (const char* want : {"--temperature,--temp FLOAT=1", "-n,--max-tokens,--n-predict INT=256", "--reasoning TEXT=none",
                           "--reasoning-output TEXT=inline", "-c,--ctx,--ctx-size INT=65536", "-t,--threads INT=0"})
    EXPECT_NE(run.output.find(want), std::string::npos) << want << "\n" << run.output;
  const auto serve = test::run_command(test::dsv4_binary() + " serve --help");
  for (const char* want : {"--host TEXT=127.0.0.1", "--port INT=8000", "--parallel,--np INT=4", "--queue UINT=64"})
    EXPECT_NE(serve.output.find(want), std::string::npos) << want << "\n" << serve.output;
}

// --reasoning-output on the default model, whose think-mode answer to "Hello!" has a known
// reasoning sentence: inline between <think> lines when piped, on stderr alone, or nowhere.
TEST(Cli, ReasoningOutputWhenPiped) {
  const std::string model = std::string(DSV4_SOURCE_DIR) + "/models/dsv4-tiny";
  const std::string reasoning = "The user is greeting me", cmd = test::dsv4_binary() + " run -m " + model +
                                                                 " -p 'Hello!' --reasoning high --temp 0 --reasoning-output ";
  const auto inline_ = test::run_command("(" + cmd + "inline 2>/dev/null)");
  ASSERT_EQ(inline_.status, 0) << inline_.output;
  EXPECT_EQ(inline_.output.rfind("<think>\n" + reasoning, 0), 0u) << inline_.output;
  const size_t close = inline_.output.find("\n</think>\n");
  ASSERT_NE(close, std::string::npos) << inline_.output;
  const std::string answer = inline_.output.substr(close + 10);
  EXPECT_FALSE(answer.empty());
  EXPECT_EQ(inline_.output.find("\x1b["), std::string::npos) << "no colour when piped";
  const auto separate = test::run_command("(" + cmd + "separate 2>/dev/null)");
  EXPECT_EQ(separate.output, answer);
  const auto on_stderr = test::run_command("(" + cmd + "separate 2>&1 >/dev/null)");
  EXPECT_NE(on_stderr.output.find(reasoning), std::string::npos) << on_stderr.output;
  const auto hidden = test::run_command("(" + cmd + "hidden 2>&1)");
  EXPECT_EQ(hidden.output.find(reasoning), std::string::npos) << hidden.output;
  EXPECT_NE(hidden.output.find(answer), std::string::npos) << hidden.output;
}

// Progress written to a log (not a terminal) is a line at every 5%: enough to follow a run of
// hours, few enough to read.
TEST(Cli, ProgressInALogIsALineEveryFivePercent) {
  const std::string model = std::string(DSV4_SOURCE_DIR) + "/models/dsv4-tiny";
  const auto r = test::run_command("(" + test::dsv4_binary() + " eval -m " + model +
                                   " --domain math --tasks 20 --max-tokens 4 --threads 1 --json 2>&1 >/dev/null)");
  ASSERT_EQ(r.status, 0) << r.output;
  std::vector<int> percents;  // "eval  15% 0.0s ": the percentage of each progress line
  std::istringstream lines(r.output);
  for (std::string line; std::getline(lines, line);)
    if (line.rfind("eval ", 0) == 0) percents.push_back(std::stoi(line.substr(5, 4)));
  ASSERT_EQ(percents.size(), 20u) << r.output;  // one per task: 5%, 10%, ..., 100%
  for (size_t i = 0; i < percents.size(); ++i) EXPECT_NEAR(percents[i], 5 * int(i + 1), 1) << r.output;
}

// The chat banner says what the model is: random weights are called noise, a dsv4-trained
// model points to its model card.
TEST(Cli, ChatBannerDescribesTheModel) {
  const auto synth = test::run_command(test::dsv4_binary() + " chat -m " + synth_model() + " < /dev/null");
  ASSERT_EQ(synth.status, 0) << synth.output;
  EXPECT_NE(synth.output.find("random weights (dsv4 synth --preset tiny --seed 5): it answers noise"), std::string::npos)
      << synth.output;
  const std::string tiny = std::string(DSV4_SOURCE_DIR) + "/models/dsv4-tiny";
  const auto trained = test::run_command(test::dsv4_binary() + " chat -m " + tiny + " < /dev/null");
  ASSERT_EQ(trained.status, 0) << trained.output;
  EXPECT_NE(trained.output.find("dsv4-tiny: 8.64M parameters"), std::string::npos) << trained.output;
  EXPECT_NE(trained.output.find("model card: " + tiny + "/MODEL_CARD.md"), std::string::npos) << trained.output;
  EXPECT_EQ(trained.output.find("noise"), std::string::npos) << trained.output;
}

}  // namespace
}  // namespace dsv4

namespace dsv4 {
namespace {

// A write that fails (a full disk; here /dev/full, or a file-size limit of 100 KiB with SIGXFSZ
// ignored, so the write returns EFBIG) is an error naming the file, not a success with empty
// or cut files.
TEST(Cli, FailedWritesAreErrors) {
  test::TempDir d;
  const std::string limited = "ulimit -f 100; trap '' XFSZ; ";
  for (const auto& [cmd, fragment] : std::vector<std::pair<std::string, std::string>>{
           {limited + test::dsv4_binary() + " synth --preset small -o " + d.file("synth"), "model.safetensors: write failed"},
           {test::dsv4_binary() + " make-chat-data --count 3 -o /dev/full", "/dev/full: write failed"},
           {limited + test::dsv4_binary() + " make-task-data --domain math --count 5000 -o " + d.file("t.jsonl"),
            "t.jsonl: write failed"},
           {test::dsv4_binary() + " logits -m " + test::golden_dir("tiny") + " --ids 1,2,3 --prefill 2 -o /dev/full",
            "/dev/full: write failed"}}) {
    const auto r = test::run_command("bash -c \"" + cmd + "\"");
    EXPECT_EQ(r.status, 1) << cmd << "\n" << r.output;
    EXPECT_NE(r.output.find(fragment), std::string::npos) << cmd << "\n" << r.output;
  }
  EXPECT_FALSE(std::filesystem::exists(d.file("synth/model.safetensors")));  // no cut checkpoint left behind
}

}  // namespace
}  // namespace dsv4
