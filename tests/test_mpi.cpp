// Model-parallel runs under mpirun (OpenMPI, loopback, oversubscribed on small machines): a
// synthetic checkpoint whose splits divide by 4, converted for 2 and 4 ranks, against the same
// checkpoint in one process. Also the failure modes: a killed rank, shards of two different
// conversions, a conversion for another rank count, an unconverted checkpoint.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <httplib.h>
#include <nlohmann/json.hpp>
#include <thread>
#include <cstring>

#include "io/safetensors.h"
#include "ckpt/convert.h"
#include "ckpt/synth.h"
#include "test_util.h"

namespace dsv4 {
namespace {

namespace fs = std::filesystem;

const std::string kIds = "0,5,77,12,200,3,9,41,100,250,17,33,2,8,60,300,21,5";

class Mpi : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);  // CI containers run as root
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
    root_ = fs::temp_directory_path() / ("dsv4-mpi-" + std::to_string(getpid()));
    fs::remove_all(root_);
    write_synthetic_checkpoint(dir("hf"), synth_preset("tiny-mp"), 11, {});
    for (int world : {2, 4}) convert_checkpoint({dir("hf"), dir("mp" + std::to_string(world)), world, false});
  }
  static void TearDownTestSuite() { fs::remove_all(root_); }
  static std::string dir(const std::string& name) { return (root_ / name).string(); }
  // The command line that starts dsv4 on np ranks (env: mpirun's -x options).
  static std::string launcher(int np, const std::string& env = "") {
    return std::string(DSV4_MPIEXEC) + " --oversubscribe -np " + std::to_string(np) + " " + env + " " +
           test::dsv4_binary();
  }
  static std::string mpirun(int np, const std::string& args, const std::string& env = "") {
    return launcher(np, env) + " " + args;
  }
  // Prefill, decode and MTP logits rows of ids (prefill P), written by `dsv4 logits` started by
  // `dsv4` (a binary or an mpirun launcher).
  static std::vector<float> logits(const std::string& dsv4, const std::string& model, const std::string& flags,
                                   const std::string& out, const std::string& ids = kIds, int prefill = 12) {
    const auto r = test::run_command(dsv4 + " logits -m " + model + " --ids " + ids + " --prefill " +
                                     std::to_string(prefill) + " -o " + out + " --mtp-out " + out + ".mtp --threads 1 " + flags);
    EXPECT_EQ(r.status, 0) << r.output;
    std::string bytes = test::read_file(out) + test::read_file(out + ".mtp");
    std::vector<float> rows(bytes.size() / 4);
    std::memcpy(rows.data(), bytes.data(), rows.size() * 4);
    return rows;
  }
  // Rank 0 reads the terminal (mpirun forwards stdin to it) and leads; two turns, the second
  // reusing the first's cache on every rank: the text of one process on the unconverted
  // checkpoint, and mpirun's report (stderr) has `report`.
  static void chat_as_one_process(const std::string& hf, const std::string& mp, const std::string& args,
                                  const std::string& report) {
    const std::string turns = "printf 'hello there\\nand again\\n/exit\\n' | ";
    const auto one = test::run_command("{ " + turns + test::dsv4_binary() + " chat -m " + hf + args + " > " +
                                       dir("chat1.txt") + " 2>/dev/null; }");
    const auto two = test::run_command("{ " + turns + mpirun(2, "chat -m " + mp + args) + " > " + dir("chat2.txt") + "; }");
    ASSERT_EQ(one.status, 0) << one.output;
    ASSERT_EQ(two.status, 0) << two.output;
    EXPECT_GT(test::read_file(dir("chat1.txt")).size(), 10u);
    EXPECT_EQ(test::read_file(dir("chat1.txt")), test::read_file(dir("chat2.txt"))) << hf;
    EXPECT_NE(two.output.find(report), std::string::npos) << two.output;
  }
  static fs::path root_;
};
fs::path Mpi::root_;

TEST_F(Mpi, TwoAndFourRanksGiveTheSingleProcessLogits) {
  for (const std::string flags : {"--no-act-quant", ""}) {
    const std::vector<float> one = logits(test::dsv4_binary(), dir("hf"), flags, dir("one.bin"));
    ASSERT_FALSE(one.empty());
    for (int np : {2, 4}) {
      const std::vector<float> many = logits(launcher(np), dir("mp" + std::to_string(np)), flags, dir("many.bin"));
      ASSERT_EQ(many.size(), one.size()) << np << " ranks";
      double worst = 0;
      for (size_t i = 0; i < one.size(); ++i) worst = std::max(worst, std::fabs(double(many[i]) - one[i]));
      // Smooth mode: only the summation order differs (the ranks' partial sums are added by MPI).
      // Faithful mode: the same here, unless a rounding flips (then the goldens' 1e-3 rule).
      EXPECT_LE(worst, flags.empty() ? 1e-3 : 1e-4) << np << " ranks " << (flags.empty() ? "faithful" : "smooth");
      std::printf("%d ranks, %s: max |logit difference| %.3g over %zu logits (prefill, decode, MTP)\n", np,
                  flags.empty() ? "faithful" : "smooth", worst, one.size());
    }
  }
}

TEST_F(Mpi, GoldenCasesOnTwoAndFourRanksGiveTheSingleProcessLogits) {
  // Every golden checkpoint converted for 2 and 4 ranks (the goldens are too small for some
  // official splits: their wo_b input is one 128-wide block, 2 output groups do not go to 4
  // ranks, tiny-fp8 has 2 heads and 6 experts; those groups stay whole, see Splits), the golden
  // token sequence, smooth mode: prefill, every decode row and the MTP row within 1e-4 of one
  // process on the original.
  for (const std::string name : {"tiny", "tiny-long", "tiny-fp8", "tiny-short"})
  for (int np : {2, 4}) {
    SafetensorsFile g(test::golden_dir(name) + "/golden_smooth.safetensors");
    const int P = std::stoi(g.metadata().at("prefill"));
    std::string ids;
    for (int t : test::ints(g, "tokens")) ids += (ids.empty() ? "" : ",") + std::to_string(t);
    const std::string conv = dir("golden-" + name + "-" + std::to_string(np));
    convert_checkpoint({test::golden_dir(name), conv, np, false});
    const std::vector<float> one = logits(test::dsv4_binary(), test::golden_dir(name), "--no-act-quant", dir("g1.bin"), ids, P);
    const std::vector<float> two = logits(launcher(np), conv, "--no-act-quant", dir("g2.bin"), ids, P);
    ASSERT_FALSE(one.empty());
    ASSERT_EQ(one.size(), two.size()) << name;
    double worst = 0;
    for (size_t i = 0; i < one.size(); ++i) worst = std::max(worst, std::fabs(double(two[i]) - one[i]));
    EXPECT_LE(worst, 1e-4) << name << " on " << np << " ranks";
    std::printf("golden %s, %d ranks, smooth: max |logit difference| %.3g over %zu logits\n", name.c_str(), np, worst,
                one.size());
  }
}

TEST_F(Mpi, BatchedSessionsGetTheirLogitsAloneOnTwoRanks) {
  // Random mixes of 1-8 sessions, prompts, chunk sizes and thread counts (tests/batch_mix.h),
  // on both ranks in lockstep: every session's logits bitwise those of the session alone.
  // On each kernel path (the environment switches of core/cpu.h, passed to both ranks).
  for (const std::string& model : {dir("mp2"), dir("golden-tiny-2")})
  for (const std::string env : {"", "-x DSV4_NO_AVX512=1", "-x DSV4_NO_AVX2=1"}) {
    if (model == dir("golden-tiny-2") && !fs::exists(model)) convert_checkpoint({test::golden_dir("tiny"), model, 2, false});
    const auto r = test::run_command(std::string(DSV4_MPIEXEC) + " --oversubscribe -np 2 " + env + " " +
                                     DSV4_BATCH_CHECK + " " + model + " 4");
    EXPECT_EQ(r.status, 0) << env << "\n" << r.output;
    EXPECT_NE(r.output.find("2 ranks"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find(", 0 differ"), std::string::npos) << r.output;
    std::printf("%s", r.output.c_str());
  }
}

TEST_F(Mpi, RunGeneratesTheSameText) {
  const std::string args = " -p 'The ranks agree' -n 16 --seed 5 --threads 1";
  // The generated text (stdout) to a file, the reports (stderr) to run_command's output.
  const auto one = test::run_command("{ " + test::dsv4_binary() + " run -m " + dir("hf") + args + " > " + dir("one.txt") + "; }");
  const auto two = test::run_command("{ " + mpirun(2, "run -m " + dir("mp2") + args) + " > " + dir("two.txt") + "; }");
  ASSERT_EQ(one.status, 0) << one.output;
  ASSERT_EQ(two.status, 0) << two.output;
  EXPECT_FALSE(test::read_file(dir("one.txt")).empty());
  EXPECT_EQ(test::read_file(dir("one.txt")), test::read_file(dir("two.txt")));
  EXPECT_EQ(two.output.find("loading 100%"), two.output.rfind("loading 100%")) << "rank 1 reported progress too:\n"
                                                                               << two.output;
}

TEST_F(Mpi, SpeculativeRunGeneratesTheSameText) {
  // Ranks in lockstep draft, verify and roll back each on its own (MTP on tiny-mp, DSpark on
  // tiny-dspark-mp): greedy, the text of one process without speculation; sampled, the text of
  // one process with it (the same seeded draws).
  if (!fs::exists(dir("dspark-mp2"))) {
    write_synthetic_checkpoint(dir("dspark-hf"), synth_preset("tiny-dspark-mp"), 13, {});
    convert_checkpoint({dir("dspark-hf"), dir("dspark-mp2"), 2, false});
  }
  struct Case {
    std::string hf, mp, spec;
  };
  for (const Case& c : {Case{dir("hf"), dir("mp2"), "mtp"}, Case{dir("dspark-hf"), dir("dspark-mp2"), "dspark"}})
    for (const std::string sampling : {"--temperature 0", "--temperature 0.8 --seed 5"}) {
      const std::string args = " -p 'The ranks draft alike' -n 40 --threads 1 " + sampling;
      const std::string what = c.spec + ", " + sampling;
      auto text = [&](const std::string& dsv4, const std::string& model, const std::string& spec, const std::string& name) {
        const auto r = test::run_command("{ " + dsv4 + " run -m " + model + args + " --spec " + spec + " > " +
                                         dir(name) + "; }");
        EXPECT_EQ(r.status, 0) << what << ": " << r.output;
        if (spec != "off") EXPECT_NE(r.output.find("speculative " + spec), std::string::npos) << what << ": " << r.output;
        return test::read_file(dir(name));
      };
      const std::string two = text(launcher(2), c.mp, c.spec, "spec-two.txt");
      const std::string one = text(test::dsv4_binary(), c.hf, sampling == "--temperature 0" ? "off" : c.spec, "spec-one.txt");
      EXPECT_FALSE(one.empty()) << what;
      EXPECT_EQ(one, two) << what;
    }
  // chat: rank 0 leads, and rank 1 makes its DSpark decoder's calls on the mirror session; two
  // turns, the second continuing the first's cache and drafter.
  chat_as_one_process(dir("dspark-hf"), dir("dspark-mp2"), " -n 12 --seed 4 --threads 1 --temperature 0.9",
                      "speculative dspark, draft 5");
}

TEST_F(Mpi, ChatUnderMpirunAnswersAsOneProcess) {
  // Sampled with the MTP drafter (the default) on both: rank 1 ran rank 0's decoder calls.
  chat_as_one_process(dir("hf"), dir("mp2"), " -n 10 --seed 3 --threads 1", "speculative mtp, draft 2");
}

// A server started by `cmd` (its report on stderr names the port); stopped with SIGTERM, as
// mpirun passes it on.
class Server {
 public:
  Server(const std::string& cmd, const std::string& marker) : marker_(marker) {
    out_ = popen((cmd + " 2>&1").c_str(), "r");
    char line[4096];
    while (out_ && std::fgets(line, sizeof line, out_)) {
      const std::string l(line);
      if (const size_t at = l.find("http://127.0.0.1:"); at != std::string::npos) {
        port_ = std::stoi(l.substr(at + 17));
        break;
      }
    }
  }
  ~Server() {
    test::run_command("pkill -TERM -f '" + marker_ + "'");
    if (out_) pclose(out_);
  }
  int port() const { return port_; }

 private:
  std::string marker_;
  FILE* out_ = nullptr;
  int port_ = 0;
};

TEST_F(Mpi, ServeUnderMpirunAnswersAsOneProcess) {
  // Rank 0 serves and leads, rank 1 follows its forward passes on mirror sessions; four
  // concurrent requests (interleaved by the scheduler) get the single process's answers.
  fs::copy(dir("hf"), dir("hf-serve"), fs::copy_options::recursive);
  Server one(test::dsv4_binary() + " serve -m " + dir("hf-serve") + " --port 0 --threads 1", dir("hf-serve"));
  Server two(mpirun(2, "serve -m " + dir("mp2") + " --port 0 --threads 1"), dir("mp2"));
  ASSERT_GT(one.port(), 0);
  ASSERT_GT(two.port(), 0);
  auto ask = [](int port, int i) {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(60);
    const std::string body = R"({"model": "m", "max_tokens": 24, "temperature": 0, "messages": [{"role": "user", "content": "question )" +
                             std::to_string(i) + R"("}]})";
    const auto r = c.Post("/v1/chat/completions", body, "application/json");
    return r && r->status == 200 ? r->body.substr(r->body.find("\"choices\"")) : std::string("(failed)");
  };
  std::vector<std::string> a(4), b(4);
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] { a[i] = ask(one.port(), i); });
    threads.emplace_back([&, i] { b[i] = ask(two.port(), i); });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < 4; ++i) {
    EXPECT_NE(a[i], "(failed)");
    EXPECT_EQ(a[i], b[i]) << "request " << i;
  }
  // Both drafted with the MTP layer (the default), batched, rank 1 on its mirrors.
  httplib::Client c("127.0.0.1", two.port());
  const auto health = c.Get("/health");
  ASSERT_TRUE(health && health->status == 200);
  const auto spec = nlohmann::json::parse(health->body)["speculative"];
  EXPECT_EQ(spec["mode"], "mtp") << health->body;
  EXPECT_GT(spec["verify_steps"].get<long long>(), 0) << health->body;
}

TEST_F(Mpi, AKilledRankEndsTheJobWithAnError) {
  const auto t0 = std::chrono::steady_clock::now();
  const auto r = test::run_command(
      mpirun(2, "run -m " + dir("mp2") + " -p 'never finished' -n 200 --threads 1", "-x DSV4_TEST_KILL_RANK=1"));
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_NE(r.status, 0) << r.output;
  EXPECT_LT(s, 30.0) << "the surviving rank did not end in bounded time";
  EXPECT_NE(r.output.find("rank 1"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("signal 9"), std::string::npos) << r.output;
}

TEST_F(Mpi, MismatchedShardsAreRefused) {
  // Rank 1's shard from another conversion of a different checkpoint with the same shapes.
  write_synthetic_checkpoint(dir("hf-other"), synth_preset("tiny-mp"), 12, {});
  convert_checkpoint({dir("hf-other"), dir("mp2-other"), 2, false});
  fs::create_directories(dir("mixed"));
  fs::copy(dir("mp2") + "/config.json", dir("mixed"));
  fs::copy(dir("mp2") + "/model0-mp2.safetensors", dir("mixed"));
  fs::copy(dir("mp2-other") + "/model1-mp2.safetensors", dir("mixed"));
  struct Case {
    std::string args, fragment;
  };
  const Case cases[] = {
      {mpirun(2, "logits -m " + dir("mixed") + " --ids 1,2 --prefill 2 -o /dev/null"), "different conversions"},
      {mpirun(2, "logits -m " + dir("mp4") + " --ids 1,2 --prefill 2 -o /dev/null"),
       "holds a conversion for 4 ranks, but mpirun started 2"},
      {mpirun(2, "logits -m " + dir("hf") + " --ids 1,2 --prefill 2 -o /dev/null"), "not a model-parallel conversion"},
  };
  for (const Case& c : cases) {
    const auto r = test::run_command(c.args);
    EXPECT_NE(r.status, 0) << c.args;
    EXPECT_NE(r.output.find(c.fragment), std::string::npos) << c.args << "\n" << r.output;
  }
}

}  // namespace
}  // namespace dsv4
