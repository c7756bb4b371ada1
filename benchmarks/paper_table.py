"""`powerbert analyze paper-table`: the paper's Table 2 for our runs, rebuilt from run directories and
benchmark reports.

One row per task (MNLI twice: matched and mismatched, as the paper): the dev metric of a constant
answer (the training split's most frequent label, read from the data: the floor a baseline must
clear for its loss to mean anything), BERT's and PoWER-BERT's dev
metric (mean +- std over the seeds given; one seed is shown as such), the loss in points, the
searched retention (word vectors kept per layer, mean over the seeds), its FLOP bound, and the
speed-up measured by `powerbert bench` at batch 32 against BERT padded to N and against BERT in
length-sorted dynamic batches; beside it the paper's
loss and speed-up (BERT-base, GLUE test, K80 GPU, batch 128: compare patterns, not numbers). Each
task's notes say what data and budget its runs used and where the protocol differs from the paper.
"""

import json
import os

from benchmarks.report import find_report_json
from benchmarks.settings import BenchError
from training.config import TrainConfig, differences_from_paper
from training.data import DataError, read_split
from training.input_pipeline import subset_indices
from training.metrics import constant_answer_metrics
from training.run_dir import RunDir
from training.seed_summary import checkpoint_choices, differing_settings, mean_std

# docs/METHOD.md, "Published results": (BERT-base, PoWER-BERT, speed-up) on GLUE test.
PAPER_TABLE_2 = {
    "cola": (52.5, 52.3, 4.5), "rte": (68.1, 67.4, 3.4), "qqp": (71.2, 70.2, 4.5),
    "mrpc": (88.7, 88.1, 2.7), "sst2": (93.0, 92.1, 2.4), "mnli-m": (84.6, 83.8, 2.6),
    "mnli-mm": (84.0, 83.1, 2.1), "qnli": (91.0, 90.1, 2.0), "stsb": (85.8, 85.1, 2.0),
}
ROW_ORDER = ("cola", "rte", "qqp", "mrpc", "sst2", "mnli-m", "mnli-mm", "qnli", "stsb", "imdb", "race")
TABLE_BATCH = 32
# The deployed form of each comparison; in-memory Keras when a report has no SavedModel rows.
_POWER_VARIANTS = {"padded": ("power:saved_model", "power:keras"),
                   "dynamic": ("power-dynamic:saved_model", "power-dynamic:keras")}
_REFERENCE = {"padded": "1", "dynamic": "2"}


def build_paper_table(run_dirs, bench_reports=(), batch_size=TABLE_BATCH, data_dir=None):
    """The table's rows from finished runs (any tasks, any seeds) and `powerbert bench` reports.

    Args:
        run_dirs: `powerbert train --out` directories whose three steps finished.
        bench_reports: `powerbert bench --out` directories or their `benchmark-<task>.json` files,
            at most one per task.
        data_dir: the data the runs read (default `$POWERBERT_DATA_DIR`), for the constant
            answer; a task whose data is missing or differs from its runs' gets none, and its note
            says why.

    Returns:
        {"rows": [...], "notes": {task: text}} in `ROW_ORDER`.

    Raises:
        BenchError: an unfinished run, runs of one task with other settings than the seed, two
            reports of one task, a report without batch `batch_size`.
    """
    by_task = {}
    for path in run_dirs:
        run = RunDir(path)
        summary = run.read_summary()
        if not summary or not summary.get("power_bert"):
            raise BenchError(f"{path} has not finished all three steps (no PoWER-BERT result in summary.json)")
        by_task.setdefault(summary["task"], []).append((summary, run.read_task()))
    speedups = _speedups(bench_reports, batch_size)
    rows, notes = [], {}
    for task, runs in by_task.items():
        _check_same_settings(task, [s for s, _ in runs])
        summaries = [s for s, _ in runs]
        notes[task] = _budget_note(summaries, runs[0][1])
        constant = _constant_answers(summaries, runs[0][1], data_dir)
        if isinstance(constant, str):
            notes[task] += f"; no constant answer: {constant}"
            constant = {}
        splits = [("dev", task)] + [(split, f"{task}-{'mm' if split == 'dev_mismatched' else split}")
                                    for split in runs[0][1].other_dev_splits]
        speedup = speedups.get(task)
        if speedup is not None:
            # A re-run of a seed may search a (slightly) different configuration than the run a
            # report measured; its speed-ups then belong to no record in the table.
            speedup = {**speedup, "matches_a_record": speedup["retention"] is None
                       or speedup["retention"] in [s["retention"] for s in summaries]}
        for split, row_name in splits:
            name = "mnli-m" if task == "mnli" and split == "dev" else row_name
            rows.append(_row(name, task, split, summaries, speedup, constant.get(split)))
    order = {name: i for i, name in enumerate(ROW_ORDER)}
    rows.sort(key=lambda r: (order.get(r["row"], len(order)), r["row"]))
    return {"rows": rows, "notes": notes, "batch_size": batch_size}


def _row(name, task, split, summaries, speedup, constant):
    def values(key):
        if split == "dev":
            return [s[key]["primary"] for s in summaries]
        return [s["other_dev"][split][key]["primary"] for s in summaries]

    base, power = values("baseline"), values("power_bert")
    paper = PAPER_TABLE_2.get(name)
    return {
        "row": name, "task": task, "split": split, "metric": summaries[0]["metric"],
        "seeds": [s["settings"]["seed"] for s in summaries],
        "constant_answer": None if constant is None else _spread(constant),
        "baseline": _spread(base), "power_bert": _spread(power),
        "loss_points": _spread([100 * (b - p) for b, p in zip(base, power)]),
        # Each seed's search finds its own configuration; the row shows their mean per layer.
        "retention": [round(sum(layer) / len(layer)) for layer in zip(*(s["retention"] for s in summaries))],
        "retention_per_seed": [s["retention"] for s in summaries],
        "flop_bound": _spread([s["flop_ratio"] for s in summaries]),
        "speedup": speedup,
        "paper": None if paper is None else {"bert": paper[0], "power_bert": paper[1],
                                             "loss_points": round(paper[0] - paper[1], 2), "speedup": paper[2]},
    }


def _spread(values):
    """(mean, std or None for one value)."""
    return (float(values[0]), None) if len(values) == 1 else mean_std(values)


def _constant_answers(summaries, task_spec, data_dir):
    """{dev split: the constant answer's primary metric on each seed's dev examples} (a seed's
    `dev_subset` draw is the pipeline's), or why it cannot be computed."""
    try:
        train = read_split(task_spec, "train", data_dir).labels
        scores = {}
        for split in ("dev",) + tuple(task_spec.other_dev_splits):
            labels = read_split(task_spec, split, data_dir).labels
            scores[split] = []
            for summary in summaries:
                config = TrainConfig.from_dict(summary["settings"])
                dev = labels[subset_indices(len(labels), config.dev_subset, config.seed)]
                evaluated = summary["dev_examples"] if split == "dev" else summary["other_dev_examples"][split]
                if len(dev) != evaluated:
                    return (f"the data directory's {split} split gives {len(dev)} examples, the seed "
                            f"{config.seed} run evaluated {evaluated} (other data than the runs read)")
                scores[split].append(constant_answer_metrics(task_spec, train, dev)["primary"])
    except DataError as err:
        return str(err)
    return scores


def _check_same_settings(task, summaries):
    differing = differing_settings(summaries)
    if differing:
        raise BenchError(f"the {task} runs differ in more than the seed: {', '.join(differing)}")
    seeds = [s["settings"]["seed"] for s in summaries]
    if len(set(seeds)) != len(seeds):
        raise BenchError(f"two {task} runs have the same seed {seeds}")


def _speedups(paths, batch_size):
    """{task: {"padded": x, "dynamic": x, "runtime": ..., "report": path}} from bench reports."""
    found = {}
    for path in paths:
        try:
            file = find_report_json(path) if os.path.isdir(path) else path
            with open(file) as f:
                report = json.load(f)
        except (OSError, json.JSONDecodeError) as err:
            raise BenchError(f"cannot read the benchmark report {path}: {err}") from None
        task = report["task"]
        if task in found:
            raise BenchError(f"two benchmark reports of {task}: {found[task]['report']} and {file}")
        rows = {row["variant"]: row for row in report["rows"] if row["batch_size"] == batch_size}
        if not rows:
            raise BenchError(f"{file} has no rows at batch {batch_size} (its batch sizes: {report['batch_sizes']})")
        entry = {"report": file, "run": report.get("run"), "retention": report.get("retention"), "runtime": {}}
        for batching, candidates in _POWER_VARIANTS.items():
            variant = next((v for v in candidates if v in rows), None)
            entry[batching] = rows[variant]["speedup"].get(_REFERENCE[batching]) if variant else None
            entry["runtime"][batching] = variant
        found[task] = entry
    return found


def _budget_note(summaries, task_spec):
    """What the task's runs trained on, and how that departs from the paper's protocol."""
    summary = summaries[0]
    config = TrainConfig.from_dict(summary["settings"])
    train = summary["train_examples"]
    parts = [f"N={summary['max_length']}",
             f"train examples fine-tune/search/re-train {train['finetune']}/{train['search']}/{train['retrain']}",
             "epochs " + "/".join(str(config.epochs_for(step)) for step in ("finetune", "search", "retrain")),
             f"dev {summary['dev_examples']} examples" + "".join(
                 f", {split} {n}" for split, n in (summary.get("other_dev_examples") or {}).items()),
             "checkpoints chosen on " + "; ".join(checkpoint_choices(summaries))]
    if task_spec.carved_split is not None:
        source, carved, fraction, seed = task_spec.carved_split
        parts.append(f"**protocol differs from the paper's**: {carved} is a seeded {fraction:.0%} of the "
                     f"{source} file {dict(task_spec.files)[source]} (seed {seed}), {source} the rest")
    # From the settings rather than the summary's own list, so records of every age read alike.
    changed = differences_from_paper(config, task_spec)
    if changed:
        parts.append("differs from the paper's setup: " + ", ".join(
            f"{k}={v['used']} (paper {'none' if v['paper'] is None else v['paper']})" for k, v in sorted(changed.items())))
    return "; ".join(parts)


def format_paper_table(table):
    """The Markdown table and its notes."""
    # Adding 0.0 turns the -0.0 that rounds a tiny float difference into 0.0, so equal means show no sign.
    two = lambda x: f"{round(x, 2) + 0.0:.2f}"
    pct = lambda pair, scale=100: (two(scale * pair[0]) if pair[1] is None
                                   else f"{two(scale * pair[0])} +- {two(scale * pair[1])}")
    ratio = lambda x: "-" if x is None else f"{x:.2f}x"
    b = table["batch_size"]
    unmatched = lambda speed: "\\*" if speed and not speed["matches_a_record"] else ""
    lines = [f"| task | metric | seeds | constant answer | BERT | PoWER-BERT | loss (points) | retention (seed mean) | "
             f"FLOP bound | speed-up vs padded (b{b}) | vs dynamic (b{b}) | paper: loss | paper: speed-up |",
             "|" + "---|" * 13]
    for r in table["rows"]:
        paper = r["paper"]
        speed = r["speedup"] or {}
        lines.append(
            f"| {r['row']} | {r['metric']} | {len(r['seeds'])} | "
            f"{'-' if r['constant_answer'] is None else pct(r['constant_answer'])} | {pct(r['baseline'])} | {pct(r['power_bert'])} | "
            f"{pct(r['loss_points'], 1)} | {','.join(map(str, r['retention']))} | {pct(r['flop_bound'], 1)}x | "
            f"{ratio(speed.get('padded'))}{unmatched(speed)} | {ratio(speed.get('dynamic'))}{unmatched(speed)} | "
            f"{'-' if paper is None else format(paper['loss_points'], '.1f')} | "
            f"{'-' if paper is None else ratio(paper['speedup'])} |")
    def measured_on(speed):
        run = os.path.basename(os.path.normpath(speed["run"] or "?"))
        if speed["matches_a_record"]:
            return f"on {run} ({speed['report']})"
        return (f"\\* on an earlier run named {run}, retention {','.join(map(str, speed['retention']))}, which no "
                f"record here has: re-run `powerbert bench` on a recorded run ({speed['report']})")

    measured = [f"{r['row']} {measured_on(r['speedup'])}" for r in table["rows"]
                if r["speedup"] and not r["row"].endswith("-mm")]
    if measured:
        lines += ["", "Speed-ups are each task's `powerbert bench` report, on one of its runs (that run's "
                  "retention, not the seed mean): " + "; ".join(measured) + "."]
    lines += ["", "The constant answer is the dev metric of always answering the training split's most frequent "
              "label (regression: its mean score; every correlation of a constant is 0): a BERT at this "
              "score learned nothing from its task, and PoWER-BERT's loss and speed-up on it measure no "
              "elimination cost.", "", "Data and budget per task:", ""]
    lines += [f"- **{task}**: {note}." for task, note in table["notes"].items()]
    return "\n".join(lines)


def write_paper_table(table, out, command):
    os.makedirs(out, exist_ok=True)
    md, js = os.path.join(out, "paper-table.md"), os.path.join(out, "paper-table.json")
    with open(md, "w") as f:
        f.write(f"# PoWER-BERT on every task (the paper's Table 2)\n\nMade by `{command}`.\n\n"
                + format_paper_table(table) + "\n")
    with open(js, "w") as f:
        json.dump({**table, "command": command}, f, indent=2)
    return md, js

