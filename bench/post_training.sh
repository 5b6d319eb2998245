#!/usr/bin/env bash
# The post-training pipeline on the default model, end to end: per domain an expert by SFT on
# its checked tasks, then GRPO; one student merging them by on-policy distillation; pass@1 of
# every model per domain in both reasoning modes (`dsv4 eval`, fixed seeds), as a table.
#   bash bench/post_training.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-/tmp/dsv4-post-training}
base=models/dsv4-tiny
dsv4=build/dsv4
mkdir -p "$out"
SFT_STEPS=${SFT_STEPS:-60} GRPO_STEPS=${GRPO_STEPS:-12} DISTILL_STEPS=${DISTILL_STEPS:-30} TASKS=${TASKS:-30}
STAGE=${STAGE:-all}  # all, or: experts, merge, eval
for d in math code agentic; do
  [[ $STAGE == all || $STAGE == experts ]] || break
  # An agentic prompt (the tool schemas) is about 800 tokens: its sequences must hold one whole.
  seq=640 prompts=4 group=6
  [[ $d == agentic ]] && seq=1024 prompts=2 group=4
  $dsv4 make-task-data --domain "$d" -o "$out/task-$d.jsonl" --count 2000 --seed 1
  [[ -e $out/sft-$d/model.safetensors ]] ||
    $dsv4 sft -m "$base" --data "$out/task-$d.jsonl" --out "$out/sft-$d" --steps "$SFT_STEPS" --batch 2 --seq-len $seq
  [[ -e $out/grpo-$d/model.safetensors ]] ||
    $dsv4 grpo -m "$out/sft-$d" --domain "$d" --out "$out/grpo-$d" --steps "$GRPO_STEPS" --prompts $prompts \
      --group $group --max-tokens 64 --lr 1e-4 --seed 21
done
[[ $STAGE == all || $STAGE == merge ]] &&
$dsv4 distill -m "$base" --expert math="$out/grpo-math" --expert code="$out/grpo-code" \
  --expert agentic="$out/grpo-agentic" --out "$out/student" --steps "$DISTILL_STEPS" --prompts 6 --group 1 \
  --max-tokens 64 --lr 3e-4 --temperature 0.7 --seed 31
[[ $STAGE == all || $STAGE == eval ]] || exit 0
models=("$base" "$out/sft-math" "$out/grpo-math" "$out/sft-code" "$out/grpo-code" "$out/sft-agentic" \
        "$out/grpo-agentic" "$out/student")
for mode in chat thinking; do
  echo "== pass@1, $mode mode ($TASKS tasks per domain, task seed 1000003, greedy) =="
  for m in "${models[@]}"; do
    printf '%-40s %s\n' "$m" "$($dsv4 eval -m "$m" --mode "$mode" --tasks "$TASKS" --json 2>/dev/null)"
  done
done | tee "$out/pass_at_1.txt"
