#!/usr/bin/env bash
# Issue 13, section 2 (one seed so far): does the significance score matter? The same fine-tuned
# SST-2 MiniLM (results/interop-sst2's HF export of the lambda 3e-4 run's fine-tune step, dev 0.8647)
# is re-trained at one fixed retention (results/sst2-seeds seed 0's searched 41,33,24,14,12,1 of
# N = 64) three ways: words kept by significance (PoWER-BERT), the first l_j (Head-WS) and a seeded
# random l_j (Rand-WS). Re-training starts from the fine-tuned weights in all three arms (no
# search step), with the paper preset's SST-2 row (batch 64, lr 3e-5), 16,000 training sentences,
# one epoch; the dev set chooses the checkpoint (as the paper's code did).
# Usage: results/word-selection-sst2/run.sh HF_EXPORT WORK SEED   (POWERBERT_DATA_DIR set)
set -euo pipefail
hf=$1; work=$2; seed=${3:-0}
base="$work/ws-base-seed$seed"
[ -d "$base" ] || python -m powerbert_cli import --from hf "$hf" --task sst2 --max-length 64 --seed "$seed" --out "$base"
for arm in significance head random; do
  out="$work/ws-$arm-seed$seed"
  [ -d "$out" ] || cp -r "$base" "$out"
  python -m powerbert_cli train --out "$out" --step retrain --retention 41,33,24,14,12,1 \
    --word-selection "$arm" --retrain-subset 16000 --retrain-epochs 1 --checkpoint-every 125 --quiet
done
