// dsv4 train-tokenizer: learn a byte-level BPE from text files and write tokenizer.json (see
// tokenizer/bpe_train.h).
#include <fstream>
#include <iostream>
#include <memory>

#include "core/check.h"
#include "core/read_file.h"
#include "core/write_file.h"
#include "tokenizer/bpe_train.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"
#include "tools/commands.h"
#include "tools/progress.h"

namespace dsv4::tools {

namespace {

struct TrainTokenizerArgs {
  std::vector<std::string> text_files;
  std::string out;
  int vocab_size = 8192, min_count = 2;
};

int run(const TrainTokenizerArgs& a) {
  const int fixed = static_cast<int>(v4_special_tokens().size()) + 256;
  DSV4_CHECK(a.vocab_size >= fixed, "--vocab-size must be at least ", fixed, " (the special tokens and the 256 bytes)");
  std::string text;
  for (const std::string& f : a.text_files) {
    const std::string t = read_file(f);
    const size_t bad = utf8_invalid_at(t);
    DSV4_CHECK(bad == std::string::npos, f, ": not UTF-8 text (an invalid byte at offset ", bad, ")");
    text += t + "\n";
  }
  ProgressBar bar("train-tokenizer");
  const auto merges = train_bpe(text, a.vocab_size - fixed, a.min_count, [&](double f) { bar.update(f); });
  bar.done();
  const std::string json = byte_level_tokenizer_json(merges);
  const Tokenizer check = Tokenizer::from_json(json, a.out);  // what we write must load
  write_file(a.out, json + "\n");
  const size_t tokens = check.encode(text).size();
  std::cerr << "wrote " << a.out << ": " << check.vocab_size() << " tokens (" << merges.size() << " merges"
            << (static_cast<int>(merges.size()) < a.vocab_size - fixed ? ", fewer than asked: no pair left seen " +
                                                                              std::to_string(a.min_count) + " times"
                                                                        : std::string())
            << "); the training text is " << tokens << " tokens, " << static_cast<double>(text.size()) / tokens
            << " bytes per token\n";
  return 0;
}

}  // namespace

void add_train_tokenizer(CLI::App& app, std::vector<Command>& out) {
  auto a = std::make_shared<TrainTokenizerArgs>();
  CLI::App* sub = app.add_subcommand("train-tokenizer", "learn a byte-level BPE tokenizer.json from text");
  sub->add_option("--text-file", a->text_files, "training text (repeatable)")->required();
  sub->add_option("-o,--out", a->out, "tokenizer.json to write")->required();
  sub->add_option("--vocab-size", a->vocab_size, "tokens in all, with the 15 special tokens and 256 bytes");
  sub->add_option("--min-count", a->min_count, "never merge a pair seen fewer times");
  out.push_back({sub, [a] { return run(*a); }});
}

}  // namespace dsv4::tools
