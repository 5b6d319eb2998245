#include "tools/options.h"

#include "core/check.h"
#include "posttrain/tasks.h"

namespace dsv4::tools {

CLI::Option* add_ctx_option(CLI::App* sub, long long& ctx, const std::string& what) {
  // AsSizeValue(false): k / K = 1024, m / M = 1048576 (a "1M context" is 2^20 tokens).
  return sub->add_option("-c,--ctx,--ctx-size", ctx, what + " (tokens; 128k, 1M accepted)")
      ->transform(CLI::AsSizeValue(false).description(""))
      ->type_name("INT");
}

CLI::Option* add_threads_option(CLI::App* sub, int& threads) {
  return sub->add_option("-t,--threads", threads, "worker threads (0 = all cores, or $DSV4_THREADS where that is set)");
}

CLI::Option* add_level_option(CLI::App* sub, int& level) {
  return sub->add_option("--level", level, "the tasks' difficulty")->check(CLI::Range(1, kMaxLevel))->capture_default_str();
}

void add_cache_options(CLI::App* sub, CacheArgs& a) {
  sub->add_option("--cache-ram", a.ram,
                  "prefix cache: bytes of session snapshots kept in RAM for prompts that start alike (512M, 4G "
                  "accepted; 0 = off)")
      ->transform(CLI::AsSizeValue(false).description(""))
      ->type_name("SIZE");
  sub->add_option("--cache-dir", a.dir,
                  "prefix cache on disk: snapshots are also written here and found again after a restart")
      ->type_name("DIR");
  sub->add_option("--cache-disk", a.disk, "bytes the --cache-dir files may take (least recently used out first)")
      ->transform(CLI::AsSizeValue(false).description(""))
      ->type_name("SIZE");
}

void check_cache_args(const CacheArgs& a) {
  DSV4_CHECK(a.ram >= 0, "--cache-ram must be at least 0, got ", a.ram);
  DSV4_CHECK(a.disk > 0, "--cache-disk must be more than 0, got ", a.disk);
  DSV4_CHECK(a.dir.empty() || a.ram > 0, "--cache-dir needs --cache-ram above 0 (snapshots pass through RAM)");
}

void enable_prefix_cache(Engine& e, const CacheArgs& a) {
  check_cache_args(a);
  e.enable_prefix_cache(static_cast<size_t>(a.ram), a.dir, static_cast<size_t>(a.disk));
}

void add_weights_option(CLI::App* sub, WeightsIn& where) {
  auto* mmap = sub->add_flag_callback(
      "--mmap", [&where] { where = WeightsIn::mmap; },
      "map the checkpoint's files (a model larger than RAM runs from the disk; decode is slower)");
  auto* no_mmap = sub->add_flag_callback(
      "--no-mmap", [&where] { where = WeightsIn::ram; },
      "read the weights into RAM in huge pages (faster decode; the default when they take at most half of the "
      "available memory)");
  mmap->excludes(no_mmap);
}

void add_chat_format_option(CLI::App* sub, std::string& format) {
  sub->add_option("--chat-format", format,
                  "the chat encoder: auto (the checkpoint's bundled encoding/encoding_dsv4.py, else april), april "
                  "(V4 preview, V4-Pro, -DSpark), 0731 (V4-Flash-0731: reasoning efforts low, high, max)")
      ->check(CLI::IsMember({"auto", "april", "0731"}));
}

void add_spec_options(CLI::App* sub, std::string& spec, int& draft, const std::string& what) {
  sub->add_option("--spec", spec,
                  "speculative decoding" + what + ": auto (the checkpoint's drafter, DSpark or MTP), off, mtp, dspark")
      ->check(CLI::IsMember({"auto", "off", "mtp", "dspark"}));
  sub->add_option("--draft", draft,
                  "draft tokens checked per pass (DSpark: 1 .. its block size, the default; MTP: 1 .. 4 chained, 2 the "
                  "default)");
}

SpecChoice chosen_spec(const ModelConfig& c, const std::string& spec, int draft) {
  const SpecMode mode = spec == "auto" ? default_spec_mode(c) : parse_spec_mode(spec);
  const SpecChoice choice{mode, draft >= 0 ? draft : default_draft(c, mode)};
  check_spec(c, choice.mode, choice.draft);
  return choice;
}

}  // namespace dsv4::tools
