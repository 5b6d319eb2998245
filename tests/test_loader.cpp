// Bad input never crashes and always names the problem: malformed safetensors files, broken
// checkpoints (missing tensor, wrong shape or dtype, bad tid2eid, bad shard index), configs
// missing a key, token ids outside the vocabulary. Also: a sharded copy of a golden checkpoint
// loads and gives the single-file logits exactly.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <functional>

#include "core/check.h"
#include "io/config.h"
#include "io/safetensors_writer.h"
#include "model/model.h"
#include "test_util.h"

namespace dsv4 {
namespace {

namespace fs = std::filesystem;

// Expects fn to throw dsv4::Error whose message contains every fragment.
void expect_error(const std::function<void()>& fn, std::vector<std::string> fragments) {
  try {
    fn();
    ADD_FAILURE() << "no error; expected one mentioning '" << fragments[0] << "'";
  } catch (const Error& e) {
    for (const auto& f : fragments)
      EXPECT_NE(std::string(e.what()).find(f), std::string::npos) << "message: " << e.what() << "\nmissing: " << f;
  }
}

std::string header_file(const std::string& header, const std::string& data) {
  std::string s(8, '\0');
  const uint64_t n = header.size();
  std::memcpy(s.data(), &n, 8);
  return s + header + data;
}

TEST(Safetensors, TruncatedFile) {
  test::TempDir d;
  test::write_file(d.file("a.safetensors"), "abc");
  expect_error([&] { SafetensorsFile f(d.file("a.safetensors")); }, {"a.safetensors", "truncated"});
}

TEST(Safetensors, HeaderLengthPastEnd) {
  test::TempDir d;
  std::string s = header_file("{}", "");
  const uint64_t huge = 1ULL << 40;
  std::memcpy(s.data(), &huge, 8);
  test::write_file(d.file("a.safetensors"), s);
  expect_error([&] { SafetensorsFile f(d.file("a.safetensors")); }, {"header length", "past the end"});
}

TEST(Safetensors, HeaderNotJson) {
  test::TempDir d;
  test::write_file(d.file("a.safetensors"), header_file("{\"x\": [", ""));
  expect_error([&] { SafetensorsFile f(d.file("a.safetensors")); }, {"not valid JSON"});
}

TEST(Safetensors, UnknownDtype) {
  test::TempDir d;
  test::write_file(d.file("a.safetensors"),
                   header_file(R"({"w": {"dtype": "F8_E5M2", "shape": [2], "data_offsets": [0, 2]}})", "xx"));
  expect_error([&] { SafetensorsFile f(d.file("a.safetensors")); }, {"'w'", "unknown dtype 'F8_E5M2'"});
}

TEST(Safetensors, DataPastEndOfFile) {
  test::TempDir d;
  test::write_file(d.file("a.safetensors"),
                   header_file(R"({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})", "12345678"));
  expect_error([&] { SafetensorsFile f(d.file("a.safetensors")); }, {"'w'", "past the end"});
}

TEST(Safetensors, ByteCountDisagreesWithShape) {
  test::TempDir d;
  test::write_file(d.file("a.safetensors"),
                   header_file(R"({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})", "12345678"));
  expect_error([&] { SafetensorsFile f(d.file("a.safetensors")); }, {"'w'", "holds 8 bytes", "needs 12"});
}

// A copy of the tiny golden checkpoint whose tensors pass through `edit` (return false to drop).
class BrokenCheckpoint : public ::testing::Test {
 protected:
  test::TempDir dir;
  void make(const std::function<bool(TensorData&)>& edit, const std::string& golden = "tiny") {
    const std::string src = test::golden_dir(golden);
    fs::copy_file(src + "/config.json", dir.file("config.json"), fs::copy_options::overwrite_existing);
    SafetensorsFile f(src + "/model.safetensors");
    std::vector<TensorData> out;
    for (const auto& [name, t] : f.tensors()) {
      TensorData d{name, t.dtype, t.shape, std::vector<uint8_t>(t.data, t.data + t.nbytes)};
      if (edit(d)) out.push_back(std::move(d));
    }
    write_safetensors(dir.file("model.safetensors"), out);
  }
};

TEST_F(BrokenCheckpoint, MissingTensor) {
  make([](TensorData& t) { return t.name != "layers.2.attn.wkv.scale"; });
  expect_error([&] { Model m(dir.path()); }, {"missing tensor 'layers.2.attn.wkv.scale'"});
}

TEST_F(BrokenCheckpoint, WrongShape) {
  make([](TensorData& t) {
    if (t.name == "layers.1.attn.wq_b.weight") t.shape = {256, 256};
    return true;
  });
  expect_error([&] { Model m(dir.path()); }, {"'layers.1.attn.wq_b.weight'", "[256, 256]", "[512, 128]"});
}

TEST_F(BrokenCheckpoint, WrongDtype) {
  make([](TensorData& t) {
    if (t.name == "layers.0.attn.wkv.weight") t.dtype = DType::I8;
    return true;
  });
  expect_error([&] { Model m(dir.path()); }, {"'layers.0.attn.wkv.weight'", "dtype I8", "F8_E4M3"});
}

TEST_F(BrokenCheckpoint, Tid2eidOutOfRange) {
  make([](TensorData& t) {
    if (t.name == "layers.0.ffn.gate.tid2eid") t.bytes[4 * 5] = 99;  // entry 5 -> expert 99
    return true;
  });
  expect_error([&] { Model m(dir.path()); }, {"tid2eid", "99", "[0, 8)"});
}

TEST_F(BrokenCheckpoint, ConfigMissingKey) {
  make([](TensorData&) { return true; });
  std::string cfg = test::read_file(dir.file("config.json"));
  const size_t at = cfg.find("\"o_lora_rank\"");
  cfg.replace(at, cfg.find('\n', at) - at + 1, "");
  test::write_file(dir.file("config.json"), cfg);
  expect_error([&] { Model m(dir.path()); }, {"config.json", "missing key 'o_lora_rank'"});
}

TEST_F(BrokenCheckpoint, ConfigWrongType) {
  make([](TensorData&) { return true; });
  std::string cfg = test::read_file(dir.file("config.json"));
  const size_t at = cfg.find("\"hidden_size\": 128");
  cfg.replace(at, 18, "\"hidden_size\": \"128\"");
  test::write_file(dir.file("config.json"), cfg);
  expect_error([&] { Model m(dir.path()); }, {"'hidden_size' must be an integer"});
  // A float far outside long long's range (casting it was undefined behaviour: fuzz_config).
  cfg.replace(at, 20, "\"hidden_size\": 2.7e40");
  test::write_file(dir.file("config.json"), cfg);
  expect_error([&] { Model m(dir.path()); }, {"'hidden_size' must be an integer, got 2.7e+40"});
}

// DSpark (V4-Flash-0731): the stages come from compress_ratios and the dspark_* keys, not from
// num_nextn_predict_layers (still 1 there); every DSpark tensor is checked like the others.
TEST_F(BrokenCheckpoint, DsparkTensorsAreValidated) {
  make([](TensorData& t) { return t.name != "mtp.2.markov_head.markov_w1.weight"; }, "tiny-dspark");
  expect_error([&] { Model m(dir.path()); }, {"missing tensor 'mtp.2.markov_head.markov_w1.weight'", "[1024, 16]"});
  make(
      [](TensorData& t) {
        if (t.name == "mtp.0.main_proj.weight") t.shape = {128, 256}, t.bytes.resize(128 * 256);
        return true;
      },
      "tiny-dspark");
  expect_error([&] { Model m(dir.path()); }, {"'mtp.0.main_proj.weight'", "[128, 256]", "[128, 384]"});
  make([](TensorData& t) { return t.name != "mtp.1.attn.wq_a.scale"; }, "tiny-dspark");
  expect_error([&] { Model m(dir.path()); }, {"missing tensor 'mtp.1.attn.wq_a.scale'"});
}

TEST(Config, DsparkKeysAreChecked) {
  const std::string text = test::read_file(test::golden_dir("tiny-dspark") + "/config.json");
  const ModelConfig c = parse_config(text, "0731");
  EXPECT_EQ(c.dspark.stages, 3);
  EXPECT_EQ(c.num_nextn_predict_layers, 0);
  EXPECT_EQ(c.n_layers_total(), 7);
  EXPECT_EQ(c.dspark.target_layer_ids, (std::vector<int>{1, 2, 3}));
  auto broken = [&](const std::function<void(nlohmann::json&)>& edit, std::initializer_list<std::string> parts) {
    nlohmann::json j = nlohmann::json::parse(text);
    edit(j);
    expect_error([&] { parse_config(j.dump(), "0731"); }, parts);
  };
  broken([](auto& j) { j.erase("dspark_markov_rank"); }, {"without 'dspark_markov_rank'"});
  broken([](auto& j) { j["dspark_target_layer_ids"] = {1, 4}; }, {"dspark_target_layer_ids entry 4", "0 .. 3"});
  broken([](auto& j) { j["dspark_target_layer_ids"] = {2, 2}; }, {"names a layer twice"});
  broken([](auto& j) { j["dspark_target_layer_ids"] = nlohmann::json::array(); }, {"non-empty array"});
  broken([](auto& j) { j["dspark_noise_token_id"] = 1024; }, {"dspark_noise_token_id 1024", "vocabulary"});
  broken([](auto& j) { j["compress_ratios"][5] = 4; }, {"DSpark stage 1 has compress ratio 4"});
  broken([](auto& j) { j["compress_ratios"] = {0, 4, 16, 4}; }, {"one per draft stage"});
  broken([](auto& j) { j["dspark_block_size"] = 1; }, {"dspark_block_size"});
  // Without the dspark_* keys the same compress_ratios is an MTP config with the wrong count.
  broken([](auto& j) {
    for (const char* k : {"dspark_block_size", "dspark_markov_rank", "dspark_noise_token_id", "dspark_target_layer_ids"})
      j.erase(k);
  }, {"compress_ratios has 7 entries"});
}

TEST_F(BrokenCheckpoint, NotADirectoryOrNoWeights) {
  expect_error([&] { Model m(dir.file("nothing")); }, {"nothing"});
  fs::copy_file(test::golden_dir("tiny") + "/config.json", dir.file("config.json"));
  expect_error([&] { Model m(dir.path()); }, {"model.safetensors"});
}

TEST(Model, TokenOutsideVocabulary) {
  Model m(test::golden_dir("tiny"));
  Session s = m.new_session();
  const std::vector<int> ids = {1, 2, 1024};
  expect_error([&] { m.forward(s, ids); }, {"token id 1024", "index 2", "[0, 1024)"});
  const std::vector<int> neg = {-3};
  expect_error([&] { m.forward(s, neg); }, {"token id -3"});
}

TEST(Checkpoint, ShardedEqualsSingleFile) {
  test::TempDir dir;
  const std::string src = test::golden_dir("tiny-fp8");
  fs::copy_file(src + "/config.json", dir.file("config.json"));
  SafetensorsFile f(src + "/model.safetensors");
  std::vector<TensorData> shard[2];
  nlohmann::json index;
  int i = 0;
  for (const auto& [name, t] : f.tensors()) {
    const int k = i++ % 2;
    shard[k].push_back({name, t.dtype, t.shape, std::vector<uint8_t>(t.data, t.data + t.nbytes)});
    index["weight_map"][name] = "model-0000" + std::to_string(k + 1) + "-of-00002.safetensors";
  }
  for (int k = 0; k < 2; ++k)
    write_safetensors(dir.file("model-0000" + std::to_string(k + 1) + "-of-00002.safetensors"), shard[k]);
  test::write_file(dir.file("model.safetensors.index.json"), index.dump());

  const std::vector<int> ids = {3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5};
  Model single(src), sharded(dir.path());
  Session a = single.new_session(), b = sharded.new_session();
  EXPECT_EQ(test::max_abs_err(sharded.forward(b, ids), single.forward(a, ids)).err, 0.0);
  EXPECT_EQ(sharded.checkpoint().files().size(), 2u);

  // An index that maps a tensor to the wrong shard is an error naming both.
  index["weight_map"]["embed.weight"] = index["weight_map"]["head.weight"] == "model-00001-of-00002.safetensors"
                                            ? "model-00002-of-00002.safetensors"
                                            : "model-00001-of-00002.safetensors";
  test::write_file(dir.file("model.safetensors.index.json"), index.dump());
  expect_error([&] { Model m(dir.path()); }, {"'embed.weight'", "does not contain it"});
}

// Hostile headers (issue 19): a shape whose element count overflows 64 bits passed as empty;
// overlapping data_offsets aliased one tensor's bytes as another's.
TEST(Safetensors, ShapeThatOverflowsIsRefused) {
  test::TempDir d;
  test::write_file(d.file("a.safetensors"),
                   header_file(R"({"w": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 0]}})", ""));
  expect_error([&] { SafetensorsFile f(d.file("a.safetensors")); }, {"'w'", "[4294967296,4294967296]", "more elements"});
}

TEST(Safetensors, OverlappingTensorsAreRefused) {
  test::TempDir d;
  test::write_file(d.file("a.safetensors"),
                   header_file(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                   "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
                               "123456789012"));
  expect_error([&] { SafetensorsFile f(d.file("a.safetensors")); }, {"'a' and 'b' overlap", "[0, 8)", "[4, 12)"});
  // Adjacent is fine.
  test::write_file(d.file("b.safetensors"),
                   header_file(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                   "b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]}})",
                               "123456789012"));
  EXPECT_NO_THROW(SafetensorsFile f(d.file("b.safetensors")));
}

TEST_F(BrokenCheckpoint, NonFiniteWeightNamesTheTensor) {
  make([](TensorData& t) {
    if (t.name == "layers.1.attn.wkv.weight") t.bytes[37] = 0x7F;  // e4m3 NaN
    if (t.name == "layers.2.ffn.shared_experts.w2.scale") t.bytes[0] = 0xFF;  // ue8m0 NaN
    return true;
  });
  expect_error([&] { Model m(dir.path()); }, {"'layers.1.attn.wkv.weight'", "NaN or infinity at element 37",
                                              "DSV4_ALLOW_NON_FINITE=1"});
  make([](TensorData& t) {
    if (t.name == "norm.weight") {  // a float tensor: +inf in BF16 or F32
      if (t.dtype == DType::F32) std::memcpy(t.bytes.data() + 4, "\x00\x00\x80\x7f", 4);
      else std::memcpy(t.bytes.data() + 2, "\x80\x7f", 2);
    }
    return true;
  });
  expect_error([&] { Model m(dir.path()); }, {"'norm.weight'", "NaN or infinity at element 1"});
  setenv("DSV4_ALLOW_NON_FINITE", "1", 1);
  EXPECT_NO_THROW(Model m(dir.path()));
  unsetenv("DSV4_ALLOW_NON_FINITE");
}

// Sizes that would exhaust memory or time before failing: refused with the key and its range.
TEST_F(BrokenCheckpoint, ConfigSizesHaveUpperBounds) {
  make([](TensorData&) { return true; });
  const std::string good = test::read_file(dir.file("config.json"));
  for (const auto& [key, value] : std::vector<std::pair<std::string, std::string>>{
           {"hc_sinkhorn_iters", "1073741824"}, {"sliding_window", "1073741824"}, {"vocab_size", "1073741824"}}) {
    std::string cfg = good;
    const size_t at = cfg.find("\"" + key + "\": ");
    ASSERT_NE(at, std::string::npos) << key;
    const size_t from = at + key.size() + 4, to = cfg.find_first_of(",\n}", from);
    cfg.replace(from, to - from, value);
    test::write_file(dir.file("config.json"), cfg);
    expect_error([&] { Model m(dir.path()); }, {"'" + key + "' = 1073741824 is out of range"});
  }
}

TEST(Checkpoint, ShardIndexCannotLeaveTheDirectory) {
  test::TempDir dir;
  const std::string src = test::golden_dir("tiny");
  fs::copy_file(src + "/config.json", dir.file("config.json"));
  fs::create_directories(dir.file("inner"));
  fs::copy_file(src + "/config.json", dir.file("inner/config.json"));
  fs::copy_file(src + "/model.safetensors", dir.file("model.safetensors.real"));
  SafetensorsFile f(src + "/model.safetensors");
  for (const std::string shard : {"../model.safetensors.real", "/etc/passwd", "sub/x.safetensors"}) {
    nlohmann::json index;
    for (const auto& [name, t] : f.tensors()) index["weight_map"][name] = shard;
    test::write_file(dir.file("inner/model.safetensors.index.json"), index.dump());
    expect_error([&] { Model m(dir.file("inner")); }, {"'" + shard + "'", "not a file name in the checkpoint directory"});
  }
  // A NUL would end the name when the file is opened: "x\0y" opens "x".
  fs::copy_file(src + "/model.safetensors", dir.file("inner/x"));
  const std::string nul("x\0y", 3);
  nlohmann::json index;
  for (const auto& [name, t] : f.tensors()) index["weight_map"][name] = nul;
  test::write_file(dir.file("inner/model.safetensors.index.json"), index.dump());
  expect_error([&] { Model m(dir.file("inner")); }, {"'x\\x00y'", "not a file name in the checkpoint directory"});
  EXPECT_THROW(parse_shard_index(R"({"weight_map": {"a": "model.safetensors", "b": 3}})", "i.json"), Error);
  EXPECT_EQ(parse_shard_index(R"({"weight_map": {"a": "m1", "b": "m2"}})", "i.json").at("b"), "m2");
}

}  // namespace
}  // namespace dsv4

namespace dsv4 {
namespace {

TEST(Checkpoint, WeightsReadIntoRamEqualTheMappedOnes) {
  // --no-mmap reads the files into huge-page anonymous memory: the same bytes, read-only.
  const std::string dir = test::golden_dir("tiny-fp8");
  const Checkpoint mapped(dir, -1, WeightsIn::mmap), ram(dir, -1, WeightsIn::ram);
  EXPECT_EQ(mapped.residency(), Residency::mapped);
  EXPECT_EQ(ram.residency(), Residency::ram);
  ASSERT_EQ(mapped.tensors().size(), ram.tensors().size());
  for (const auto& [name, t] : mapped.tensors()) {
    const TensorView* r = ram.find(name);
    ASSERT_NE(r, nullptr) << name;
    ASSERT_EQ(r->nbytes, t->nbytes) << name;
    EXPECT_NE(r->data, t->data) << name;
    EXPECT_EQ(std::memcmp(r->data, t->data, t->nbytes), 0) << name;
  }
  // automatic: a small checkpoint goes to RAM.
  EXPECT_EQ(Checkpoint(dir, -1, WeightsIn::automatic).residency(), Residency::ram);
  // A model held either way gives the same logits.
  const std::vector<int> ids = {1, 5, 9, 2};
  Model a(dir, ModelOptions{.weights = WeightsIn::mmap}), b(dir, ModelOptions{.weights = WeightsIn::ram});
  Session sa = a.new_session(), sb = b.new_session();
  EXPECT_EQ(a.forward(sa, ids), b.forward(sb, ids));
}

}  // namespace
}  // namespace dsv4
