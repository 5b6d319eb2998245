// Shard discovery: the index's weight_map names every tensor's file; each must hold it.
#include "io/checkpoint.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>

#include "core/check.h"
#include "core/json_input.h"
#include "core/memory.h"
#include "core/read_file.h"

namespace dsv4 {

namespace fs = std::filesystem;

namespace {

// A name from a file, for an error message: control bytes (a NUL would end the message) as \xNN.
std::string printable(const std::string& s) {
  std::string out;
  for (const unsigned char ch : s) {
    if (ch >= 0x20 && ch != 0x7f) {
      out += static_cast<char>(ch);
      continue;
    }
    static const char hex[] = "0123456789abcdef";
    out += "\\x";
    out += hex[ch >> 4];
    out += hex[ch & 15];
  }
  return out;
}

// The world size of the model{r}-mp{N}.safetensors files in dir (0 when there are none); all
// N files must be there and no other N.
int converted_world(const std::string& dir) {
  static const std::regex name(R"(model(\d+)-mp(\d+)\.safetensors)");
  std::set<int> worlds, ranks;
  for (const auto& entry : fs::directory_iterator(dir)) {
    std::smatch m;
    const std::string f = entry.path().filename().string();
    if (!std::regex_match(f, m, name)) continue;
    worlds.insert(std::stoi(m[2]));
    ranks.insert(std::stoi(m[1]));
  }
  if (worlds.empty()) return 0;
  DSV4_CHECK(worlds.size() == 1, dir, ": model-parallel files for several rank counts (", *worlds.begin(), " and ",
             *worlds.rbegin(), ")");
  const int world = *worlds.begin();
  for (int r = 0; r < world; ++r)
    DSV4_CHECK(ranks.count(r), dir, ": model", r, "-mp", world, ".safetensors is missing");
  DSV4_CHECK(static_cast<int>(ranks.size()) == world, dir, ": a model-parallel file with a rank outside 0..",
             world - 1);
  return world;
}

}  // namespace

namespace {

Residency choose_residency(const std::string& dir, const std::vector<std::string>& files, WeightsIn where) {
  if (where != WeightsIn::automatic) return where == WeightsIn::ram ? Residency::ram : Residency::mapped;
  double bytes = 0;
  for (const auto& f : files) {
    std::error_code ec;
    const auto size = fs::file_size(fs::path(dir) / f, ec);
    if (!ec) bytes += static_cast<double>(size);
  }
  const double available = machine_memory().available;
  return available > 0 && bytes <= available / 2 ? Residency::ram : Residency::mapped;
}

}  // namespace

Checkpoint::Checkpoint(const std::string& dir, int rank, WeightsIn where) : dir_(dir) {
  DSV4_CHECK(fs::is_directory(dir), dir, ": not a directory");
  if (const int world = converted_world(dir)) {
    DSV4_CHECK(rank >= 0 || world == 1, dir, " holds a conversion for ", world,
               " model-parallel ranks (model0-mp", world, ".safetensors ...); one process reads only a conversion"
               " for one rank (dsv4 convert --model-parallel 1) or the Hugging Face layout");
    if (rank < 0) rank = 0;
    DSV4_CHECK(rank < world, dir, ": rank ", rank, " of a conversion for ", world, " ranks");
    layout_ = {true, rank, world};
    const std::string file = "model" + std::to_string(rank) + "-mp" + std::to_string(world) + ".safetensors";
    residency_ = choose_residency(dir, {file}, where);
    files_.push_back(std::make_unique<SafetensorsFile>((fs::path(dir) / file).string(), residency_));
    for (const auto& [name, view] : files_.back()->tensors()) tensors_[name] = &view;
    return;
  }
  DSV4_CHECK(rank <= 0, dir, ": rank ", rank, " requested, but the directory is not a model-parallel conversion");
  const fs::path index = fs::path(dir) / "model.safetensors.index.json";
  std::map<std::string, std::string> weight_map;  // tensor -> file (sharded only)
  std::vector<std::string> shard_names;
  if (fs::exists(index)) {
    weight_map = parse_shard_index(read_file(index.string()), index.string());
    std::set<std::string> shards;
    for (const auto& [name, shard] : weight_map) shards.insert(shard);
    shard_names.assign(shards.begin(), shards.end());
  } else {
    DSV4_CHECK(fs::exists(fs::path(dir) / "model.safetensors"), dir,
               ": neither model.safetensors nor model.safetensors.index.json found");
    shard_names.push_back("model.safetensors");
  }
  std::map<std::string, const SafetensorsFile*> by_name;
  residency_ = choose_residency(dir, shard_names, where);
  for (const auto& s : shard_names) {
    files_.push_back(std::make_unique<SafetensorsFile>((fs::path(dir) / s).string(), residency_));
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

std::map<std::string, std::string> parse_shard_index(const std::string& text, const std::string& path) {
  nlohmann::json j;
  try {
    j = parse_json(text);
  } catch (const std::exception& e) {
    fail(path, ": not valid JSON: ", e.what());
  }
  DSV4_CHECK(j.is_object() && j.contains("weight_map") && j["weight_map"].is_object(), path,
             ": no \"weight_map\" object");
  std::map<std::string, std::string> weight_map;
  for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
    DSV4_CHECK(it->is_string(), path, ": weight_map entry '", it.key(), "' is not a file name");
    // A shard is a file of this directory: no path, so an index cannot reach ../ or /; no NUL,
    // which would end the name early when the file is opened.
    const std::string shard = it->get<std::string>();
    DSV4_CHECK(!shard.empty() && shard.find_first_of(std::string("/\0", 2)) == std::string::npos && shard != "." &&
                   shard != "..",
               path, ": weight_map maps '", it.key(), "' to '", printable(shard),
               "', which is not a file name in the checkpoint directory");
    weight_map[it.key()] = shard;
  }
  return weight_map;
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
