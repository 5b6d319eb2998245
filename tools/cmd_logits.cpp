// dsv4 logits: prefill ids[0:P], then feed the rest one at a time; write every logits row as
// float32 little-endian (row 0 after the prefill, row i after ids[P+i-1]); optionally the MTP
// logits at position P-1 given ids[P].
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>

#include "core/check.h"
#include "core/write_file.h"
#include "dist/comm.h"
#include "core/thread_pool.h"
#include "model/model.h"
#include "tools/commands.h"

namespace dsv4::tools {

namespace {

struct LogitsArgs {
  std::string model_dir, ids, out, mtp_out;
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
  Session s = model.new_session();
  const bool writer = Comm::get().rank() == 0;
  std::ofstream f;
  if (writer) f.open(a.out, std::ios::binary);
  DSV4_CHECK(!writer || f.good(), a.out, ": cannot open for writing");

  ForwardTrace trace;
  const std::span<const int> all(ids);
  write_rows(f, model.forward(s, all.first(a.prefill), &trace), a.out);
  if (!a.mtp_out.empty()) {
    std::ofstream m;
    if (writer) m.open(a.mtp_out, std::ios::binary);
    DSV4_CHECK(!writer || m.good(), a.mtp_out, ": cannot open for writing");
    write_rows(m, model.mtp_forward(s, trace.final_stream, all.subspan(1, a.prefill)), a.mtp_out);
    if (writer) close_checked(m, a.mtp_out);
  }
  for (int i = a.prefill; i < n; ++i) write_rows(f, model.forward(s, all.subspan(i, 1)), a.out);
  if (writer) close_checked(f, a.out);
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
  sub->add_flag("--no-act-quant", args->no_act_quant, "validation: no activation rounding (smooth goldens)");
  sub->add_option("--threads", args->threads, "worker threads (0 = all cores)");
  out.push_back({sub, [args] { return run(*args); }});
}

}  // namespace dsv4::tools
