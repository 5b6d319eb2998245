// dsv4 convert (the official convert.py's model-parallel layout) on a synthetic checkpoint whose
// split dimensions allow 2 and 4 ranks: every rank's part of every tensor is exactly the right
// slice of the one-rank conversion, the routed experts are divided in index order, wo_a is the
// exact BF16 of e4m3 x scale, and the FP4 -> FP8 cast is exact; bad requests fail with a clear
// error. (The goldens on converted checkpoints are in test_golden.)
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <map>
#include <random>

#include "core/check.h"
#include "io/checkpoint.h"
#include "io/config.h"
#include "ckpt/convert.h"
#include "model/model.h"
#include "ckpt/synth.h"
#include "model/tensor_spec.h"
#include "quant/formats.h"

namespace dsv4 {
namespace {

namespace fs = std::filesystem;

class Convert : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = fs::temp_directory_path() / ("dsv4-convert-" + std::to_string(getpid()));
    fs::remove_all(root_);
    write_synthetic_checkpoint((root_ / "hf").string(), synth_preset("tiny-mp"), 7, {});
    for (int world : {1, 2, 4}) convert_checkpoint({(root_ / "hf").string(), dir(world), world, false});
  }
  static void TearDownTestSuite() { fs::remove_all(root_); }
  static std::string dir(int world) { return (root_ / ("mp" + std::to_string(world))).string(); }
  static fs::path root_;
};
fs::path Convert::root_;

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST_F(Convert, RanksHoldExactSlicesOfTheWhole) {
  const ModelConfig cfg = load_config(dir(1) + "/config.json");
  const Checkpoint whole(dir(1));
  for (int world : {2, 4}) {
    std::vector<std::unique_ptr<Checkpoint>> ranks;
    for (int r = 0; r < world; ++r) ranks.push_back(std::make_unique<Checkpoint>(dir(world), r));
    std::map<std::string, int> split_dim;
    for (const TensorSpec& s : expected_tensors(cfg, {true, 0, world})) split_dim[s.name] = s.split_dim;
    int split = 0, experts = 0;
    for (const TensorSpec& s : expected_tensors(cfg, {true, 0, 1})) {
      const TensorView* w = whole.find(s.name);
      ASSERT_TRUE(w) << s.name;
      if (s.routed_expert) {  // exactly one rank holds it: the one owning its index
        const int e = std::stoi(s.name.substr(s.name.find("experts.") + 8));
        int owner = 0;
        while (expert_range(cfg.n_routed_experts, owner, world).second <= e) ++owner;
        for (int r = 0; r < world; ++r) {
          const TensorView* t = ranks[r]->find(s.name);
          ASSERT_EQ(t != nullptr, r == owner) << s.name << " on rank " << r << " of " << world;
          if (t) {
            EXPECT_EQ(0, std::memcmp(t->data, w->data, w->nbytes)) << s.name;
          }
        }
        ++experts;
        continue;
      }
      // Reassemble the ranks' parts along the split dimension (dim 0 or 1 of a matrix).
      const int dim = split_dim.at(s.name);
      std::vector<uint8_t> joined;
      const size_t rows = dim == 1 ? static_cast<size_t>(w->shape[0]) : 1;
      for (size_t row = 0; row < rows; ++row)
        for (int r = 0; r < world; ++r) {
          const TensorView* t = ranks[r]->find(s.name);
          ASSERT_TRUE(t) << s.name << " missing on rank " << r;
          ASSERT_EQ(t->dtype, w->dtype) << s.name;
          if (dim < 0) {
            EXPECT_EQ(0, std::memcmp(t->data, w->data, w->nbytes)) << s.name << " differs on rank " << r;
            continue;
          }
          const size_t part = t->nbytes / rows;
          joined.insert(joined.end(), t->data + row * part, t->data + (row + 1) * part);
        }
      if (dim >= 0) {
        ++split;
        ASSERT_EQ(joined.size(), w->nbytes) << s.name;
        EXPECT_EQ(0, std::memcmp(joined.data(), w->data, w->nbytes)) << s.name << " is not the concatenation";
      }
    }
    EXPECT_GT(split, 10);
    EXPECT_EQ(experts, (cfg.num_hidden_layers + cfg.num_nextn_predict_layers) * cfg.n_routed_experts * 6);
  }
}

TEST_F(Convert, WoAIsTheExactBf16OfItsDequantizedValues) {
  const Checkpoint hf((root_ / "hf").string()), conv(dir(1));
  const TensorView& w = *hf.find("layers.1.attn.wo_a.weight");
  const TensorView& s = *hf.find("layers.1.attn.wo_a.scale");
  const TensorView& b = *conv.find("layers.1.attn.wo_a.weight");
  ASSERT_EQ(b.dtype, DType::BF16);
  EXPECT_EQ(conv.find("layers.1.attn.wo_a.scale"), nullptr);
  const long long in = w.shape[1];
  for (long long i = 0; i < w.numel(); ++i) {
    const long long row = i / in, col = i % in;
    const float want = e4m3_to_f32(w.data[i]) * ue8m0_to_f32(s.data[row / 128 * ((in + 127) / 128) + col / 128]);
    uint16_t got;
    std::memcpy(&got, b.data + 2 * i, 2);
    ASSERT_EQ(bf16_to_f32(got), want) << "element " << i;
  }
}

TEST(Fp4ToFp8, CastIsExactWhenScalesSpanUpTo2To6) {
  std::mt19937 rng(3);
  const int out = 256, in = 384;
  std::vector<uint8_t> w(out * in / 2), s(out * in / 32), w8(out * in), s8((out / 128) * (in / 128));
  for (auto& b : w) b = static_cast<uint8_t>(rng());
  for (auto& b : s) b = static_cast<uint8_t>(118 + rng() % 7);  // 2^-9 .. 2^-3 within every block
  cast_fp4_to_fp8(w.data(), s.data(), out, in, w8.data(), s8.data());
  for (int r = 0; r < out; ++r)
    for (int k = 0; k < in; ++k) {
      const uint8_t byte = w[(r * in + k) / 2];
      const float want = e2m1_to_f32(k % 2 ? byte >> 4 : byte & 15) * ue8m0_to_f32(s[r * (in / 32) + k / 32]);
      const float got = e4m3_to_f32(w8[r * in + k]) * ue8m0_to_f32(s8[(r / 128) * (in / 128) + k / 128]);
      ASSERT_EQ(got, want) << "row " << r << " col " << k;
    }
}

TEST_F(Convert, ConvertedCheckpointsRunLikeTheOriginal) {
  // One rank's conversion gives the original's logits (wo_a in BF16 and FP8 experts change only
  // the summation order), smooth mode.
  const std::string fp8 = (root_ / "mp1-fp8").string();
  convert_checkpoint({(root_ / "hf").string(), fp8, 1, true});
  std::vector<int> tokens = {0, 5, 77, 12, 200, 3, 9, 41};
  std::vector<float> ref;
  for (const std::string& d : {(root_ / "hf").string(), dir(1), fp8}) {
    Model m(d, ModelOptions{.act_quant = false});
    Session s = m.new_session();
    const std::vector<float> logits = m.forward(s, tokens);
    if (ref.empty()) {
      ref = logits;
      continue;
    }
    ASSERT_EQ(logits.size(), ref.size());
    double worst = 0;
    for (size_t i = 0; i < ref.size(); ++i) worst = std::max(worst, std::fabs(double(logits[i]) - ref[i]));
    EXPECT_LE(worst, 1e-4) << d;
  }
}

TEST_F(Convert, BadRequestsFailClearly) {
  const std::string hf = (root_ / "hf").string();
  EXPECT_NE(message_of([&] { convert_checkpoint({hf, (root_ / "x9").string(), 9, false}); }).find("more ranks (9)"),
            std::string::npos);
  EXPECT_NE(message_of([&] { convert_checkpoint({hf, dir(2), 2, false}); }).find("not an empty directory"),
            std::string::npos);
  EXPECT_NE(message_of([&] { convert_checkpoint({dir(2), (root_ / "y").string(), 1, false}); })
                .find("already a model-parallel conversion"),
            std::string::npos);
  EXPECT_NE(message_of([&] { convert_checkpoint({hf, (root_ / "z").string(), 0, false}); }).find("--model-parallel"),
            std::string::npos);
  // One process cannot run a conversion for several ranks; it says what to do.
  EXPECT_NE(message_of([&] { Model m(dir(2)); }).find("conversion for 2 model-parallel ranks"), std::string::npos);
  // A missing rank file is named.
  fs::copy(dir(4), root_ / "broken", fs::copy_options::recursive);
  fs::remove(root_ / "broken" / "model2-mp4.safetensors");
  EXPECT_NE(message_of([&] { Checkpoint c((root_ / "broken").string(), 0); }).find("model2-mp4.safetensors is missing"),
            std::string::npos);
}

}  // namespace
}  // namespace dsv4
