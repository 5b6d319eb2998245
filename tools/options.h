// Options that several subcommands share, spelled once, with llama.cpp's spellings as aliases
// where the meaning is the same: -c / --ctx-size for --ctx (sizes such as 128k or 1M, powers of
// 1024), -t for --threads, --mmap / --no-mmap for where the weights are held.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "io/checkpoint.h"
#include "runtime/engine.h"
#include "runtime/speculative.h"

namespace dsv4::tools {

CLI::Option* add_ctx_option(CLI::App* sub, long long& ctx, const std::string& what);
CLI::Option* add_threads_option(CLI::App* sub, int& threads);
// --level N: the post-training tasks' difficulty, 1 to kMaxLevel (posttrain/tasks.h).
CLI::Option* add_level_option(CLI::App* sub, int& level);
// The prefix cache (runtime/prefix_cache.h): --cache-ram SIZE (bytes in RAM, 512M, 4G
// accepted; 0 = none), --cache-dir DIR (its disk tier) and --cache-disk SIZE (that tier's
// budget). check_cache_args (before the model loads) throws Error naming a bad one;
// enable_prefix_cache sets up the engine's.
struct CacheArgs {
  long long ram = 1LL << 30, disk = 8LL << 30;
  std::string dir;
};
void add_cache_options(CLI::App* sub, CacheArgs& a);
void check_cache_args(const CacheArgs& a);
void enable_prefix_cache(Engine& e, const CacheArgs& a);
// --mmap (map the checkpoint) / --no-mmap (read it into huge-page RAM); neither: automatic.
void add_weights_option(CLI::App* sub, WeightsIn& where);
// --chat-format auto|april|0731: the chat encoder (chat/encode.h). auto: the checkpoint's
// bundled encoding/encoding_dsv4.py decides, else April.
void add_chat_format_option(CLI::App* sub, std::string& format);
// --spec auto|off|mtp|dspark and --draft N: speculative decoding (runtime/speculative.h); what
// says what it applies to.
void add_spec_options(CLI::App* sub, std::string& spec, int& draft, const std::string& what);
// What they choose for a checkpoint: auto is its drafter, a draft of -1 the drafter's default.
// Throws Error naming the problem (check_spec).
struct SpecChoice {
  SpecMode mode;
  int draft;
};
SpecChoice chosen_spec(const ModelConfig& c, const std::string& spec, int draft);

}  // namespace dsv4::tools
