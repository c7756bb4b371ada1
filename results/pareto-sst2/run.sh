#!/usr/bin/env bash
# Issue 13, section 3 on SST-2: the baselines PoWER-BERT is compared with, all from one teacher,
# the fine-tune step of `results/sst2-relative`'s seed-0 run (MiniLM-L6, N = 64, 16,000 training
# sentences, 1 epoch, batch 32, lr 5e-5, 5% of train held out to choose checkpoints; dev 0.8647),
# copied to $WORK/sst2-teacher. Students train with the teacher run's own data settings (same
# subset, epoch, batch, learning rate and held-out selection).
# Usage: results/pareto-sst2/run.sh WORK   (POWERBERT_DATA_DIR set)
set -euo pipefail
work=$1
t="$work/sst2-teacher"
python -m powerbert_cli baseline head-prune --teacher "$t" --out "$work/sst2-head-prune" --step-fraction 0.1 --levels 8
for spec in "distilbert 3 0" "pkd 3 0" "distilbert 2 0" "pkd 2 0" "distilbert 3 1" "pkd 3 1" "distilbert 3 2" "pkd 3 2"; do
  set -- $spec
  python -m powerbert_cli baseline "$1" --teacher "$t" --layers "$2" --seed "$3" --out "$work/sst2-$1-$2l-seed$3" --quiet
done
