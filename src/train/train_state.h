// The float state of a trained model in safetensors (train_state.safetensors): every master
// weight as "w/<checkpoint name>" (F32), the routing biases "bias/<block>" and hash tables
// "tid2eid/<block>", plus whatever else a writer adds (the trainer: optimizer moments). The
// released checkpoint beside it is quantized; this is what training continues from.
#pragma once

#include <cstring>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "io/safetensors.h"
#include "io/safetensors_writer.h"
#include "train/train_weights.h"

namespace dsv4 {

// A vector's bytes for a TensorData, and a tensor's values back (the dtypes match the caller's).
template <typename T>
std::vector<uint8_t> bytes_of(const std::vector<T>& v) {
  std::vector<uint8_t> b(v.size() * sizeof(T));
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}
template <typename T>
std::vector<T> values_of(const TensorView& t) {
  std::vector<T> v(t.nbytes / sizeof(T));
  std::memcpy(v.data(), t.data, t.nbytes);
  return v;
}

// The tensors of w's float state (to be written with anything else the caller adds).
std::vector<TensorData> float_state_tensors(const ModelConfig& c, const TrainWeights& w);
// Fills w (shaped for its config) from a state file; throws Error naming a missing or
// mismatched tensor.
void read_float_state(const SafetensorsFile& f, TrainWeights& w);

// A model directory's float weights: its train_state.safetensors when it has one, else its
// checkpoint dequantized. `from` (if not null) says which.
TrainWeights read_model_weights(const std::string& dir, const ModelConfig& c, std::string* from = nullptr);

// Writes path through path.tmp and a rename (a failure leaves the previous file and no .tmp).
void write_atomically(const std::string& path, const std::function<void(const std::string&)>& write);
// A text file, written that way; throws Error when the write fails.
void write_text_file(const std::string& path, const std::string& text);

// Writes what dsv4 loads: model.safetensors (released format), config.json, tokenizer.json.
void write_released_dir(const std::string& dir, const ModelConfig& c, const std::string& config_json,
                        const std::string& tokenizer_json, const TrainWeights& w);

// Writes a model directory: model.safetensors (released format), config.json, tokenizer.json
// and train_state.safetensors (float state + extra tensors), each through a temporary file.
void write_model_dir(const std::string& dir, const ModelConfig& c, const std::string& config_json,
                     const std::string& tokenizer_json, const TrainWeights& w,
                     std::vector<TensorData> extra_state = {}, const std::map<std::string, std::string>& state_meta = {});

}  // namespace dsv4
