#include "train/train_state.h"

#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/check.h"
#include "core/write_file.h"
#include "model/tensor_spec.h"

namespace dsv4 {

namespace fs = std::filesystem;

void write_atomically(const std::string& path, const std::function<void(const std::string&)>& write) {
  const std::string tmp = path + ".tmp";
  try {
    write(tmp);
  } catch (...) {
    std::error_code ignored;
    fs::remove(tmp, ignored);
    throw;
  }
  fs::rename(tmp, path);
}

void write_text_file(const std::string& path, const std::string& text) {
  write_atomically(path, [&](const std::string& p) { write_file(p, text); });
}

std::vector<TensorData> float_state_tensors(const ModelConfig& c, const TrainWeights& w) {
  const auto shapes = param_shapes(c);
  std::vector<TensorData> t;
  for_each_param(w, [&](const std::string& n, const std::vector<float>& v) {
    t.push_back({"w/" + n, DType::F32, shapes.at(n), bytes_of(v)});
  });
  for_each_block(w, [&](const std::string& prefix, const BlockF32& b) {
    if (!b.routing.bias.empty())
      t.push_back({"bias/" + prefix, DType::F32, {(long long)b.routing.bias.size()}, bytes_of(b.routing.bias)});
    if (!b.routing.tid2eid.empty())
      t.push_back({"tid2eid/" + prefix, DType::I32, {(long long)b.routing.tid2eid.size()}, bytes_of(b.routing.tid2eid)});
  });
  return t;
}

void read_float_state(const SafetensorsFile& f, TrainWeights& w) {
  for_each_param(w, [&](const std::string& n, std::vector<float>& v) {
    const TensorView& t = f.get("w/" + n);
    DSV4_CHECK(t.dtype == DType::F32 && t.nbytes == v.size() * 4, f.path(), ": w/", n, " does not match the model");
    v = values_of<float>(t);
  });
  for_each_block(w, [&](const std::string& prefix, BlockF32& b) {
    auto read = [&](auto& dst, const std::string& name, DType dtype) {
      const TensorView& t = f.get(name);
      DSV4_CHECK(t.dtype == dtype && t.nbytes == dst.size() * 4, f.path(), ": ", name, " does not match the model");
      dst = values_of<typename std::remove_reference_t<decltype(dst)>::value_type>(t);
    };
    if (!b.routing.bias.empty()) read(b.routing.bias, "bias/" + prefix, DType::F32);
    if (!b.routing.tid2eid.empty()) {
      read(b.routing.tid2eid, "tid2eid/" + prefix, DType::I32);
      for (int e : b.routing.tid2eid)
        DSV4_CHECK(e >= 0 && e < static_cast<int>(b.ffn.experts.size()), f.path(), ": tid2eid/", prefix,
                   " holds expert ", e, ", outside the model's ", b.ffn.experts.size());
    }
  });
}

TrainWeights read_model_weights(const std::string& dir, const ModelConfig& c, std::string* from) {
  const std::string state = (fs::path(dir) / "train_state.safetensors").string();
  if (!fs::exists(state)) {
    if (from) *from = "the checkpoint " + dir + " (dequantized)";
    return read_checkpoint_weights(dir, c);
  }
  TrainWeights w = zero_weights(c);
  read_float_state(SafetensorsFile(state), w);
  if (from) *from = "the float weights of " + state;
  return w;
}

void write_model_dir(const std::string& dir, const ModelConfig& c, const std::string& config_json,
                     const std::string& tokenizer_json, const TrainWeights& w, std::vector<TensorData> extra_state,
                     const std::map<std::string, std::string>& state_meta) {
  fs::create_directories(dir);
  std::vector<TensorData> t = float_state_tensors(c, w);
  for (TensorData& e : extra_state) t.push_back(std::move(e));
  write_atomically((fs::path(dir) / "train_state.safetensors").string(),
                   [&](const std::string& p) { write_safetensors(p, t, state_meta); });
  write_released_dir(dir, c, config_json, tokenizer_json, w);
}

void write_released_dir(const std::string& dir, const ModelConfig& c, const std::string& config_json,
                        const std::string& tokenizer_json, const TrainWeights& w) {
  fs::create_directories(dir);
  const fs::path out(dir);
  write_atomically((out / "model.safetensors").string(), [&](const std::string& p) {
    write_released_checkpoint(p, c, w, {{"format", "pt"}, {"dsv4_origin", "trained by dsv4"}});
  });
  write_text_file((out / "config.json").string(), config_json + "\n");
  write_text_file((out / "tokenizer.json").string(), tokenizer_json);
}

}  // namespace dsv4
