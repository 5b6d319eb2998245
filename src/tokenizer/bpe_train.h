// Training a byte-level BPE tokenizer (`dsv4 train-tokenizer`) and writing it as a Hugging
// Face tokenizer.json that Tokenizer::load reads: the DeepSeek-V4 special tokens first (BOS = 0,
// EOS = 1), one token per byte, then one token per learned merge, with DeepSeek's pre-tokenizer
// (the same Split patterns), so a model trained with it speaks the V4 chat format.
#pragma once

#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace dsv4 {

// The special tokens of the DeepSeek-V4 chat format, in id order from 0.
const std::vector<std::string>& v4_special_tokens();

// merges: (left, right) raw byte strings, in rank order; each left + right becomes a token.
std::string byte_level_tokenizer_json(const std::vector<std::pair<std::string, std::string>>& merges = {});

// Learns up to n_merges merges from text (pre-tokenized as the tokenizer will be, special
// tokens not recognised): the most frequent adjacent pair first, ties by the smaller pair
// (byte order), pairs seen fewer than min_count times never. Deterministic.
std::vector<std::pair<std::string, std::string>> train_bpe(const std::string& text, int n_merges, int min_count = 2,
                                                           const std::function<void(double)>& progress = {});

}  // namespace dsv4
