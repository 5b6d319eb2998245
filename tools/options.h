// Options that several subcommands share, spelled once, with llama.cpp's spellings as aliases
// where the meaning is the same: -c / --ctx-size for --ctx (sizes such as 128k or 1M, powers of
// 1024), -t for --threads.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

namespace dsv4::tools {

CLI::Option* add_ctx_option(CLI::App* sub, long long& ctx, const std::string& what);
CLI::Option* add_threads_option(CLI::App* sub, int& threads);

}  // namespace dsv4::tools
