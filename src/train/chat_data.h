// Synthetic conversations for the supervised stage, in the DeepSeek-V4 chat format of dsv4's own
// encoder: short tasks whose answers are computed, not guessed (small talk, sums and differences
// with worked reasoning, comparisons, sorting, spelling words backwards, counting letters), each
// rendered in one of the three reasoning modes (non-think: the answer alone; think high and
// think max: the reasoning inside <think> .. </think>, then the answer).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace dsv4 {

struct ChatExample {
  std::string mode;        // "non-think", "think-high", "think-max"
  std::string user, reasoning, answer;
  std::string prompt;      // the rendered conversation up to the assistant's turn
  std::string completion;  // what the model must write: [reasoning </think>] answer <eos>
};

// Deterministic for a seed. prompt + completion is exactly the encoder's rendering of the whole
// conversation (user message and assistant answer).
std::vector<ChatExample> make_chat_examples(int count, uint64_t seed);

}  // namespace dsv4
