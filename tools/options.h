// Options that several subcommands share, spelled once, with llama.cpp's spellings as aliases
// where the meaning is the same: -c / --ctx-size for --ctx (sizes such as 128k or 1M, powers of
// 1024), -t for --threads, --mmap / --no-mmap for where the weights are held.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "io/checkpoint.h"
#include "runtime/speculative.h"

namespace dsv4::tools {

CLI::Option* add_ctx_option(CLI::App* sub, long long& ctx, const std::string& what);
CLI::Option* add_threads_option(CLI::App* sub, int& threads);
// --cache-ram SIZE: the prefix cache's budget in bytes (512M, 4G accepted; 0 = none).
constexpr long long kDefaultCacheRam = 1LL << 30;
void add_cache_ram_option(CLI::App* sub, long long& bytes);
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
