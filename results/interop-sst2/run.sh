#!/usr/bin/env bash
# Round trip of a fine-tuned SST-2 MiniLM classifier (the fine-tune step of results/sst2-relative's
# lambda 3e-4 run: dev accuracy 0.8647) through each format: export-weights, then import into a
# new run directory, which evaluates the imported model on the full SST-2 dev set.
# Usage: results/interop-sst2/run.sh RUN_DIR WORK_DIR   (POWERBERT_DATA_DIR set)
set -euo pipefail
run=$1; work=$2
for fmt in model-garden hf google-ckpt keras-hub; do
  extra=(); [ "$fmt" = keras-hub ] && extra=(--allow-gelu-approximation)
  rm -rf "$work/$fmt" "$work/run-$fmt"
  python -m powerbert_cli export-weights "$run" --step finetune --to "$fmt" --out "$work/$fmt" "${extra[@]}"
  python -m powerbert_cli import --from "$fmt" "$work/$fmt" --task sst2 --out "$work/run-$fmt" --max-length 64
done
