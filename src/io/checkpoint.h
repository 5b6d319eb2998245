// A checkpoint directory: config.json plus either model.safetensors or shards listed in
// model.safetensors.index.json. All tensors of all shards in one name -> view map.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "io/safetensors.h"

namespace dsv4 {

class Checkpoint {
 public:
  explicit Checkpoint(const std::string& dir);  // throws Error naming the file and problem

  const std::string& dir() const { return dir_; }
  const std::map<std::string, const TensorView*>& tensors() const { return tensors_; }
  const TensorView* find(const std::string& name) const;
  size_t bytes_on_disk() const;
  const std::vector<std::unique_ptr<SafetensorsFile>>& files() const { return files_; }

 private:
  std::string dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const TensorView*> tensors_;
};

}  // namespace dsv4
