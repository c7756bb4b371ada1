"""`powerbert analyze paper-table`: seeds averaged by hand, MNLI's two rows, speed-ups read from the
benchmark report's batch-32 rows, the protocol note of a made-up split, the constant answer counted
by hand on fixture files, and its errors."""

import json
import math
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

from benchmarks.paper_table import build_paper_table, format_paper_table
from benchmarks.report import report_paths
from benchmarks.settings import BenchError
from powerbert_cli.main import main
from training.config import differences_from_paper, resolve_config
from training.data import ENV_VAR, task_for_data
from training.tasks import get_task


def write_run(path, task, seed, base, power, *, mismatched=None, flop=2.0, settings=None, spec=None,
              retention=(90, 60, 30), held_out=None, dev_examples=50):
    """A finished run directory as the pipeline leaves it (the files the table reads)."""
    path.mkdir(parents=True)
    summary = {
        "task": task, "metric": "accuracy", "max_length": 128, "retention": list(retention),
        "flop_ratio": flop, "settings": resolve_config(spec or task, epochs=2, search_epochs=1, retrain_epochs=1,
                                                       seed=seed, **(settings or {})).to_dict(),
        "baseline": {"primary": base}, "power_bert": {"primary": power},
        "train_examples": {"finetune": 100, "search": 100, "retrain": 100}, "dev_examples": dev_examples,
        "checkpoints_chosen_on": held_out or "dev (the reported set)",
    }
    if mismatched is not None:
        summary["other_dev"] = {"dev_mismatched": {"baseline": {"primary": mismatched[0]},
                                                   "power_bert": {"primary": mismatched[1]}}}
        summary["other_dev_examples"] = {"dev_mismatched": 70}
    (path / "summary.json").write_text(json.dumps(summary))
    (path / "task.json").write_text(json.dumps((spec or get_task(task)).to_dict()))
    return str(path)


def write_bench(path, task, padded, dynamic, batch=32, retention=(90, 60, 30)):
    rows = [{"variant": "power:saved_model", "batch_size": batch, "speedup": {"1": padded, "2": 9.9}},
            {"variant": "power-dynamic:saved_model", "batch_size": batch, "speedup": {"1": 9.9, "2": dynamic}},
            {"variant": "power:saved_model", "batch_size": 1, "speedup": {"1": 7.7}}]
    path.mkdir(parents=True)
    with open(report_paths(str(path), task)["json"], "w") as f:  # where `powerbert bench` writes it
        f.write(json.dumps({"task": task, "rows": rows, "batch_sizes": [1, batch], "run": f"runs/{task}-seed1",
                            "retention": list(retention)}))
    return str(path)


@pytest.fixture(autouse=True)
def no_data_dir(monkeypatch):
    """The made-up runs have no data behind them unless a test gives `data_dir`."""
    monkeypatch.delenv(ENV_VAR, raising=False)


@pytest.fixture
def mnli_spec(tmp_path):
    for name in ("dev_matched_3col.tsv", "dev_mismatched_3col.tsv"):
        (tmp_path / "data/glue/MNLI").mkdir(parents=True, exist_ok=True)
        (tmp_path / "data/glue/MNLI" / name).write_text("p\th\t0\n")
    return task_for_data("mnli", tmp_path / "data")


def test_rows_average_seeds_and_read_batch_32(tmp_path, mnli_spec):
    runs = [write_run(tmp_path / f"sst2-{s}", "sst2", s, b, p, flop=f, retention=r)
            for s, (b, p, f, r) in enumerate([(0.90, 0.89, 3.0, (40, 20, 9)), (0.88, 0.88, 3.2, (44, 21, 9)),
                                              (0.86, 0.84, 3.4, (39, 22, 12))])]
    runs += [write_run(tmp_path / f"mnli-{s}", "mnli", s, b, p, mismatched=mm, spec=mnli_spec)
             for s, (b, p, mm) in enumerate([(0.80, 0.78, (0.79, 0.75)), (0.82, 0.80, (0.81, 0.79))])]
    table = build_paper_table(runs, [write_bench(tmp_path / "b-sst2", "sst2", 2.5, 1.7, retention=(44, 21, 9))])
    rows = {r["row"]: r for r in table["rows"]}
    assert [r["row"] for r in table["rows"]] == ["sst2", "mnli-m", "mnli-mm"]  # the paper's order
    sst2 = rows["sst2"]
    assert sst2["baseline"] == pytest.approx((0.88, 0.02))  # mean, sample std of .90 .88 .86
    assert sst2["power_bert"][0] == pytest.approx((0.89 + 0.88 + 0.84) / 3)
    losses = [1.0, 0.0, 2.0]  # points
    assert sst2["loss_points"] == pytest.approx((1.0, math.sqrt(sum((x - 1.0) ** 2 for x in losses) / 2)))
    assert sst2["flop_bound"] == pytest.approx((3.2, 0.2))
    assert sst2["retention"] == [41, 21, 10]  # per layer: 123/3, 63/3, 30/3
    assert sst2["retention_per_seed"] == [[40, 20, 9], [44, 21, 9], [39, 22, 12]]
    assert (sst2["speedup"]["padded"], sst2["speedup"]["dynamic"]) == (2.5, 1.7)
    assert sst2["paper"] == {"bert": 93.0, "power_bert": 92.1, "loss_points": 0.9, "speedup": 2.4}
    assert rows["mnli-mm"]["baseline"] == pytest.approx((0.80, math.sqrt(2) * 0.01))
    assert rows["mnli-mm"]["power_bert"][0] == pytest.approx(0.77)
    assert rows["mnli-m"]["paper"]["speedup"] == 2.6 and rows["mnli-mm"]["paper"]["speedup"] == 2.1
    assert rows["mnli-m"]["speedup"] is None  # no report given
    text = format_paper_table(table)
    assert "| sst2 | accuracy | 3 | - | 88.00 +- 2.00 |" in text and "| 41,21,10 | 3.20 +- 0.20x | 2.50x | 1.70x | 0.9 | 2.40x |" in text
    assert "**protocol differs from the paper's**: train is a seeded 70% of the dev file dev_matched_3col.tsv" in text
    assert "dev_mismatched 70" in text
    assert f"on one of its runs (that run's retention, not the seed mean): sst2 on sst2-seed1 ({tmp_path}/b-sst2/benchmark-sst2.json)." in text
    # Each step's epochs against the paper's 3; the learning rates are Table 1's, so not listed.
    assert "differs from the paper's setup: epochs=2 (paper 3), retrain_epochs=1 (paper 3), search_epochs=1 (paper 3); " in text
    assert "no constant answer: no data directory: pass --data-dir" in text


def test_a_report_of_a_run_no_record_has_is_marked(tmp_path):
    """A seed re-run whose search kept one vector more than the benchmarked run's: the speed-ups are
    still shown (the nearest measurement there is) but marked, and the note names the retention."""
    runs = [write_run(tmp_path / "qnli-seed0", "qnli", 0, 0.80, 0.79, retention=(108, 93, 1))]
    stale = build_paper_table(runs, [write_bench(tmp_path / "stale", "qnli", 1.9, 1.2, retention=(109, 93, 1))])
    (row,) = stale["rows"]
    assert row["speedup"]["matches_a_record"] is False
    text = format_paper_table(stale)
    assert "| 1.90x\\* | 1.20x\\* |" in text
    assert "qnli \\* on an earlier run named qnli-seed1, retention 109,93,1, which no record here has" in text
    fresh = build_paper_table(runs, [write_bench(tmp_path / "fresh", "qnli", 1.9, 1.2, retention=(108, 93, 1))])
    assert fresh["rows"][0]["speedup"]["matches_a_record"] is True
    assert "| 1.90x | 1.20x |" in format_paper_table(fresh) and "earlier run" not in format_paper_table(fresh)


def test_the_note_names_the_held_out_set_of_every_seed(tmp_path):
    runs = [write_run(tmp_path / f"cola-seed{s}", "cola", s, 0.27, 0.25,
                      held_out=f"855 training examples held out (10%, seed {s})") for s in (1, 0)]
    text = format_paper_table(build_paper_table(runs))
    assert ("checkpoints chosen on 855 training examples held out (10%, seed 0); "
            "855 training examples held out (10%, seed 1);") in text


def test_one_seed_is_shown_without_a_std(tmp_path):
    table = build_paper_table([write_run(tmp_path / "race", "race", 0, 0.60, 0.58)])
    (row,) = table["rows"]
    assert row["baseline"] == (0.60, None) and row["paper"] is None
    assert "| race | accuracy | 1 | - | 60.00 | 58.00 | 2.00 |" in format_paper_table(table)


def test_equal_means_show_a_loss_of_zero_without_a_sign(tmp_path):
    # RTE's seeds 0 and 1 (of 277 dev pairs): losses of +5 and -5 pairs, whose float mean is just below zero.
    runs = [write_run(tmp_path / f"rte-seed{s}", "rte", s, base / 277, power / 277)
            for s, base, power in ((0, 144, 139), (1, 141, 146))]
    table = build_paper_table(runs)
    assert -1e-12 < table["rows"][0]["loss_points"][0] < 0
    assert "| 0.00 +- 2.55 |" in format_paper_table(table)


def write_rte_data(root, train_labels, dev_labels):
    """RTE files in GLUE's layout, one made-up pair per label."""
    (root / "glue/RTE").mkdir(parents=True)
    for name, labels in (("train.tsv", train_labels), ("dev.tsv", dev_labels)):
        rows = [f"{i}\tA man sleeps.\tSomeone sleeps.\t{label}" for i, label in enumerate(labels)]
        (root / "glue/RTE" / name).write_text("index\tsentence1\tsentence2\tlabel\n" + "\n".join(rows) + "\n")
    return str(root)


def test_the_constant_answer_is_the_training_majority_on_each_seeds_dev_examples(tmp_path):
    # Train: 3 entailment, 2 not, so the answer is "entailment". Dev: 4 of 6 are entailment.
    data = write_rte_data(tmp_path / "data", ["entailment"] * 3 + ["not_entailment"] * 2,
                          ["entailment", "not_entailment", "entailment", "entailment", "not_entailment", "entailment"])
    runs = [write_run(tmp_path / f"rte-seed{s}", "rte", s, 0.70, 0.68, dev_examples=6) for s in (0, 1)]
    table = build_paper_table(runs, data_dir=data)
    assert table["rows"][0]["constant_answer"] == pytest.approx((4 / 6, 0.0))
    assert "| rte | accuracy | 2 | 66.67 +- 0.00 | 70.00 +- 0.00 |" in format_paper_table(table)


def test_the_constant_answer_counts_the_dev_subset_each_seed_evaluated(tmp_path):
    dev = ["entailment", "not_entailment", "not_entailment", "entailment", "not_entailment", "entailment"]
    data = write_rte_data(tmp_path / "data", ["not_entailment"] * 2 + ["entailment"], dev)
    runs = [write_run(tmp_path / f"rte-seed{s}", "rte", s, 0.70, 0.68, settings={"dev_subset": 4}, dev_examples=4)
            for s in (0, 1)]
    (row,) = build_paper_table(runs, data_dir=data)["rows"]
    # The pipeline's draw of 4 of the 6 dev examples for seeds 0 and 1 (training.input_pipeline).
    drawn = [np.random.RandomState(seed).permutation(6)[:4] for seed in (0, 1)]
    right = [sum(dev[i] == "not_entailment" for i in d) / 4 for d in drawn]
    assert row["constant_answer"][0] == pytest.approx(sum(right) / 2)


def test_no_constant_answer_from_other_data_than_the_runs_read(tmp_path):
    data = write_rte_data(tmp_path / "data", ["entailment"], ["entailment"] * 3)
    table = build_paper_table([write_run(tmp_path / "rte-seed0", "rte", 0, 0.70, 0.68)], data_dir=data)
    assert table["rows"][0]["constant_answer"] is None
    assert ("no constant answer: the data directory's dev split gives 3 examples, the seed 0 run evaluated 50"
            in format_paper_table(table))


def test_errors(tmp_path):
    a = write_run(tmp_path / "a", "rte", 0, 0.6, 0.6)
    with pytest.raises(BenchError, match=r"differ in more than the seed: lr_bert"):
        build_paper_table([a, write_run(tmp_path / "b", "rte", 1, 0.6, 0.6, settings={"lr_bert": 1e-5})])
    with pytest.raises(BenchError, match=r"two rte runs have the same seed"):
        build_paper_table([a, write_run(tmp_path / "c", "rte", 0, 0.6, 0.6)])
    (tmp_path / "unfinished").mkdir()
    with pytest.raises(BenchError, match=r"unfinished has not finished all three steps"):
        build_paper_table([str(tmp_path / "unfinished")])
    with pytest.raises(BenchError, match=r"has no rows at batch 32 \(its batch sizes: \[1, 8\]\)"):
        build_paper_table([a], [write_bench(tmp_path / "b8", "rte", 2.0, 1.5, batch=8)])
    (tmp_path / "empty").mkdir()
    with pytest.raises(BenchError, match=r"empty has no benchmark-<task>.json"):
        build_paper_table([a], [str(tmp_path / "empty")])
    two = write_bench(tmp_path / "two", "rte", 2.0, 1.5)
    (tmp_path / "two" / "benchmark-mrpc.json").write_text("{}")
    with pytest.raises(BenchError, match=r"several reports \(benchmark-mrpc.json, benchmark-rte.json\); give one file"):
        build_paper_table([a], [two])


def test_cli_writes_the_table(tmp_path, capsys):
    runs = [write_run(tmp_path / f"rte-{s}", "rte", s, 0.6 + s / 100, 0.59) for s in range(2)]
    assert main(["analyze", "paper-table", "--runs", *runs, "--out", str(tmp_path / "out")]) == 0
    written = (tmp_path / "out" / "paper-table.md").read_text()
    assert "Made by `powerbert" in written and "| rte | accuracy | 2 | - | 60.50 +- 0.71 |" in written
    assert json.loads((tmp_path / "out" / "paper-table.json").read_text())["rows"][0]["row"] == "rte"


def test_differences_from_paper_compare_the_epochs_each_step_ran():
    assert differences_from_paper(resolve_config("cola")) == {}
    assert differences_from_paper(resolve_config("cola", search_epochs=3)) == {}  # the paper's 3, said explicitly
    fewer = {"paper": 3, "used": 2}
    assert differences_from_paper(resolve_config("cola", epochs=2)) == {
        "epochs": fewer, "search_epochs": fewer, "retrain_epochs": fewer}
    assert differences_from_paper(resolve_config("cola", search_epochs=1, selection_holdout=0.1)) == {
        "search_epochs": {"paper": 3, "used": 1}, "selection_holdout": {"paper": None, "used": 0.1}}


def test_run_records_are_not_gitignored():
    """run.sh keeps each finished run's record in results/paper-table/runs/; the machines keep no run
    directory between sessions, so an ignored record is a lost run (five were, to a `runs/` rule)."""
    repo = pathlib.Path(__file__).resolve().parents[1]
    if shutil.which("git") is None or not (repo / ".git").exists():
        pytest.skip("not a git checkout")
    record = "results/paper-table/runs/cola-seed0/summary.json"
    ignored = subprocess.run(["git", "check-ignore", "-q", record], cwd=repo).returncode
    assert ignored == 1, f"{record} is gitignored"
    assert subprocess.run(["git", "check-ignore", "-q", "runs/cola-seed0/summary.json"], cwd=repo).returncode == 0


def test_run_script_skips_recorded_runs_and_runs_the_tasks_asked_for(tmp_path):
    """run.sh with a stand-in `python` that logs each call and leaves the files the real one would:
    a recorded run is not trained again, TASKS picks the tasks and their order, a task is benchmarked
    when the table has no current report for it (none yet, or one of a run no record has), and every
    finished run's record lands in OUT/runs/. Whether a report is current is the table's rule
    (`test_a_report_of_a_run_no_record_has_is_marked`); the stand-in table calls the reports this
    test marks "stale" not current."""
    if shutil.which("bash") is None:
        pytest.skip("no bash")
    script = pathlib.Path(__file__).resolve().parents[1] / "results" / "paper-table" / "run.sh"
    stub = tmp_path / "bin" / "python"
    stub.parent.mkdir()
    stub.write_text(
        '#!/usr/bin/env bash\n'
        '[ "$1" = -c ] && exec "$REAL_PYTHON" "$@"\n'
        'echo "$3 $*" >> "$CALLS"\n'
        'args=("$@"); for i in "${!args[@]}"; do [ "${args[$i]}" = --out ] && out=${args[$((i+1))]}; '
        '[ "${args[$i]}" = --run ] && run=$(basename "${args[$((i+1))]}"); done\n'
        'case $3 in\n'
        '  train) mkdir -p "$out"; for f in summary task retention; do echo "{}" > "$out/$f.json"; done ;;\n'
        '  bench) mkdir -p "$out"; echo "{}" > "$out/benchmark-${run%-seed*}.json" ;;\n'
        '  analyze) "$REAL_PYTHON" -c "$STAND_IN_TABLE" "$out" ;;\n'
        'esac\n')
    stub.chmod(0o755)
    stand_in_table = (
        "import json, pathlib, sys\n"
        "out = pathlib.Path(sys.argv[1])\n"
        "rows = [{'task': p.parent.name[len('bench-'):], 'speedup': {'matches_a_record': 'stale' not in p.read_text()}}\n"
        "        for p in out.glob('bench-*/benchmark-*.json')]\n"
        "(out / 'paper-table.json').write_text(json.dumps({'rows': rows}))\n")
    out = tmp_path / "out"
    (out / "runs" / "mrpc-seed0").mkdir(parents=True)
    (out / "runs" / "mrpc-seed0" / "summary.json").write_text("{}")
    (out / "bench-rte").mkdir()
    (out / "bench-rte" / "benchmark-rte.json").write_text('{"stale": true}')
    env = {"PATH": f"{stub.parent}:/usr/bin:/bin", "CALLS": str(tmp_path / "calls"), "TASKS": "rte mrpc",
           "REAL_PYTHON": sys.executable, "STAND_IN_TABLE": stand_in_table}
    subprocess.run(["bash", str(script), str(tmp_path / "work"), str(out)], env=env, check=True)
    calls = (tmp_path / "calls").read_text().splitlines()

    def outs(command):
        return [c.split("--out ")[1].split()[0] for c in calls if c.startswith(command)]

    assert outs("train") == [str(tmp_path / "work" / n) for n in
                             ("rte-seed0", "rte-seed1", "mrpc-seed1", "rte-seed2", "mrpc-seed2")]
    assert outs("bench") == [str(out / "bench-rte"), str(out / "bench-mrpc")]
    assert sorted(p.name for p in (out / "runs").iterdir()) == [
        f"{t}-seed{s}" for t in ("mrpc", "rte") for s in range(3)]
    # After every run, and again after each benchmark.
    assert sum(c.startswith("analyze") for c in calls) == 7
    # A seeded 1,000 dev examples are benchmarked, 200 of RACE's questions (4 options each).
    assert all(" --subset 1000 " in c for c in calls if c.startswith("bench"))
    subprocess.run(["bash", str(script), str(tmp_path / "work"), str(tmp_path / "race")],
                   env={**env, "TASKS": "race"}, check=True)
    race_bench = [c for c in (tmp_path / "calls").read_text().splitlines()[len(calls):] if c.startswith("bench")]
    assert len(race_bench) == 1 and " --subset 200 " in race_bench[0]
    typo = subprocess.run(["bash", str(script), str(tmp_path / "work"), str(out)], capture_output=True, text=True,
                          env={**env, "TASKS": "rte mprc"})
    assert typo.returncode == 2 and "no budget for task 'mprc'" in typo.stderr
