// dsv4 logits: prefill ids[0:P], then feed the rest one at a time; write every logits row as
// float32 little-endian (row 0 after the prefill, row i after ids[P+i-1]); optionally the MTP
// logits at position P-1 given ids[P]; optionally DSpark's draft block after each token fed
// one at a time (V4-Flash-0731), the protocol of ../shared/golden/tiny-dspark/README.md.
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>

#include "core/check.h"
#include "core/write_file.h"
#include "dist/comm.h"
#include "core/thread_pool.h"
#include "model/dspark.h"
#include "model/model.h"
#include "tools/commands.h"

namespace dsv4::tools {

namespace {

struct LogitsArgs {
  std::string model_dir, ids, out, mtp_out, draft_out;
  int prefill = 0;
  int threads = 0;
  bool no_act_quant = false;
};

std::vector<int> parse_ids(const std::string& s) {
  std::vector<int> ids;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    DSV4_CHECK(used == item.size() && !item.empty(), "--ids: '", item, "' is not an integer");
    DSV4_CHECK(v >= 0 && v <= INT32_MAX, "--ids: ", v, " is not a valid token id");
    ids.push_back(static_cast<int>(v));
  }
  DSV4_CHECK(!ids.empty(), "--ids is empty");
  return ids;
}

// Under mpirun every rank computes every row (the collectives need them all); rank 0 writes.
void write_rows(std::ofstream& f, const std::vector<float>& row, const std::string& path) {
  if (Comm::get().rank() != 0) return;
  f.write(reinterpret_cast<const char*>(row.data()), static_cast<std::streamsize>(row.size() * 4));
  DSV4_CHECK(f.good(), path, ": write failed");
}

int run(const LogitsArgs& a) {
  set_num_threads(a.threads);
  const std::vector<int> ids = parse_ids(a.ids);
  const int n = static_cast<int>(ids.size());
  DSV4_CHECK(a.prefill >= 1 && a.prefill <= n, "--prefill ", a.prefill, " must be in [1, ", n,
             "] (the number of ids)");
  DSV4_CHECK(a.mtp_out.empty() || n > a.prefill, "--mtp-out needs at least one id after the prefill");
  Model model(a.model_dir, ModelOptions{.act_quant = !a.no_act_quant});
  const ModelConfig& c = model.config();
  std::unique_ptr<Dspark> drafter;
  DsparkState ring;
  std::ofstream d;
  if (!a.draft_out.empty()) {
    DSV4_CHECK(c.dspark.stages > 0, "--draft-out: ", a.model_dir, " has no DSpark drafter (no dspark_* keys in its config.json)");
    drafter = std::make_unique<Dspark>(model);
    ring = drafter->new_state();
    if (Comm::get().rank() == 0) d.open(a.draft_out, std::ios::binary);
    DSV4_CHECK(Comm::get().rank() != 0 || d.good(), a.draft_out, ": cannot open for writing");
  }
  // The drafter's rings take the target states of the positions just fed.
  auto absorb = [&](const ForwardTrace& tr, int rows) {
    if (drafter) drafter->absorb(ring, dspark_capture(c, tr, 0, rows));
  };
  Session s = model.new_session();
  const bool writer = Comm::get().rank() == 0;
  std::ofstream f;
  if (writer) f.open(a.out, std::ios::binary);
  DSV4_CHECK(!writer || f.good(), a.out, ": cannot open for writing");

  ForwardTrace trace;
  trace.keep_layer_hidden = drafter != nullptr;
  const std::span<const int> all(ids);
  write_rows(f, model.forward(s, all.first(a.prefill), &trace), a.out);
  absorb(trace, a.prefill);
  if (!a.mtp_out.empty()) {
    std::ofstream m;
    if (writer) m.open(a.mtp_out, std::ios::binary);
    DSV4_CHECK(!writer || m.good(), a.mtp_out, ": cannot open for writing");
    write_rows(m, model.mtp_forward(s, trace.final_stream, all.subspan(1, a.prefill)), a.mtp_out);
    if (writer) close_checked(m, a.mtp_out);
  }
  for (int i = a.prefill; i < n; ++i) {
    ForwardTrace step;
    step.keep_layer_hidden = drafter != nullptr;
    const std::vector<float> row = model.forward(s, all.subspan(i, 1), &step);
    write_rows(f, row, a.out);
    if (!drafter) continue;
    // The block drafted from this row's argmax: its logits (after the Markov bias), then its
    // confidence logits.
    absorb(step, 1);
    const int anchor = static_cast<int>(std::max_element(row.begin(), row.end()) - row.begin());
    const DsparkDraft draft = drafter->draft(ring, anchor);
    write_rows(d, draft.logits, a.draft_out);
    write_rows(d, draft.confidence, a.draft_out);
  }
  if (writer) close_checked(f, a.out);
  if (writer && drafter) close_checked(d, a.draft_out);
  return 0;
}

}  // namespace

void add_logits(CLI::App& app, std::vector<Command>& out) {
  auto args = std::make_shared<LogitsArgs>();
  CLI::App* sub = app.add_subcommand("logits", "write raw logits rows for a token sequence");
  sub->add_option("-m,--model", args->model_dir, "checkpoint directory")->required();
  sub->add_option("--ids", args->ids, "comma-separated token ids")->required();
  sub->add_option("--prefill", args->prefill, "how many ids to prefill at once")->required();
  sub->add_option("-o,--out", args->out, "output file (float32 rows of vocab_size)")->required();
  sub->add_option("--mtp-out", args->mtp_out, "write MTP logits at position P-1 given ids[P]");
  sub->add_option("--draft-out", args->draft_out,
                  "DSpark checkpoints: after each id fed one at a time (rows 1.. of -o), the draft block from that "
                  "row's argmax: dspark_block_size rows of vocab_size float32 logits (after the Markov bias), then "
                  "dspark_block_size float32 confidence logits");
  sub->add_flag("--no-act-quant", args->no_act_quant, "validation: no activation rounding (smooth goldens)");
  sub->add_option("--threads", args->threads, "worker threads (0 = all cores)");
  out.push_back({sub, [args] { return run(*args); }});
}

}  // namespace dsv4::tools
