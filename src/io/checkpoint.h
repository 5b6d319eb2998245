// A checkpoint directory: config.json plus either model.safetensors or shards listed in
// model.safetensors.index.json (the Hugging Face layout), or the model-parallel files
// model{rank}-mp{world}.safetensors written by `dsv4 convert`. All tensors of the files this
// process reads in one name -> view map.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "io/safetensors.h"

namespace dsv4 {

// Which layout a checkpoint has: the Hugging Face release, or rank `rank` of the `world`
// model-parallel shards written by `dsv4 convert` (the official convert.py's layout: embed,
// head, wq_b, attn_sink, wo_a (dequantized to BF16), the indexer's wq_b and weights_proj split
// along their output rows, wo_b along its input columns, the routed experts divided among the
// ranks in index order, everything else whole on every rank).
struct Layout {
  bool converted = false;
  int rank = 0, world = 1;
};

// model.safetensors.index.json's text -> its weight_map (tensor name -> shard file name), each
// shard a plain file name of the checkpoint directory. Throws Error naming `path` and the entry.
std::map<std::string, std::string> parse_shard_index(const std::string& text, const std::string& path);

// Where a checkpoint's bytes are held (core/mmap_file.h). automatic: in RAM when its files
// take at most half of the memory available now, else mapped.
enum class WeightsIn { automatic, mmap, ram };

class Checkpoint {
 public:
  // rank: which model-parallel shard this process reads; -1 for a single process, which
  // needs the Hugging Face layout or a conversion for one rank. Throws Error naming the file
  // and problem.
  explicit Checkpoint(const std::string& dir, int rank = -1, WeightsIn where = WeightsIn::mmap);

  const std::string& dir() const { return dir_; }
  const std::map<std::string, const TensorView*>& tensors() const { return tensors_; }
  const TensorView* find(const std::string& name) const;
  size_t bytes_on_disk() const;
  const Layout& layout() const { return layout_; }
  const std::vector<std::unique_ptr<SafetensorsFile>>& files() const { return files_; }
  Residency residency() const { return residency_; }

 private:
  std::string dir_;
  Layout layout_;
  Residency residency_ = Residency::mapped;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const TensorView*> tensors_;
};

}  // namespace dsv4
