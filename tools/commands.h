// Subcommand registration: each add_* adds its options to the app and a run function.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <vector>

namespace dsv4::tools {

struct Command {
  CLI::App* sub;
  std::function<int()> run;
};

void add_logits(CLI::App& app, std::vector<Command>& out);
void add_info(CLI::App& app, std::vector<Command>& out);
void add_tokenize(CLI::App& app, std::vector<Command>& out);
void add_render(CLI::App& app, std::vector<Command>& out);
void add_parse(CLI::App& app, std::vector<Command>& out);
void add_synth(CLI::App& app, std::vector<Command>& out);
void add_run(CLI::App& app, std::vector<Command>& out);
void add_chat(CLI::App& app, std::vector<Command>& out);
void add_serve(CLI::App& app, std::vector<Command>& out);
void add_bench(CLI::App& app, std::vector<Command>& out);
void add_convert(CLI::App& app, std::vector<Command>& out);
void add_perplexity(CLI::App& app, std::vector<Command>& out);
void add_train_tokenizer(CLI::App& app, std::vector<Command>& out);
void add_prepare_brown(CLI::App& app, std::vector<Command>& out);
void add_prepare_gutenberg(CLI::App& app, std::vector<Command>& out);
void add_make_chat_data(CLI::App& app, std::vector<Command>& out);
void add_train(CLI::App& app, std::vector<Command>& out);
void add_plot_runs(CLI::App& app, std::vector<Command>& out);
void add_eval(CLI::App& app, std::vector<Command>& out);
void add_make_task_data(CLI::App& app, std::vector<Command>& out);
void add_post_training(CLI::App& app, std::vector<Command>& out);

}  // namespace dsv4::tools
