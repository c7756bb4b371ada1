"""`powerbert analyze pareto`: accuracy against inference time for PoWER-BERT and its baselines
(supplementary section 1.2, Figure 2), every point timed in one run.

Points: the fine-tuned teacher (BERT), each PoWER-BERT run's re-trained model (a lambda sweep is
several runs), and every point of the baseline directories (`training.baselines`). All run as
in-memory Keras models in a `tf.function` (the bench's `keras` runtime) over the same dev
sentences and batches, interleaved (every repeat runs every point once, in a rotated order), in
two batchings: padded to N (the paper's setting) and length-sorted dynamic batches (what a user
deploys). The metric of each point comes from the logits of its own timed pass.
"""

import gc
import os
import sys
import time

import numpy as np

from benchmarks.machine import machine_info
from benchmarks.settings import BenchError
from benchmarks.stats import pass_summary, rotated
from benchmarks.timing import assemble, keras_runner, time_pass, warm_up
from benchmarks.variants import make_batches

BATCHINGS = ("padded", "dynamic")


# === Pure functions (tested by hand) ===

def group_mean(values):
    """(mean, sample std or None for one value) of a list of floats."""
    values = np.asarray(values, np.float64)
    return float(values.mean()), (float(values.std(ddof=1)) if values.size > 1 else None)


def pareto_front(points):
    """Indices of the points no other point beats on both axes (less time, higher metric), sorted
    by time. `points`: list of (seconds, metric)."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -np.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def summarize_groups(rows, metric_key="metric"):
    """Rows of the same (method, setting) averaged over seeds.

    Args:
        rows: dicts with `method`, `setting`, `seed`, `metric` and per-batching `ms_per_example`.
    Returns:
        one dict per group, in first-seen order: method, setting, seeds, metric_mean, metric_std,
        and per batching the mean ms per example.
    """
    groups = {}
    for row in rows:
        groups.setdefault((row["method"], row["setting"]), []).append(row)
    out = []
    for (method, setting), members in groups.items():
        mean, std = group_mean([m[metric_key] for m in members])
        entry = {"method": method, "setting": setting, "seeds": [m["seed"] for m in members],
                 "metric_mean": mean, "metric_std": std}
        for batching in BATCHINGS:
            entry[f"ms_{batching}"] = float(np.mean([m["ms_per_example"][batching] for m in members]))
        out.append(entry)
    return out


# === Collecting the points ===

def collect_points(teacher, power_runs, baseline_dirs):
    """[(point description, loader)]: the teacher, PoWER-BERT runs, baseline points."""
    from training.baselines.baseline_dir import BaselineDir, BaselineDirError
    from training.run_dir import RunDir, RunDirError

    points = []
    try:
        run = RunDir(teacher)
        config = run.read_config()
        run.require_model("finetune")
        points.append(({"method": "BERT", "setting": "fine-tuned", "seed": config.seed,
                        "source": os.path.relpath(teacher)},
                       lambda: run.load_model("finetune", compile=False)))
        for path in power_runs:
            power = RunDir(path)
            power_config, retention = power.check(need=("retrain",))
            points.append(({"method": "PoWER-BERT", "setting": f"lambda {power_config.lambda_:g}",
                            "seed": power_config.seed, "retention": list(retention.lengths),
                            "flop_ratio": retention.flop_ratio, "source": os.path.relpath(path)},
                           (lambda p=power: p.load_model("retrain", compile=False))))
    except RunDirError as err:
        raise BenchError(str(err)) from None
    for path in baseline_dirs:
        directory = BaselineDir(path)
        try:
            record = directory.read()
            for info in directory.points():
                desc = {"method": record["method"], "seed": record["settings"].get("seed", 0),
                        "source": os.path.relpath(directory.file(info["name"])), "stored_dev": info["dev"]}
                if "heads" in info:
                    desc["setting"] = f"{info['heads']}/{info['of_heads']} heads"
                else:
                    desc["setting"] = f"{info['layers']} layers"
                points.append((desc, (lambda d=directory, n=info["name"]: d.load_point(n))))
        except BaselineDirError as err:
            raise BenchError(str(err)) from None
    return points


# === The measurement ===

def run_pareto(teacher, power_runs=(), baseline_dirs=(), *, out, data_dir=None, batch_size=32, repeats=3,
               subset=None, log=print, command=None):
    """Time every point in both batchings and write `out/pareto.{json,md,png}`; returns the report."""
    from benchmarks.run import bench_examples, bench_features, set_threads
    from powerbert_tf import load_tokenizer
    from training.metrics import compute_metrics
    from training.run_dir import RunDir

    started = time.perf_counter()
    threads = set_threads(2)
    run = RunDir(teacher)
    config, task = run.read_config(), run.read_task()
    points = collect_points(teacher, power_runs, baseline_dirs)
    if task.is_multiple_choice:
        raise BenchError(f"{task.name} is a multiple-choice task; the baselines (students, Head-Prune) "
                         f"are built for classification and regression")
    texts, text_b, _, labels, data_note = bench_examples(None, task, data_dir, subset)
    features = bench_features(load_tokenizer(config.init), texts, text_b, None, config.max_length)
    batches = {"padded": make_batches(features, batch_size, False), "dynamic": make_batches(features, batch_size, True)}
    log(f"pareto {task.name}: {len(points)} points, {len(texts)} dev sentences, batch {batch_size}, {repeats} repeats")

    runners = {}
    for i, (desc, load) in enumerate(points):
        model = load()
        for batching in BATCHINGS:
            runners[(i, batching)] = keras_runner(model, None if batching == "dynamic" else config.max_length)
            warm_up(runners[(i, batching)], batches[batching], batching == "dynamic")
    seconds = {key: [] for key in runners}
    logits = {}
    for r in range(repeats):
        for batching in BATCHINGS:
            for i in rotated(list(range(len(points))), r):
                gc.collect()
                latencies, outputs = time_pass(runners[(i, batching)], batches[batching])
                seconds[(i, batching)].append((float(latencies.sum()), latencies))
                if r == 0:
                    logits[(i, batching)] = assemble(outputs, batches[batching].indices, len(texts))
        log(f"  round {r + 1}/{repeats} done")

    rows = []
    for i, (desc, _) in enumerate(points):
        timing = {b: pass_summary([s for s, _ in seconds[(i, b)]], [lat for _, lat in seconds[(i, b)]], len(texts))
                  for b in BATCHINGS}
        metrics = compute_metrics(task, labels, logits[(i, "dynamic")])
        padded_metric = compute_metrics(task, labels, logits[(i, "padded")])["primary"]
        rows.append(dict(desc, metric=metrics["primary"], metric_padded=padded_metric, metrics=metrics,
                         timing=timing, ms_per_example={b: timing[b]["ms_per_example"] for b in BATCHINGS}))
    teacher_ms = {b: rows[0]["ms_per_example"][b] for b in BATCHINGS}
    for row in rows:
        row["speedup"] = {b: teacher_ms[b] / row["ms_per_example"][b] for b in BATCHINGS}
    groups = summarize_groups(rows)
    for group in groups:
        group["speedup"] = {b: teacher_ms[b] / group[f"ms_{b}"] for b in BATCHINGS}
        group["on_front"] = {}
    for b in BATCHINGS:
        front = set(pareto_front([(g[f"ms_{b}"], g["metric_mean"]) for g in groups]))
        for i, group in enumerate(groups):
            group["on_front"][b] = i in front
    report = {"task": task.name, "metric": task.primary_metric, "data": data_note, "n_examples": len(texts),
              "max_length": config.max_length, "batch_size": batch_size, "repeats": repeats,
              "runtime": "in-memory Keras model in a tf.function (the bench's keras runtime)",
              "threads": threads, "machine": machine_info(), "rows": rows, "groups": groups,
              "command": command or " ".join(["powerbert"] + sys.argv[1:]),
              "wall_seconds": time.perf_counter() - started}
    report["paths"] = write_pareto_report(report, out)
    return report


# === Report ===

def write_pareto_report(report, out):
    import json

    os.makedirs(out, exist_ok=True)
    paths = {"json": os.path.join(out, "pareto.json"), "md": os.path.join(out, "pareto.md"),
             "png": os.path.join(out, "pareto.png")}
    with open(paths["json"], "w") as f:
        json.dump(report, f, indent=2, default=float)
    with open(paths["md"], "w") as f:
        f.write(pareto_markdown(report))
    plot_pareto(report, paths["png"])
    return paths


def pareto_markdown(report):
    metric = report["metric"]
    lines = [f"# Accuracy against inference time: {report['task']} dev ({report['n_examples']} examples)", "",
             f"Command: `{report['command']}`", "",
             f"Every point timed in this one run: {report['runtime']}, batch {report['batch_size']}, "
             f"{report['repeats']} interleaved repeats (median pass), N = {report['max_length']}. "
             f"*padded*: every batch padded to N (the paper's setting); *dynamic*: length-sorted batches "
             f"padded to their longest. Speed-up is against the fine-tuned BERT in the same batching "
             f"(* marks the points no other point beats on both time and {metric} in that batching). "
             f"{metric} comes from each model's own timed pass; mean +- std over the seeds listed.", "",
             f"| method | setting | seeds | dev {metric} | ms/example padded | speed-up padded | "
             f"ms/example dynamic | speed-up dynamic |", "|---|---|---|---|---|---|---|---|"]
    for g in report["groups"]:
        std = f" +- {100 * g['metric_std']:.2f}" if g["metric_std"] is not None else ""
        lines.append(f"| {g['method']} | {g['setting']} | {','.join(map(str, g['seeds']))} | "
                     f"{100 * g['metric_mean']:.2f}{std} | {g['ms_padded']:.3f} | {g['speedup']['padded']:.2f}x"
                     f"{'*' if g['on_front']['padded'] else ''} | {g['ms_dynamic']:.3f} | "
                     f"{g['speedup']['dynamic']:.2f}x{'*' if g['on_front']['dynamic'] else ''} |")
    lines += ["", "Points (one row per model):", "", "| method | setting | seed | source | dev " + metric +
              " | ms/example padded (min-max) | ms/example dynamic (min-max) |", "|---|---|---|---|---|---|---|"]
    for row in report["rows"]:
        cells = []
        for b in BATCHINGS:
            t = row["timing"][b]
            n = report["n_examples"]
            cells.append(f"{t['ms_per_example']:.3f} ({1000 * t['min_s'] / n:.3f}-{1000 * t['max_s'] / n:.3f})")
        lines.append(f"| {row['method']} | {row['setting']} | {row['seed']} | {row['source']} | "
                     f"{100 * row['metric']:.2f} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines) + "\n"


def plot_pareto(report, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    for ax, batching in zip(axes, BATCHINGS):
        methods = {}
        for g in report["groups"]:
            methods.setdefault(g["method"], []).append(g)
        for method, groups in methods.items():
            groups = sorted(groups, key=lambda g: g[f"ms_{batching}"])
            xs = [g[f"ms_{batching}"] for g in groups]
            ys = [100 * g["metric_mean"] for g in groups]
            errs = [100 * (g["metric_std"] or 0.0) for g in groups]
            ax.errorbar(xs, ys, yerr=errs, marker="o", capsize=3, label=method,
                        linestyle="none" if method == "BERT" else "-")
        ax.set_xlabel(f"ms per example ({batching}, batch {report['batch_size']})")
        ax.set_title(f"{report['task']}: {batching} batches")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"dev {report['metric']} (%)")
    axes[1].legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
