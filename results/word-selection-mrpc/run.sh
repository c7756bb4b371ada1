#!/usr/bin/env bash
# Issue 13, section 2 on a pair task: MRPC (MiniLM-L6, N = 128). One fine-tuned model (seed 0,
# 3 epochs, batch 32, 10% of train held out to choose checkpoints), then at one fixed retention,
# 56,34,25,4,2,1 of N = 128 (the configuration the search found in results/mrpc-minilm; FLOP
# ratio 6.30x), re-trained three ways per seed: words kept by significance (PoWER-BERT), the
# first l_j (Head-WS) and a seeded random l_j (Rand-WS), 2 epochs each from the fine-tuned
# weights (no search step), checkpoints chosen on the held-out 10%.
# Usage: results/word-selection-mrpc/run.sh WORK   (POWERBERT_DATA_DIR set)
set -euo pipefail
work=$1
base="$work/mrpc-ws-base"
python -m powerbert_cli train --task mrpc --init minilm-l6 --out "$base" --step finetune --epochs 3 \
  --batch-size 32 --selection-holdout 0.1 --checkpoint-every 60 --seed 0 --quiet
for seed in 0 1 2; do
  for arm in significance head random; do
    out="$work/mrpc-ws-$arm-seed$seed"
    if [ ! -d "$out" ]; then
      mkdir -p "$out"
      cp -r "$base/config.json" "$base/task.json" "$base/finetune" "$base/tfds" "$out/"
      [ -d "$base/logs" ] && mkdir -p "$out/logs" && cp -r "$base/logs/finetune" "$out/logs/"
    fi
    python -m powerbert_cli train --out "$out" --step retrain --retention 56,34,25,4,2,1 \
      --word-selection "$arm" --seed "$seed" --retrain-epochs 2 --checkpoint-every 60 --quiet
  done
done
