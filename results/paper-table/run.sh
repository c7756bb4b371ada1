#!/usr/bin/env bash
# Issue 14: every task of the paper, 3 seeds each, MiniLM-L6, one benchmark per task at batch 32, and
# the table. Budgeted for a 2-core CPU (subsets, fewer epochs, RACE at N = 256): every run's
# summary.json records what it used and where that departs from Table 1, and the table repeats it.
# Checkpoints are chosen on 10 % of the training data held out (--selection-holdout 0.1; RACE 3 %); dev is
# only reported.
# The search learning rate: Table 1's rates are for three full epochs (thousands of steps on QQP,
# MNLI, QNLI, RACE); with a search of 100-500 steps they barely move the retention (CoLA seed 0 at
# Table 1's 1.5e-3 for 241 steps kept 53-55 of 64 vectors in every layer, a 1.19x FLOP bound; MRPC
# at 3e-3 for 207 steps 1.41x). Every task searches at 1e-2 (learning rate x steps >= 2: a retention
# parameter can travel from 1 to 0 and back), 2e-2 where the search has under 150 steps (RTE, QNLI)
# and for IMDB (its earlier run's rate); lambda is Table 1's.
# The machines here do not keep a run directory between sessions, so each finished run's record
# (summary.json, task.json, retention.json: all the table reads) is copied into OUT/runs/TASK-seedS
# and the script skips a run whose record is there; an interrupted run resumes from its checkpoints
# while WORK survives. Each task is benchmarked (a seeded 1,000 dev examples, RACE 200 questions; batch 32) on the first
# of its runs that finishes where no report of a recorded run exists, and the table is rebuilt
# after every run, so a partial table is always there:
# `powerbert analyze paper-table --runs OUT/runs/* --bench OUT/bench-* --out OUT`.
# Usage: [TASKS="task ..."] results/paper-table/run.sh WORK OUT   (POWERBERT_DATA_DIR set; WORK holds
# the run directories)
set -euo pipefail
work=$1
out=${2:-results/paper-table}
common="--init minilm-l6 --selection-holdout 0.1 --batch-size 32 --quiet"
declare -A budget=(
  [cola]="--lr-bert 5e-5 --lr-soft-extract 1e-2 --epochs 3 --search-epochs 1 --retrain-epochs 1 --checkpoint-every 200"
  [rte]="--lr-bert 5e-5 --lr-soft-extract 2e-2 --epochs 3 --search-epochs 2 --retrain-epochs 2 --checkpoint-every 60"
  [mrpc]="--lr-bert 6e-5 --lr-soft-extract 1e-2 --epochs 3 --search-epochs 2 --retrain-epochs 2 --checkpoint-every 80"
  [sst2]="--lr-bert 5e-5 --lr-soft-extract 1e-2 --epochs 1 --train-subset 16000 --search-subset 16000 --retrain-subset 16000 --checkpoint-every 250"
  [stsb]="--lr-bert 1e-4 --lr-soft-extract 1e-2 --epochs 6 --search-epochs 2 --retrain-epochs 2 --checkpoint-every 162"
  [qnli]="--lr-bert 5e-5 --lr-soft-extract 2e-2 --epochs 3 --search-epochs 1 --retrain-epochs 1 --checkpoint-every 100"
  [qqp]="--lr-bert 5e-5 --lr-soft-extract 1e-2 --epochs 2 --search-epochs 1 --retrain-epochs 1 --train-subset 8000 --search-subset 8000 --retrain-subset 8000 --checkpoint-every 250"
  [mnli]="--lr-bert 5e-5 --lr-soft-extract 1e-2 --epochs 3 --search-epochs 1 --retrain-epochs 1 --checkpoint-every 200"
  [imdb]="--epochs 1 --search-subset 2000 --lr-soft-extract 2e-2 --checkpoint-every 100 --batch-size 8"
  # RACE: a fine-tune step is 8 questions x 4 options x 256 tokens, 8.6 s on 2 cores, and checkpoint
  # choice scores the held-out questions at every chunk's end (10 % of the 9,995 took over 11 min).
  # Measured on a first attempt that would have needed 3 hours before the search; so one pass over
  # 2,000 questions, 3 % held out (300), search and re-train on 1,000 (search rate 2e-2: 125 steps),
  # 400 dev questions. Seed 0 took 46 min with its benchmark (its search kept 3,1,1,1,1,1, so the
  # re-train and the benchmark were fast); a search that keeps more would take up to 2 hours.
  # At 3e-5 (Table 1's order) MiniLM stayed at chance for 168 steps (training loss 1.3866 = ln 4,
  # held-out 25.7 %); a probe at 1e-4 (N 128, 1,200 questions) reached 28.4 % of 500 held-out
  # questions by step 114, so the fine-tune runs at 1e-4. Seed 0's baseline was still near chance
  # (30 % of 400 dev questions), and with no signal in the task loss its search kept almost nothing:
  # RACE's row measures neither elimination's accuracy cost nor its speed where the answer is kept.
  [race]="--max-length 256 --lr-bert 1e-4 --lr-soft-extract 2e-2 --batch-size 8 --epochs 1 --search-epochs 1 --retrain-epochs 1 --train-subset 2000 --search-subset 1000 --retrain-subset 1000 --dev-subset 400 --selection-holdout 0.03 --checkpoint-every 125"
)
# Dev examples benchmarked: a seeded 1,000 of every task but RACE, where 1,000 questions are 4,000
# sequences of 256 tokens: at the 0.55 s a question measured for a MiniLM forward in a graph, BERT's two
# variants alone would take an hour for their 3 passes, and the benchmark must fit the session that
# trained the run (a step of RACE's fine-tune took 8.6-13 s on these noisy machines). 200 questions
# are 800 sequences.
declare -A bench_subset=([race]=200)
# Tasks with no record yet come first: the first five seed-0 records were lost (a .gitignore rule
# matched OUT/runs/), so they are re-run after every task has one. TASKS="cola mrpc" picks tasks
# (and their order), e.g. to fit what is left of a session.
tasks=${TASKS:-"mnli sst2 qqp race imdb cola rte mrpc stsb qnli"}
for task in $tasks; do
  [ -n "${budget[$task]+set}" ] || { echo "run.sh: no budget for task '$task' (tasks: ${!budget[*]})" >&2; exit 2; }
done
record="$out/runs"
table() { python -m powerbert_cli analyze paper-table --runs "$record"/* --bench "$out"/bench-* --out "$out" > /dev/null; }
# The table decides whether a task's report measured one of its records (a re-run of a seed can search
# another configuration than the run the report measured): a row without a current report (exit 1)
# sends the task to the benchmark.
has_current_report='import json, sys
rows = json.load(open(sys.argv[1]))["rows"]
sys.exit(not any(r["task"] == sys.argv[2] and (r["speedup"] or {}).get("matches_a_record") for r in rows))'
shopt -s nullglob
# Seed by seed, so every task has a first row long before all 30 runs are done.
for seed in 0 1 2; do
  for task in $tasks; do
    name="$task-seed$seed"
    [ -f "$record/$name/summary.json" ] && continue
    # shellcheck disable=SC2086  # the budgets are word lists
    python -m powerbert_cli train --task "$task" --out "$work/$name" $common ${budget[$task]} --seed "$seed"
    mkdir -p "$record/$name"
    cp "$work/$name"/{summary.json,task.json,retention.json} "$record/$name/"
    table
    if ! python -c "$has_current_report" "$out/paper-table.json" "$task"; then
      python -m powerbert_cli bench --run "$work/$name" --out "$out/bench-$task" --batch-sizes 32 --subset "${bench_subset[$task]:-1000}" \
        --variants bert-padded:saved_model,bert-dynamic:saved_model,power:saved_model,power-dynamic:saved_model
      table
    fi
  done
done
