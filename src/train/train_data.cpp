// Sequences are a function of (seed, step, index) alone, so a resumed run draws the ones the
// uninterrupted run would have drawn.
#include "train/train_data.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "core/check.h"
#include "core/json_input.h"
#include "core/path_weight.h"
#include "core/read_file.h"

namespace dsv4 {

TrainSource load_train_source(const std::string& spec, const Tokenizer& tok, int bos) {
  TrainSource src;
  const PathWeight pw = split_path_weight(spec);
  src.path = pw.path, src.weight = pw.weight;
  DSV4_CHECK(src.weight > 0, spec, ": the weight after ':' must be positive");
  const std::string text = read_file(src.path);
  const bool chat = src.path.size() > 6 && src.path.compare(src.path.size() - 6, 6, ".jsonl") == 0;
  if (!chat) {
    if (bos >= 0) src.stream.push_back(bos);
    const std::vector<int> ids = tok.encode(text);
    src.stream.insert(src.stream.end(), ids.begin(), ids.end());
    DSV4_CHECK(src.stream.size() >= 16, src.path, ": too little text (", src.stream.size(), " tokens)");
    return src;
  }
  size_t line_no = 0, pos = 0;
  while (pos < text.size()) {
    const size_t end = std::min(text.find('\n', pos), text.size());
    const std::string line = text.substr(pos, end - pos);
    pos = end + 1, ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json j;
    try {
      j = parse_json(line);
    } catch (const std::exception& e) {
      fail(src.path, ":", line_no, ": not valid JSON: ", e.what());
    }
    DSV4_CHECK(j.is_object() && j.contains("prompt") && j["prompt"].is_string() && j.contains("completion") &&
                   j["completion"].is_string(),
               src.path, ":", line_no, ": expected {\"prompt\": string, \"completion\": string}");
    // The rendered prompt carries its own BOS text.
    std::vector<int> ids = tok.encode(j["prompt"].get<std::string>());
    const int prompt_len = static_cast<int>(ids.size());
    const std::vector<int> done = tok.encode(j["completion"].get<std::string>());
    DSV4_CHECK(!done.empty(), src.path, ":", line_no, ": empty completion");
    ids.insert(ids.end(), done.begin(), done.end());
    src.examples.push_back(std::move(ids));
    src.prompt_len.push_back(prompt_len);
  }
  DSV4_CHECK(!src.examples.empty(), src.path, ": no examples");
  return src;
}

namespace {

// splitmix64 over (seed, step, b): the step's randomness without any carried state.
uint64_t mix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

}  // namespace

TrainSequence sample_sequence(const std::vector<TrainSource>& sources, int n, uint64_t seed, long long step, int b) {
  DSV4_CHECK(!sources.empty(), "no training data");
  uint64_t r = mix(mix(mix(seed) ^ static_cast<uint64_t>(step)) ^ static_cast<uint64_t>(b));
  double total = 0;
  for (const TrainSource& s : sources) total += s.weight;
  double pick = static_cast<double>(r >> 11) / 9007199254740992.0 * total;
  size_t si = 0;
  while (si + 1 < sources.size() && pick >= sources[si].weight) pick -= sources[si++].weight;
  const TrainSource& src = sources[si];
  r = mix(r);
  TrainSequence seq;
  if (!src.stream.empty()) {
    DSV4_CHECK(src.stream.size() >= size_t(n) + 1, src.path, ": ", src.stream.size(),
               " tokens, fewer than one sequence of ", n + 1);
    const size_t o = r % (src.stream.size() - n);
    seq.inputs.assign(src.stream.begin() + o, src.stream.begin() + o + n);
    seq.targets.assign(src.stream.begin() + o + 1, src.stream.begin() + o + n + 1);
    return seq;
  }
  // Chat: examples from a random one on, packed; targets only inside completions.
  std::vector<int> ids, counted;
  for (size_t e = r % src.examples.size(); ids.size() < size_t(n) + 1; e = (e + 1) % src.examples.size()) {
    const std::vector<int>& ex = src.examples[e];
    for (size_t i = 0; i < ex.size(); ++i) ids.push_back(ex[i]), counted.push_back(int(i) >= src.prompt_len[e]);
  }
  seq.inputs.assign(ids.begin(), ids.begin() + n);
  seq.targets.resize(n);
  for (int i = 0; i < n; ++i) seq.targets[i] = counted[i + 1] ? ids[i + 1] : -1;
  return seq;
}

std::vector<TrainSequence> eval_sequences(const TrainSource& text, int n, int count) {
  DSV4_CHECK(!text.stream.empty(), text.path, ": held-out data must be plain text");
  std::vector<TrainSequence> out;
  for (size_t o = 0; o + n + 1 <= text.stream.size() && static_cast<int>(out.size()) < count; o += n)
    out.push_back({std::vector<int>(text.stream.begin() + o, text.stream.begin() + o + n),
                   std::vector<int>(text.stream.begin() + o + 1, text.stream.begin() + o + n + 1)});
  DSV4_CHECK(!out.empty(), text.path, ": shorter than one sequence of ", n + 1, " tokens");
  return out;
}

}  // namespace dsv4
