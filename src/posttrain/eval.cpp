#include "posttrain/eval.h"

#include "chat/parse.h"
#include "chat/tokens.h"
#include "core/check.h"

namespace dsv4 {

Completion complete_task(const Engine& e, const Task& t, bool thinking, const SamplingParams& s, int max_tokens) {
  Conversation conv(e);
  GenerateRequest req;
  req.prompt = e.tokenizer().encode(render_task_prompt(t, thinking));
  req.sampling = s;
  req.max_tokens = max_tokens;
  GenerateResult r = generate(conv, req);
  Completion c{std::move(req.prompt), std::move(r.tokens), std::move(r.text)};
  if (r.hit_eos) c.tokens.push_back(e.eos_id()), c.text += chat::eos_token;
  return c;
}

double score_completion(const Task& t, const std::string& completion, bool thinking) {
  try {
    return check_answer(t, chat::parse_completion(completion, thinking ? chat::ThinkingMode::thinking
                                                                        : chat::ThinkingMode::chat));
  } catch (const Error&) {
    return 0;  // malformed output (an unclosed tool call, ...) solves nothing
  }
}

std::vector<DomainScore> evaluate(const Engine& e, const EvalOptions& o,
                                  const std::function<void(int done, int total)>& progress,
                                  const std::function<void(const Task&, const std::string&, double)>& show) {
  DSV4_CHECK(o.per_domain >= 1, "eval: at least one task per domain");
  std::vector<DomainScore> scores;
  const int total = o.per_domain * static_cast<int>(o.domains.size());
  int done = 0;
  SamplingParams s;
  s.temperature = o.temperature, s.seed = o.sample_seed;
  for (Domain d : o.domains) {
    DomainScore score{d};
    for (int i = 0; i < o.per_domain; ++i) {
      const Task t = task_at(d, o.task_seed, i, o.level);
      s.seed = o.sample_seed + static_cast<uint64_t>(i);
      const std::string text = complete_task(e, t, o.thinking, s, o.max_tokens).text;
      const double r = score_completion(t, text, o.thinking);
      score.passed += r > 0.5;
      if (show) show(t, text, r);
      ++score.total;
      if (progress) progress(++done, total);
    }
    scores.push_back(score);
  }
  return scores;
}

}  // namespace dsv4
