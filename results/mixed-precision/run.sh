#!/usr/bin/env bash
# Issue 15: training speed and dev accuracy of float32, bfloat16 and float16 (Keras' mixed
# policies, `--mixed-precision`) on SST-2. Each round fine-tunes MiniLM-L6 once per precision, one
# after the other (interleaved: load from other jobs on the shared cores falls on all three alike),
# from the same start on the same 9,600 sentences of a round: about 300 steps of 32 (length-bucketed
# batches, so a few short ones more) in chunks of 50. Round r uses seed r-1 for all three (subset,
# shuffle, dropout, head), so accuracy is compared over 3 seeds (mean +- std) and each round's
# speed on the same batches.
# Speed is steps per second of training alone: each chunk's `train_seconds` in the run's
# progress.json (its dev evaluation and checkpoint saves left out), the first chunk also left out
# (it traces the train step). Accuracy: the full dev set after the last step, and at the best
# checkpoint (chosen on dev, so optimistic). Every command resumes, so the script can be re-run
# after an interruption. Time it with nothing else on the machine.
# Usage: results/mixed-precision/run.sh WORK [OUT] [ROUNDS]   (POWERBERT_DATA_DIR set; WORK holds
# the run directories; writes OUT/mixed-precision.json). TASK_ARGS replaces the task and budget
# (the script was smoke-tested on a tiny task that way).
set -euo pipefail
work=$1
out=${2:-results/mixed-precision}
rounds=${3:-3}
task_args=${TASK_ARGS:-"--task sst2 --init minilm-l6 --train-subset 9600 --epochs 1 --batch-size 32 --lr-bert 5e-5 --checkpoint-every 50"}
precisions="float32 bfloat16 float16"
for round in $(seq 1 "$rounds"); do
  for precision in $precisions; do
    flag=""
    [ "$precision" = float32 ] || flag="--mixed-precision $precision"
    # shellcheck disable=SC2086  # the arguments are word lists
    python -m powerbert_cli train $task_args $flag --seed $((round - 1)) --step finetune --quiet \
      --out "$work/$precision-round$round"
  done
done
mkdir -p "$out"
python - "$work" "$out/mixed-precision.json" "$rounds" $precisions <<'PY'
import json
import os
import sys

import tensorflow as tf

work, target, rounds, precisions = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
with open("/proc/cpuinfo") as f:
    flags = set(next(line for line in f if line.startswith("flags")).split(":", 1)[1].split())
rows = []
for round_ in range(1, rounds + 1):
    for precision in precisions:
        run = os.path.join(work, f"{precision}-round{round_}")
        with open(os.path.join(run, "finetune", "progress.json")) as f:
            progress = json.load(f)
        with open(os.path.join(run, "finetune", "done.json")) as f:
            done = json.load(f)
        timed = progress["history"][1:]  # the first chunk traces the train step
        steps = sum(progress["steps_per_chunk"] for _ in timed)
        seconds = sum(entry["train_seconds"] for entry in timed)
        rows.append({"round": round_, "precision": precision, "run": run, "timed_steps": steps,
                     "train_seconds": round(seconds, 2), "steps_per_second": round(steps / seconds, 3),
                     "dev_last": progress["history"][-1]["dev"]["primary"], "dev_best": done["dev"]["primary"]})
def mean_std(values):
    mean = sum(values) / len(values)
    std = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5 if len(values) > 1 else 0.0
    return round(mean, 4), round(std, 4)


summary = {}
for precision in precisions:
    mine = [row for row in rows if row["precision"] == precision]
    speeds = [row["steps_per_second"] for row in mine]
    # speed against float32 of the same round: the rounds ran at different times, the precisions of a round back to back
    ratios = [row["steps_per_second"] / next(r["steps_per_second"] for r in rows
                                             if r["round"] == row["round"] and r["precision"] == precisions[0])
              for row in mine]
    summary[precision] = {"steps_per_second_mean": round(sum(speeds) / len(speeds), 3),
                          "steps_per_second_min": min(speeds), "steps_per_second_max": max(speeds),
                          f"speed_vs_{precisions[0]}_per_round": [round(r, 3) for r in ratios],
                          "dev_last_mean_std": mean_std([r["dev_last"] for r in mine]),
                          "dev_best_mean_std": mean_std([r["dev_best"] for r in mine])}
machine = {"cpus": os.cpu_count(), "tensorflow": tf.__version__,
           "cpu_flags": sorted(flags & {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "avx512_fp16", "f16c"})}
with open(target, "w") as f:
    json.dump({"machine": machine, "summary": summary, "runs": rows}, f, indent=2)
print(f"wrote {target}")
for precision, s in summary.items():
    ratios = s[f"speed_vs_{precisions[0]}_per_round"]
    print(f"{precision:9s} {s['steps_per_second_mean']:7.3f} steps/s ({min(ratios):.2f}-{max(ratios):.2f}x)  "
          f"dev {s['dev_last_mean_std'][0]:.4f} +- {s['dev_last_mean_std'][1]:.4f} "
          f"(best {s['dev_best_mean_std'][0]:.4f} +- {s['dev_best_mean_std'][1]:.4f})")
PY
