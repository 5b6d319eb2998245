#include "posttrain/model_dir.h"

#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/check.h"
#include "core/read_file.h"
#include "train/train_state.h"

namespace dsv4 {

namespace fs = std::filesystem;

ModelDir ModelDir::load(const std::string& dir, std::string* from) {
  ModelDir m;
  m.config_json = read_file((fs::path(dir) / "config.json").string());
  m.c = parse_config(m.config_json, dir + "/config.json");
  m.tokenizer_json = read_file((fs::path(dir) / "tokenizer.json").string());
  m.w = read_model_weights(dir, m.c, from);
  return m;
}

void check_same_model(const ModelDir& model, const ModelDir& other, const std::string& dir) {
  DSV4_CHECK(nlohmann::json::parse(model.config_json) == nlohmann::json::parse(other.config_json), dir,
             ": its config.json differs from the other model's (they must share one architecture)");
  DSV4_CHECK(model.tokenizer_json == other.tokenizer_json, dir, ": its tokenizer differs from the other model's");
}

}  // namespace dsv4
