#!/usr/bin/env bash
# Muon (+ AdamW for embeddings, head, norms and mHC gates, as DeepSeek-V4) against AdamW alone:
# the same model (models/dsv4-tiny's architecture), data, seed and step budget; one PNG with
# both loss curves and a table of held-out losses. Needs the Brown text of `dsv4 prepare-brown`.
#   bash bench/compare_optimizers.sh brown-train.txt brown-held.txt OUT_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
train=${1:?training text} held=${2:?held-out text} out=${3:-/tmp/dsv4-optimizers}
for opt in muon adamw; do
  build/dsv4 train --config bench/compare_optimizers.json --optimizer "$opt" --data "$train" \
    --tokenizer models/dsv4-tiny/tokenizer.json --eval "$held" --out "$out/$opt"
done
build/dsv4 plot-runs --run "$out/muon:Muon + AdamW" --run "$out/adamw:AdamW only" -o docs/muon-vs-adamw.png
