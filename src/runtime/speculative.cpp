#include "runtime/speculative.h"

#include <algorithm>

#include "core/check.h"

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
    case SpecMode::mtp: return std::min(1, window);
    case SpecMode::dspark: return std::min(c.dspark.block_size, window);
  }
  return 0;
}

double SpecStats::tokens_per_step() const { return steps ? static_cast<double>(generated) / steps : 0.0; }

GreedyDecoder::GreedyDecoder(const Model& m, SpecMode mode, int draft, int n_ids)
    : m_(m), mode_(mode), draft_(draft), n_ids_(n_ids) {
  const ModelConfig& c = m.config();
  DSV4_CHECK(n_ids >= 1 && n_ids <= c.vocab_size, "greedy decoding over ", n_ids, " ids of a vocabulary of ",
             c.vocab_size);
  DSV4_CHECK(mode != SpecMode::dspark || c.dspark.stages > 0,
             "--spec dspark: this checkpoint has no DSpark drafter (no dspark_* keys in its config.json)");
  DSV4_CHECK(mode != SpecMode::mtp || c.num_nextn_predict_layers > 0,
             "--spec mtp: this checkpoint has no MTP layer (num_nextn_predict_layers = 0",
             c.dspark.stages ? "; it drafts with DSpark: --spec dspark)" : ")");
  if (mode == SpecMode::off) return;
  const int most = max_draft(c, mode);
  DSV4_CHECK(draft >= 1 && draft <= most, "--draft ", draft, ": ", spec_mode_name(mode), " proposes 1 .. ", most,
             " tokens per pass");
  if (mode == SpecMode::dspark) {
    // The drafter rounds its activations exactly when the target does.
    dspark_ = std::make_unique<Dspark>(c, m.weights(), m.act_quant());
    dspark_state_ = dspark_->new_state();
  }
}

int GreedyDecoder::argmax(std::span<const float> logits) const {
  const auto ids = logits.first(static_cast<size_t>(n_ids_));
  return static_cast<int>(std::max_element(ids.begin(), ids.end()) - ids.begin());  // ties: the lower id
}

void GreedyDecoder::prefill(Session& s, std::span<const int> prompt) {
  DSV4_CHECK(s.pos == 0, "speculative decoding starts from a fresh session");
  ForwardTrace tr;
  tr.keep_layer_hidden = mode_ == SpecMode::dspark;
  std::vector<float> logits = m_.forward(s, prompt, &tr);
  pending_ = argmax(logits);
  first_ = {{pending_}, {std::move(logits)}};
  std::vector<int> next(prompt.begin() + 1, prompt.end());
  next.push_back(pending_);
  absorb(tr, static_cast<int>(prompt.size()), next, s);
}

// The rows just kept enter the drafter: DSpark's rings take their captured states; the MTP
// layer takes their final streams with the token that followed each.
void GreedyDecoder::absorb(const ForwardTrace& tr, int rows, std::span<const int> next_tokens, Session& s) {
  const ModelConfig& c = m_.config();
  const size_t flat = static_cast<size_t>(c.hc_mult) * c.hidden_size;
  if (mode_ == SpecMode::dspark) {
    dspark_->absorb(dspark_state_, dspark_capture(c, tr, 0, rows));
  } else if (mode_ == SpecMode::mtp) {
    const std::vector<float> logits = m_.mtp_forward(
        s, std::span<const float>(tr.final_stream).first(rows * flat), next_tokens.first(static_cast<size_t>(rows)));
    mtp_proposal_ = argmax(logits);
  }
}

std::vector<int> GreedyDecoder::propose() {
  if (draft_override) {
    std::vector<int> p = draft_override(pending_, draft_);
    DSV4_CHECK(static_cast<int>(p.size()) == draft_, "draft_override proposed ", p.size(), " tokens for ", draft_);
    return p;
  }
  if (mode_ == SpecMode::mtp) return {mtp_proposal_};
  DsparkDraft d = dspark_->draft(dspark_state_, pending_);
  d.tokens.resize(draft_);
  return d.tokens;
}

GreedyDecoder::Chosen GreedyDecoder::step(Session& s) {
  DSV4_CHECK(pending_ >= 0, "step() before prefill()");
  Chosen out;
  ++stats_.steps;
  if (mode_ == SpecMode::off) {
    std::vector<float> logits = m_.forward(s, std::span<const int>(&pending_, 1));
    pending_ = argmax(logits);
    out.tokens.push_back(pending_);
    out.logits.push_back(std::move(logits));
    ++stats_.generated;
    return out;
  }
  const std::vector<int> proposed = propose();
  const int n = static_cast<int>(proposed.size());
  std::vector<int> rows = {pending_};
  rows.insert(rows.end(), proposed.begin(), proposed.end());
  const SessionMark mark = m_.mark(s, n + 1);
  ForwardTrace tr;
  tr.keep_layer_hidden = mode_ == SpecMode::dspark;
  m_.forward(s, rows, &tr);
  const std::vector<float> all = m_.all_logits(tr.final_stream);
  const size_t V = m_.config().vocab_size;
  // Row j chose the token after rows[0 .. j]; the drafts are kept while they are that token.
  for (int j = 0; j <= n; ++j) {
    const std::span<const float> row = std::span<const float>(all).subspan(j * V, V);
    const int tok = argmax(row);
    out.tokens.push_back(tok);
    out.logits.emplace_back(row.begin(), row.end());
    if (j == n || tok != proposed[j]) break;
  }
  const int kept = static_cast<int>(out.tokens.size());  // rows kept: the pending token and the drafts accepted
  m_.rollback(s, mark, mark.pos + kept);
  stats_.drafted += n;
  stats_.accepted += kept - 1;
  stats_.generated += kept;
  absorb(tr, kept, out.tokens, s);
  pending_ = out.tokens.back();
  return out;
}

}  // namespace dsv4
