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
[ -f "$work/sst2-head-prune/head-prune-56/model.keras" ] || \
  python -m powerbert_cli baseline head-prune --teacher "$t" --out "$work/sst2-head-prune" --step-fraction 0.1 --levels 8
for spec in "distilbert 3 0" "pkd 3 0" "distilbert 2 0" "pkd 2 0" "distilbert 3 1" "pkd 3 1" "distilbert 3 2" "pkd 3 2"; do
  set -- $spec
  python -m powerbert_cli baseline "$1" --teacher "$t" --layers "$2" --seed "$3" --out "$work/sst2-$1-$2l-seed$3" --quiet
done
# The PoWER-BERT points are results/sst2-relative's lambda sweep from this same fine-tuned model
# (its seed0 run is lambda 2e-4; lam3e-4, lam5e-4, lam1e-3), linked in as
# $WORK/sst2-power-lam<lambda>. Every point timed in one run:
python -m powerbert_cli analyze pareto --teacher "$t" \
  --power "$work"/sst2-power-lam2e-4 "$work"/sst2-power-lam3e-4 "$work"/sst2-power-lam5e-4 "$work"/sst2-power-lam1e-3 \
  --baseline "$work"/sst2-head-prune "$work"/sst2-distilbert-* "$work"/sst2-pkd-* --out results/pareto-sst2
