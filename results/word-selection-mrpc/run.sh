#!/usr/bin/env bash
# Issue 13, section 2 on a pair task: MRPC (MiniLM-L6, N = 128). One fine-tuned model (seed 0,
# 3 epochs, batch 32, 10% of train held out to choose its checkpoint; dev F1 0.8430), exported to
# the Hugging Face format and imported once per seed (the seed then governs re-training's
# shuffles, dropout and Rand-WS's draw). Each is re-trained at one fixed retention,
# 56,34,25,4,2,1 of N = 128 (the configuration the search found in results/mrpc-minilm; FLOP
# ratio 6.30x), three ways: words kept by significance (PoWER-BERT), the first l_j (Head-WS) and a
# seeded random l_j (Rand-WS): 2 epochs from the fine-tuned weights (no search step) with the
# paper preset's MRPC row (batch 64, lr 6e-5); the dev set chooses the re-training checkpoint, as
# in the SST-2 table.
# Usage: results/word-selection-mrpc/run.sh WORK   (POWERBERT_DATA_DIR set)
set -euo pipefail
work=$1
base="$work/mrpc-ws-base"
python -m powerbert_cli train --task mrpc --init minilm-l6 --out "$base" --step finetune --epochs 3 \
  --batch-size 32 --selection-holdout 0.1 --checkpoint-every 60 --seed 0 --quiet
[ -d "$work/mrpc-ws-hf" ] || python -m powerbert_cli export-weights "$base" --to hf --out "$work/mrpc-ws-hf"
for seed in 0 1 2; do
  imported="$work/mrpc-wsi-base-seed$seed"
  [ -d "$imported" ] || python -m powerbert_cli import --from hf "$work/mrpc-ws-hf" --task mrpc --max-length 128 \
    --seed "$seed" --out "$imported"
  for arm in significance head random; do
    out="$work/mrpc-wsi-$arm-seed$seed"
    [ -d "$out" ] || cp -r "$imported" "$out"
    python -m powerbert_cli train --out "$out" --step retrain --retention 56,34,25,4,2,1 \
      --word-selection "$arm" --retrain-epochs 2 --checkpoint-every 60 --quiet
  done
done
