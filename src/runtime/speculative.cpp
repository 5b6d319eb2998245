#include "runtime/speculative.h"

#include <algorithm>

#include "core/check.h"
#include "dist/comm.h"

namespace dsv4 {

SpecMode parse_spec_mode(const std::string& s) {
  if (s == "off") return SpecMode::off;
  if (s == "mtp") return SpecMode::mtp;
  if (s == "dspark") return SpecMode::dspark;
  fail("speculative decoding '", s, "' is not one of off, mtp, dspark");
}

const char* spec_mode_name(SpecMode m) {
  switch (m) {
    case SpecMode::off: return "off";
    case SpecMode::mtp: return "mtp";
    case SpecMode::dspark: return "dspark";
  }
  return "?";
}

SpecMode default_spec_mode(const ModelConfig& c) {
  if (c.dspark.stages) return SpecMode::dspark;
  return c.num_nextn_predict_layers ? SpecMode::mtp : SpecMode::off;
}

int max_draft(const ModelConfig& c, SpecMode m) {
  // A verify step feeds the pending token and the drafts, at most a window (Model::mark).
  const int window = c.sliding_window - 1;
  switch (m) {
    case SpecMode::off: return 0;
    case SpecMode::mtp: return std::min(kMaxMtpChain, window);
    case SpecMode::dspark: return std::min(c.dspark.block_size, window);
  }
  return 0;
}

void check_ranks_chose_alike(std::span<const int> chosen) {
  if (!Comm::get().distributed()) return;
  uint64_t h = 1469598103934665603ull;  // FNV-1a over the ids
  for (const int t : chosen) h = (h ^ static_cast<uint32_t>(t)) * 1099511628211ull;
  Comm::get().check_same(h, "the tokens speculative decoding chose");
}

SpecStats& SpecStats::operator+=(const SpecStats& o) {
  steps += o.steps;
  drafted += o.drafted;
  accepted += o.accepted;
  generated += o.generated;
  return *this;
}

int default_draft(const ModelConfig& c, SpecMode m) {
  return m == SpecMode::mtp ? std::min(2, max_draft(c, m)) : max_draft(c, m);
}

double SpecStats::tokens_per_step() const { return steps ? static_cast<double>(generated) / steps : 0.0; }

void check_spec(const ModelConfig& c, SpecMode mode, int draft) {
  DSV4_CHECK(mode != SpecMode::dspark || c.dspark.stages > 0,
             "--spec dspark: this checkpoint has no DSpark drafter (no dspark_* keys in its config.json)");
  DSV4_CHECK(mode != SpecMode::mtp || c.num_nextn_predict_layers > 0,
             "--spec mtp: this checkpoint has no MTP layer (num_nextn_predict_layers = 0",
             c.dspark.stages ? "; it drafts with DSpark: --spec dspark)" : ")");
  if (mode == SpecMode::off) return;
  const int most = max_draft(c, mode);
  DSV4_CHECK(draft >= 1 && draft <= most, "--draft ", draft, ": ", spec_mode_name(mode), " proposes 1 .. ", most,
             " tokens per pass");
}

SpecDecoder::SpecDecoder(const Model& m, SpecMode mode, int draft, int n_ids, const SamplingParams& sampling)
    : m_(m), mode_(mode), draft_(draft), n_ids_(n_ids), sampler_(sampling) {
  const ModelConfig& c = m.config();
  DSV4_CHECK(n_ids >= 1 && n_ids <= c.vocab_size, "decoding over ", n_ids, " ids of a vocabulary of ", c.vocab_size);
  check_spec(c, mode, draft);
  if (mode == SpecMode::dspark) {
    // The drafter rounds its activations exactly when the target does.
    dspark_ = std::make_shared<const Dspark>(m);
    dspark_state_ = dspark_->new_state();
  }
}

void SpecDecoder::restart(int draft, const SamplingParams& sampling) {
  check_spec(m_.config(), mode_, draft);
  draft_ = draft;
  sampler_ = Sampler(sampling);
  pending_ = -1;
  rows_.clear();
  q_.clear();
  first_ = {};
  stats_ = {};
}

bool SpecDecoder::follows(const Session& s) const {
  switch (mode_) {
    case SpecMode::off: return true;
    case SpecMode::mtp: return s.mtp_pos == s.pos;
    case SpecMode::dspark: return dspark_state_.pos == s.pos;
  }
  return false;
}

int SpecDecoder::choose(std::span<const float> logits) { return sampler_.sample(logits.first(n_ids_)); }

void SpecDecoder::prepare(ForwardTrace& tr) const {
  if (mode_ != SpecMode::dspark) return;
  tr.keep_layer_hidden = true;
  tr.hidden_layers = m_.config().dspark.target_layer_ids;  // the same for every session of the model
}

ForwardTrace SpecDecoder::trace() const {
  ForwardTrace tr;
  prepare(tr);
  return tr;
}

int SpecDecoder::prefilled(Session& s, std::span<const int> chunk, const ForwardTrace& tr, int row0,
                           std::span<const float> logits, int next) {
  DSV4_CHECK(pending_ < 0, "prefilled() after the first token was chosen");
  const int first = next < 0 ? choose(logits) : -1;
  std::vector<int> next_tokens(chunk.begin() + 1, chunk.end());
  next_tokens.push_back(next < 0 ? first : next);
  absorb(tr, row0, static_cast<int>(chunk.size()), next_tokens, s);
  if (first >= 0) {
    pending_ = first;
    first_ = {{first}, {std::vector<float>(logits.begin(), logits.end())}};
    propose(s);
  }
  return first;
}

void SpecDecoder::prefill(Session& s, std::span<const int> prompt) {
  DSV4_CHECK(s.pos == 0, "decoding starts from a fresh session");
  ForwardTrace tr = trace();
  const std::vector<float> logits = m_.forward(s, prompt, &tr);
  prefilled(s, prompt, tr, 0, logits, -1);
}

// The rows just kept enter the drafter: DSpark's rings take their captured states; the MTP
// layer takes their final streams with the token that followed each.
void SpecDecoder::absorb(const ForwardTrace& tr, int row0, int rows, std::span<const int> next_tokens, Session& s) {
  const ModelConfig& c = m_.config();
  const size_t flat = static_cast<size_t>(c.hc_mult) * c.hidden_size;
  if (mode_ == SpecMode::dspark) {
    dspark_->absorb(dspark_state_, dspark_capture(c, tr, row0, rows));
  } else if (mode_ == SpecMode::mtp) {
    std::vector<float> out;
    mtp_logits_ = m_.mtp_forward(s, std::span<const float>(tr.final_stream).subspan(row0 * flat, rows * flat),
                                 next_tokens.first(static_cast<size_t>(rows)), draft_ > 1 ? &out : nullptr);
    if (draft_ > 1) mtp_stream_.assign(out.end() - static_cast<long>(flat), out.end());
  }
}

// The drafts after the pending token, into rows_ (after it) and q_ (their distributions).
void SpecDecoder::propose(const Session& s) {
  rows_ = {pending_};
  q_.clear();
  if (mode_ == SpecMode::off) return;
  if (draft_override) {
    const std::vector<int> p = draft_override(pending_, draft_);
    DSV4_CHECK(static_cast<int>(p.size()) == draft_, "draft_override proposed ", p.size(), " tokens for ", draft_);
    rows_.insert(rows_.end(), p.begin(), p.end());
    return;
  }
  if (draft_distributions) {
    q_ = draft_distributions(pending_, draft_);
    DSV4_CHECK(static_cast<int>(q_.size()) == draft_, "draft_distributions gave ", q_.size(), " for ", draft_);
    for (const TokenDistribution& q : q_) rows_.push_back(sampler_.draw(q));
    return;
  }
  // Sampling: each draft is drawn from its row's filtered distribution, which is kept as q.
  auto chooser = [&](std::span<const float> row) {
    if (sampler_.greedy()) return choose(row);
    q_.push_back(sampler_.distribution(row.first(n_ids_)));
    return sampler_.draw(q_.back());
  };
  if (mode_ == SpecMode::mtp) {
    rows_.push_back(chooser(mtp_logits_));
    if (draft_ == 1) return;
    // Chained: the MTP layer again at the next position, on its own output stream and the
    // draft just made, in a copy of its cache (the session's takes only kept positions).
    Session chain;
    chain.mtp = s.mtp;
    chain.mtp_pos = s.mtp_pos;
    std::vector<float> stream = mtp_stream_, out;
    for (int k = 1; k < draft_; ++k) {
      const std::vector<float> logits = m_.mtp_forward(chain, stream, std::span<const int>(&rows_.back(), 1), &out);
      rows_.push_back(chooser(logits));
      stream.swap(out);
    }
    return;
  }
  // DSpark drafts a whole block; the first draft_ rows are used.
  int drawn = 0;
  const DsparkDraft d = dspark_->draft(dspark_state_, pending_, [&](std::span<const float> row) {
    return drawn++ < draft_ ? chooser(row) : 0;  // the rest are not proposed: no draws for them
  });
  rows_.insert(rows_.end(), d.tokens.begin(), d.tokens.begin() + draft_);
}

std::span<const int> SpecDecoder::begin_step(Session& s) {
  DSV4_CHECK(pending_ >= 0, "a decoding step before the prompt's last chunk");
  if (mode_ != SpecMode::off) mark_ = m_.mark(s, static_cast<int>(rows_.size()));
  return rows_;
}

// The standard rule for row j's distribution p against draft x ~ q: keep x with probability
// min(1, p(x) / q(x)); else draw from max(0, p - q) (p with x removed for a certain draft).
namespace {

struct Verdict {
  bool kept;
  int token;
};

// Both distributions are over ids [0, n_ids).
Verdict verify_sampled(Sampler& sampler, const TokenDistribution& p, int x, const TokenDistribution* q, int n_ids) {
  const double px = p.prob(x), qx = q ? q->prob(x) : 1.0;
  if (sampler.uniform() * qx < px) return {true, x};
  std::vector<double> q_of(static_cast<size_t>(n_ids), 0.0);  // by id: q's candidates may be all ids
  if (q)
    for (size_t i = 0; i < q->ids.size(); ++i) q_of[q->ids[i]] = q->weights[i] / q->total;
  else
    q_of[x] = 1.0;
  TokenDistribution residual;
  for (size_t i = 0; i < p.ids.size(); ++i) {
    const double r = p.weights[i] / p.total - q_of[p.ids[i]];
    if (r <= 0) continue;
    residual.ids.push_back(p.ids[i]);
    residual.weights.push_back(r);
    residual.total += r;
  }
  // p == q up to rounding (the draft was kept with probability ~1): p itself.
  return {false, sampler.draw(residual.total > 0 ? residual : p)};
}

}  // namespace

SpecDecoder::Chosen SpecDecoder::end_step(Session& s, const ForwardTrace& tr, int row0) {
  const int n = static_cast<int>(rows_.size()) - 1;  // drafts
  const ModelConfig& c = m_.config();
  const size_t flat = static_cast<size_t>(c.hc_mult) * c.hidden_size, V = c.vocab_size;
  DSV4_CHECK(tr.final_stream.size() >= (row0 + n + 1) * flat, "end_step: the trace lacks the step's rows");
  const std::vector<float> all = m_.all_logits(std::span<const float>(tr.final_stream).subspan(row0 * flat, (n + 1) * flat));
  Chosen out;
  ++stats_.steps;
  // Row j chose the token after rows[0 .. j]; the drafts are kept while the rule keeps them.
  for (int j = 0; j <= n; ++j) {
    const std::span<const float> row = std::span<const float>(all).subspan(j * V, V);
    int tok;
    bool kept = false;
    if (j == n || sampler_.greedy()) {
      tok = choose(row);
      kept = j < n && tok == rows_[j + 1];
    } else {
      const Verdict v = verify_sampled(sampler_, sampler_.distribution(row.first(n_ids_)), rows_[j + 1],
                                       q_.empty() ? nullptr : &q_[j], n_ids_);
      tok = v.token;
      kept = v.kept;
    }
    out.tokens.push_back(tok);
    out.logits.emplace_back(row.begin(), row.end());
    if (!kept) break;
  }
  const int kept_rows = static_cast<int>(out.tokens.size());  // the pending token and the drafts accepted
  if (mode_ != SpecMode::off) m_.rollback(s, mark_, mark_.pos + kept_rows);
  stats_.drafted += n;
  stats_.accepted += kept_rows - 1;
  stats_.generated += kept_rows;
  absorb(tr, row0, kept_rows, out.tokens, s);
  pending_ = out.tokens.back();
  propose(s);
  return out;
}

SpecDecoder::Chosen SpecDecoder::step(Session& s) {
  const std::span<const int> rows = begin_step(s);
  ForwardTrace tr = trace();
  m_.forward(s, rows, &tr);
  return end_step(s, tr, 0);
}

}  // namespace dsv4
