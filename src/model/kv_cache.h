// Per-session state of one attention layer: the sliding-window ring of kv vectors, and for
// compressed layers the compressed entries and the compressor's pending rows (plus the same
// for the indexer's own compressor). Stored in float32 for now.
#pragma once

#include <vector>

namespace dsv4 {

// Rows waiting to be compressed. With overlap (ratio 4) rows [0, ratio) hold the previous
// block and rows [ratio, 2 * ratio) the current one, each 2 * head_dim wide; without, rows
// [0, ratio) hold the current block. Scores start at -inf: a missing previous block has no
// weight in the softmax.
struct CompressorState {
  std::vector<float> kv, score;  // [coff * ratio, coff * head_dim]
  std::vector<float> entries;    // [n_entries, head_dim] compressed kv, oldest first
  int head_dim = 0;

  long long n_entries() const { return head_dim ? (long long)(entries.size() / head_dim) : 0; }
  const float* entry(long long b) const { return entries.data() + b * head_dim; }
};

struct LayerCache {
  std::vector<float> window;   // [sliding_window, head_dim], slot = position % sliding_window
  CompressorState compressor;  // compress ratio > 0
  CompressorState indexer;     // compress ratio 4: index keys [n_entries, index_head_dim]
};

}  // namespace dsv4
