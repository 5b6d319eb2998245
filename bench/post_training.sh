#!/usr/bin/env bash
# The post-training pipeline on the default model, end to end: per domain an expert by SFT on
# its checked tasks, then GRPO; one student merging them by on-policy distillation; pass@1 of
# every model per domain in both reasoning modes (`dsv4 eval`, fixed seeds), as a table.
#   bash bench/post_training.sh [OUT_DIR]   (about 4 core-hours; finished stages are kept)
# STAGE=experts|grpo|merge|eval runs one stage; THREADS (default 1) per run, so two stages
# can share the machine's two cores.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-/tmp/dsv4-post-training}
base=models/dsv4-tiny
dsv4=build/dsv4
STAGE=${STAGE:-all} THREADS=${THREADS:-1} TASKS=${TASKS:-40}
mkdir -p "$out"
run() { [[ $STAGE == all || $STAGE == "$1" ]]; }
done_in() { [[ -e $1/model.safetensors ]]; }

if run experts; then
  $dsv4 make-task-data --domain math -o "$out/task-math.jsonl" --count 20000 --seed 1
  $dsv4 make-task-data --domain code -o "$out/task-code.jsonl" --count 20000 --seed 1
  $dsv4 make-task-data --domain agentic -o "$out/task-agentic.jsonl" --count 6000 --seed 1
  # Short tasks: 4 sequences of 256 tokens per step. Copying from the prompt (the operands,
  # the list) appears only after ~500 steps, so the runs are long.
  for d in math code; do
    steps=900
    [[ $d == code ]] && steps=700
    done_in "$out/sft-$d" || $dsv4 sft -m $base --data "$out/task-$d.jsonl" --out "$out/sft-$d" --steps $steps \
      --batch 4 --seq-len 256 --threads "$THREADS"
  done
  # An agentic prompt (the tool schemas) is ~830 tokens: 2 sequences of 864 per step, in two
  # runs (the second restarts the schedule from the first's float state).
  done_in "$out/sft-agentic-1" || $dsv4 sft -m $base --data "$out/task-agentic.jsonl" --out "$out/sft-agentic-1" \
    --steps 200 --batch 2 --seq-len 864 --threads "$THREADS"
  done_in "$out/sft-agentic" || $dsv4 sft -m "$out/sft-agentic-1" --data "$out/task-agentic.jsonl" \
    --out "$out/sft-agentic" --steps 250 --batch 2 --seq-len 864 --seed 4 --threads "$THREADS"
fi

if run grpo; then
  for d in math code agentic; do
    prompts=8 group=8 steps=100
    [[ $d == agentic ]] && prompts=2 group=6 steps=30
    done_in "$out/grpo-$d" || $dsv4 grpo -m "$out/sft-$d" --domain $d --out "$out/grpo-$d" --steps $steps \
      --prompts $prompts --group $group --max-tokens 96 --mode both --lr 5e-5 --temperature 0.8 --seed 500021 \
      --threads "$THREADS"
  done
fi

if run merge; then
  # The student starts from one SFT on the math and code tasks mixed, continuing the math
  # expert (which already copies from the prompt, as every domain needs). Averaging the
  # experts' weights instead (`dsv4 average`) loses both skills: pass@1 at most 0.08.
  done_in "$out/sft-mixed" || $dsv4 sft -m "$out/sft-math" --data "$out/task-math.jsonl" --data "$out/task-code.jsonl" \
    --out "$out/sft-mixed" --steps 400 --batch 4 --seq-len 256 --threads "$THREADS"
  done_in "$out/student" || $dsv4 distill -m "$out/sft-mixed" --expert math="$out/grpo-math" --expert code="$out/grpo-code" \
    --expert agentic="$out/grpo-agentic" --out "$out/student" --steps 120 --prompts 6 --group 1 --max-tokens 96 \
    --mode both --lr 1e-4 --temperature 1 --seed 500031 --threads "$THREADS"
fi

if run eval; then
  models=("$base" "$out/sft-math" "$out/grpo-math" "$out/sft-code" "$out/grpo-code" "$out/sft-agentic"
          "$out/grpo-agentic" "$out/sft-mixed" "$out/student")
  for mode in chat thinking; do
    echo "== pass@1, $mode mode ($TASKS tasks per domain, task seed 1000003, greedy) =="
    for m in "${models[@]}"; do
      printf '%-40s %s\n' "$m" "$($dsv4 eval -m "$m" --mode "$mode" --tasks "$TASKS" --threads "$THREADS" --json)"
    done
  done | tee "$out/pass_at_1.txt"
fi
