// dsv4 convert: the official convert.py's model-parallel conversion (see ckpt/convert.h).
#include <iostream>
#include <memory>

#include "core/check.h"
#include "io/config.h"
#include "ckpt/convert.h"
#include "model/tensor_spec.h"
#include "tools/commands.h"
#include "tools/progress.h"

namespace dsv4::tools {

namespace {

struct ConvertArgs {
  ConvertOptions o;
  std::string expert_dtype;
};

int run(ConvertArgs a) {
  DSV4_CHECK(a.expert_dtype.empty() || a.expert_dtype == "fp8" || a.expert_dtype == "fp4",
             "--expert-dtype must be fp8 or fp4, got '", a.expert_dtype, "'");
  a.o.expert_fp8 = a.expert_dtype == "fp8";
  ProgressBar bar("convert to " + std::to_string(a.o.model_parallel) + " rank(s)");
  convert_checkpoint(a.o, [&](double f) { bar.update(f); });
  bar.done();
  if (a.o.model_parallel > 1) {
    // What the official split could not divide into whole scale blocks stays whole on every rank.
    const Splits sp = splits_of(load_config(a.o.hf_dir + "/config.json"), a.o.model_parallel);
    std::string whole;
    for (const auto& [ok, name] : {std::pair{sp.vocab, "embed / head"}, std::pair{sp.heads, "attention heads"},
                                   std::pair{sp.wo_b, "wo_b"}, std::pair{sp.index_heads, "indexer heads"}})
      if (!ok) whole += std::string(whole.empty() ? "" : ", ") + name;
    std::cerr << "routed experts divided among the ranks; "
              << (whole.empty() ? "every split as convert.py makes it" : "kept whole on every rank: " + whole) << "\n";
  }
  std::cerr << "wrote " << a.o.out_dir << ": model0-mp" << a.o.model_parallel << ".safetensors .. model"
            << a.o.model_parallel - 1 << "-mp" << a.o.model_parallel << ".safetensors, all read back and validated\n";
  return 0;
}

}  // namespace

void add_convert(CLI::App& app, std::vector<Command>& out) {
  auto a = std::make_shared<ConvertArgs>();
  CLI::App* sub = app.add_subcommand("convert", "split a Hugging Face checkpoint into model-parallel shards (convert.py)");
  sub->add_option("--hf-ckpt", a->o.hf_dir, "Hugging Face checkpoint directory")->required();
  sub->add_option("--out", a->o.out_dir, "output directory (new or empty)")->required();
  sub->add_option("--model-parallel", a->o.model_parallel, "number of ranks");
  sub->add_option("--expert-dtype", a->expert_dtype, "fp8: cast FP4 routed experts to FP8 (lossless for the release)");
  out.push_back({sub, [a] { return run(*a); }});
}

}  // namespace dsv4::tools
