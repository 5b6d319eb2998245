// What a training step reads: the sources of tokens and the sequences drawn from them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace dsv4 {

// Training data: plain text (one token stream; sequences are random windows of it) or chat
// examples (JSON lines {"prompt", "completion"}: only completion tokens are counted as
// targets; examples are packed into sequences). Several sources mix by weight.
struct TrainSource {
  std::string path;
  double weight = 1;
  std::vector<int> stream;                 // text
  std::vector<std::vector<int>> examples;  // chat: prompt + completion ids
  std::vector<int> prompt_len;             // chat: tokens of each example's prompt
};
// path[:weight]; .jsonl files are chat examples. BOS (if >= 0) starts a text (a chat example's
// rendered prompt carries its own).
TrainSource load_train_source(const std::string& spec, const Tokenizer& tok, int bos);

// One training sequence: inputs [n] and targets [n] (-1: not counted).
struct TrainSequence {
  std::vector<int> inputs, targets;
};
// The b-th sequence of step s: a function of (seed, s, b) and the sources alone.
TrainSequence sample_sequence(const std::vector<TrainSource>& sources, int n, uint64_t seed, long long step, int b);
// Held-out sequences: consecutive non-overlapping windows from the start of a text source.
std::vector<TrainSequence> eval_sequences(const TrainSource& text, int n, int count);

}  // namespace dsv4
