// Shard discovery: the index's weight_map names every tensor's file; each must hold it.
#include "io/checkpoint.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "core/check.h"

namespace dsv4 {

namespace fs = std::filesystem;

Checkpoint::Checkpoint(const std::string& dir) : dir_(dir) {
  DSV4_CHECK(fs::is_directory(dir), dir, ": not a directory");
  const fs::path index = fs::path(dir) / "model.safetensors.index.json";
  std::map<std::string, std::string> weight_map;  // tensor -> file (sharded only)
  std::vector<std::string> shard_names;
  if (fs::exists(index)) {
    std::ifstream in(index);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(in);
    } catch (const nlohmann::json::exception& e) {
      fail(index.string(), ": not valid JSON: ", e.what());
    }
    DSV4_CHECK(j.is_object() && j.contains("weight_map") && j["weight_map"].is_object(),
               index.string(), ": no \"weight_map\" object");
    std::set<std::string> shards;
    for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
      DSV4_CHECK(it->is_string(), index.string(), ": weight_map entry '", it.key(),
                 "' is not a file name");
      weight_map[it.key()] = it->get<std::string>();
      shards.insert(it->get<std::string>());
    }
    shard_names.assign(shards.begin(), shards.end());
  } else {
    DSV4_CHECK(fs::exists(fs::path(dir) / "model.safetensors"), dir,
               ": neither model.safetensors nor model.safetensors.index.json found");
    shard_names.push_back("model.safetensors");
  }
  std::map<std::string, const SafetensorsFile*> by_name;
  for (const auto& s : shard_names) {
    files_.push_back(std::make_unique<SafetensorsFile>((fs::path(dir) / s).string()));
    by_name[s] = files_.back().get();
  }
  for (const auto& f : files_)
    for (const auto& [name, view] : f->tensors()) {
      DSV4_CHECK(!tensors_.count(name), "tensor '", name, "' appears in both ",
                 tensors_[name]->file, " and ", f->path());
      tensors_[name] = &view;
    }
  for (const auto& [name, file] : weight_map) {
    DSV4_CHECK(by_name.at(file)->has(name), index.string(), " maps '", name, "' to ", file,
               ", which does not contain it");
  }
}

const TensorView* Checkpoint::find(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : it->second;
}

size_t Checkpoint::bytes_on_disk() const {
  size_t n = 0;
  for (const auto& f : files_) n += fs::file_size(f->path());
  return n;
}

}  // namespace dsv4
