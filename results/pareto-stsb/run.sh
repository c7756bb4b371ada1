#!/usr/bin/env bash
# Issue 13, section 3 on STS-B (MiniLM-L6, N = 64; 10% of train held out to choose checkpoints).
# One fine-tuned teacher: lr 1e-4, batch 32, 6 epochs (the paper preset's row, lr 3e-5 at batch 64
# for 3 epochs, left MiniLM at dev Spearman 0.59 and still rising at its last step), a
# PoWER-BERT lambda sweep from it (length-relative retention as the SST-2 sweep; search and
# re-training 2 epochs each), then the baselines from the same teacher.
# Usage: results/pareto-stsb/run.sh WORK   (POWERBERT_DATA_DIR set)
set -euo pipefail
work=$1
t="$work/stsb-teacher"
python -m powerbert_cli train --task stsb --init minilm-l6 --out "$t" --step finetune --selection-holdout 0.1 \
  --lr-bert 1e-4 --batch-size 32 --epochs 6 --checkpoint-every 162 --seed 0 --quiet
for lam in 1e-3 3e-3 1e-2; do
  out="$work/stsb-power-lam$lam"
  if [ ! -d "$out" ]; then
    mkdir -p "$out/logs"
    cp -r "$t/config.json" "$t/task.json" "$t/finetune" "$t/tfds" "$out/"
    cp -r "$t/logs/finetune" "$out/logs/"
  fi
  python -m powerbert_cli train --out "$out" --lambda "$lam" --relative-retention --search-epochs 2 \
    --retrain-epochs 2 --quiet
done
python -m powerbert_cli baseline head-prune --teacher "$t" --out "$work/stsb-head-prune" --step-fraction 0.1 --levels 8
for spec in "distilbert 3 0" "pkd 3 0" "distilbert 2 0" "pkd 2 0" "distilbert 3 1" "pkd 3 1" "distilbert 3 2" "pkd 3 2"; do
  set -- $spec
  python -m powerbert_cli baseline "$1" --teacher "$t" --layers "$2" --seed "$3" --out "$work/stsb-$1-$2l-seed$3" --quiet
done
