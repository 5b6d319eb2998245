#!/usr/bin/env bash
# DeepSeek-V4's post-training recipe on dsv4-small's pretrained base (models/dsv4-small/base),
# end to end:
#   chat     the base learns the chat format in its three reasoning modes from synthetic
#            conversations, with its pretraining prose beside them (models/dsv4-small/sft.json);
#   experts  per domain an expert: SFT of the chat model on its checked tasks (levels 1 and 2,
#            src/posttrain/tasks.h), some conversations kept in the mix;
#   grpo     each expert improved by GRPO on level-LEVEL tasks it has never seen (dynamic
#            sampling, warm-up, the KL toward its SFT start);
#   merge    one student: SFT of the chat model on every domain's tasks with the conversations
#            and prose, then on-policy distillation from the GRPO experts (a share of expert
#            answers, prose replayed so the student keeps its language);
#   eval     pass@1 of every model per domain in both modes (TASKS held-out tasks, greedy) and
#            the held-out prose perplexity of the base, the chat model and the student.
#   bash bench/post_training.sh [OUT_DIR]
# STAGE=chat|experts|grpo|merge|eval runs one stage (finished runs are kept), DOMAINS="math code"
# some of the experts; THREADS (default 0: all cores) per run, so two runs can share the
# machine's cores with THREADS=1. The text (bench/corpora.sh) is made in OUT_DIR/text.
# Status (2026-12-08): the chat stage and the three experts' SFT have run
# (models/dsv4-small/README.md, their models in models/dsv4-small/stages); GRPO's and the
# merge's step counts and learning rates are first guesses, to be set from measurements.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-/tmp/dsv4-small-post}
base=${BASE:-models/dsv4-small/base}
small=models/dsv4-small
dsv4=build/dsv4
STAGE=${STAGE:-all} THREADS=${THREADS:-0} TASKS=${TASKS:-400} LEVEL=${LEVEL:-2}
DOMAINS=${DOMAINS:-math code agentic}
mkdir -p "$out"
# FROM_STAGES=1: start from the stages committed in models/dsv4-small/stages (released format,
# without their float state) instead of training them again.
if [[ ${FROM_STAGES:-0} == 1 ]]; then
  for s in "$small"/stages/*/; do
    [[ -e $out/$(basename "$s") ]] || cp -r "$s" "$out/$(basename "$s")"
  done
fi
run() { [[ $STAGE == all || $STAGE == "$1" ]]; }
done_in() { [[ -e $1/model.safetensors ]]; }
text=$out/text
bash bench/corpora.sh "$text"
[[ -e $out/chat.jsonl ]] || $dsv4 make-chat-data -o "$out/chat.jsonl" --count 6000 --seed 1
for d in math code agentic; do
  for level in 1 2; do
    n=12000
    [[ $d == agentic ]] && n=4000
    f=$out/task-$d-$level.jsonl
    [[ -e $f ]] || $dsv4 make-task-data --domain $d --level $level -o "$f" --count $n --seed $level
  done
done
prose=(--data "$text/brown-train.txt:0.1" --data "$text/gut-train.txt:0.1")

if run chat; then
  done_in "$out/chat" || $dsv4 train --config $small/sft.json --init "$base" --data "$out/chat.jsonl:0.6" \
    --data "$text/brown-train.txt:0.2" --data "$text/gut-train.txt:0.2" --tokenizer "$base/tokenizer.json" \
    --eval "$text/brown-held.txt" --out "$out/chat" --threads "$THREADS"
fi

if run experts; then
  for d in $DOMAINS; do
    # An agentic prompt (the four tool schemas) is ~780 tokens: 2 sequences of 1024 per step.
    shape=(--batch 4 --seq-len 512) steps=${SFT_STEPS:-800}
    [[ $d == agentic ]] && shape=(--batch 2 --seq-len 1024) steps=${SFT_STEPS:-600}
    done_in "$out/sft-$d" || $dsv4 sft -m "$out/chat" --data "$out/task-$d-1.jsonl:0.4" \
      --data "$out/task-$d-2.jsonl:0.4" --data "$out/chat.jsonl:0.2" --out "$out/sft-$d" --steps "$steps" \
      "${shape[@]}" --threads "$THREADS"
  done
fi

if run grpo; then
  for d in $DOMAINS; do
    prompts=8 draws=24 group=8
    [[ $d == agentic ]] && prompts=4 draws=12
    done_in "$out/grpo-$d" || $dsv4 grpo -m "$out/sft-$d" --domain $d --level "$LEVEL" --out "$out/grpo-$d" \
      --steps "${GRPO_STEPS:-100}" --prompts $prompts --max-draws $draws --group $group --max-tokens 160 \
      --mode both --lr "${GRPO_LR:-5e-5}" --warmup 10 --temperature 1 --seed 500021 --eval-every 10 \
      --eval-tasks 100 --threads "$THREADS"
  done
fi

if run merge; then
  mix=()
  for d in math code agentic; do mix+=(--data "$out/task-$d-1.jsonl:0.1" --data "$out/task-$d-2.jsonl:0.1"); done
  done_in "$out/sft-mixed" || $dsv4 sft -m "$out/chat" "${mix[@]}" --data "$out/chat.jsonl:0.2" "${prose[@]}" \
    --out "$out/sft-mixed" --steps "${MIXED_STEPS:-800}" --batch 4 --seq-len 1024 --threads "$THREADS"
  done_in "$out/student" || $dsv4 distill -m "$out/sft-mixed" --expert math="$out/grpo-math" \
    --expert code="$out/grpo-code" --expert agentic="$out/grpo-agentic" --level "$LEVEL" --out "$out/student" \
    --steps "${DISTILL_STEPS:-150}" --prompts 6 --group 1 --max-tokens 160 --mode both --lr 5e-5 --warmup 10 \
    --temperature 1 --teacher-share 0.25 --replay "$text/brown-train.txt:0.5" --replay "$text/gut-train.txt:0.5" \
    --seed 500031 --threads "$THREADS"
fi

if run eval; then
  # Each model and mode on one thread, JOBS of them at once (one stream of a model this small
  # gains little from a second thread); finished ones are kept in $out/eval.
  models=("$base" "$out/chat" "$out/sft-math" "$out/grpo-math" "$out/sft-code" "$out/grpo-code"
          "$out/sft-agentic" "$out/grpo-agentic" "$out/sft-mixed" "$out/student")
  mkdir -p "$out/eval"
  for m in "${models[@]}"; do
    for mode in chat thinking; do
      f=$out/eval/$(basename "$m")-$mode.txt
      [[ -e $f || ! -e $m/model.safetensors ]] && continue
      while (( $(jobs -rp | wc -l) >= ${JOBS:-2} )); do wait -n; done
      { $dsv4 eval -m "$m" --mode $mode --level "$LEVEL" --tasks "$TASKS" --threads 1 > "$f.part" 2>/dev/null &&
          mv "$f.part" "$f"; } &
    done
  done
  wait
  {
    echo "== pass@1 +- standard error ($TASKS level-$LEVEL tasks per domain, task seed 1000003, greedy) =="
    printf '%-14s %-9s %-16s %-16s %-16s\n' model mode math code agentic
    for m in "${models[@]}"; do
      for mode in chat thinking; do
        f=$out/eval/$(basename "$m")-$mode.txt
        [[ -e $f ]] && awk -v m="$(basename "$m")" -v mode=$mode '$2 == "pass@1" { p[$1] = $3 " +- " $5 }
          END { printf "%-14s %-9s %-16s %-16s %-16s\n", m, mode, p["math"], p["code"], p["agentic"] }' "$f"
      done
    done
    echo "== held-out prose perplexity (brown-held.txt, windows of 512 tokens) =="
    for m in "$base" "$out/chat" "$out/sft-mixed" "$out/student"; do
      [[ -e $m/model.safetensors ]] || continue
      printf '%-40s %s\n' "$m" "$($dsv4 perplexity -m "$m" --text-file "$text/brown-held.txt" --ctx 512 \
        --threads "$THREADS" 2>/dev/null | tail -n 1)"
    done
  } | tee "$out/pass_at_1.txt"
fi
