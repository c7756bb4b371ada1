"""Writes a `powerbert bench` report: `benchmark-<task>.md`, `.json` and `.png` (accuracy vs time)."""

import json
import os

import numpy as np

from benchmarks.stats import find_row


def _f(value, spec=".2f", suffix=""):
    return "-" if value is None else f"{value:{spec}}{suffix}"


def _pct(value):
    return "-" if value is None else f"{100 * value:.2f}"


def report_paths(out_dir, task, quick=False):
    stem = os.path.join(out_dir, f"benchmark-{task}{'-quick' if quick else ''}")
    return {"md": stem + ".md", "json": stem + ".json", "png": stem + ".png"}


def find_report_json(directory):
    """The one full (not `--quick`) report's JSON in a `powerbert bench --out` directory.

    Raises:
        FileNotFoundError: none there, or several (name the file instead).
    """
    found = sorted(name for name in os.listdir(directory)
                   if name.startswith("benchmark-") and name.endswith(".json") and not name.endswith("-quick.json"))
    if len(found) != 1:
        what = "no benchmark-<task>.json" if not found else f"several reports ({', '.join(found)}); give one file"
        raise FileNotFoundError(f"{directory} has {what}")
    return os.path.join(directory, found[0])


def write_report(report, out_dir):
    """Write the three files; returns their paths."""
    os.makedirs(out_dir, exist_ok=True)
    paths = report_paths(out_dir, report["task"], report["quick"])
    with open(paths["json"], "w") as f:
        json.dump(_jsonable(report), f, indent=2)
    with open(paths["md"], "w") as f:
        f.write(markdown(report))
    plot_accuracy_vs_time(report, paths["png"])
    return paths


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float):
        return round(value, 6)
    return value


def plot_batch(report):
    sizes = report["batch_sizes"]
    return 32 if 32 in sizes else max(sizes)


def markdown(report):
    m, setup = report["machine"], report["setup"]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v)
    refs = report["references"]
    lines = [
        f"# Inference benchmark: {report['task']} ({report['init']}, N={report['max_length']})", "",
        f"Command: `{report['command']}`", "",
        f"- Date: {m['date_utc']}; {report['wall_seconds']:.0f} s wall in total.",
        f"- Machine: {m.get('usable_cpus', m['logical_cpus'])} usable of {m['logical_cpus']} logical CPUs, "
        f"{m.get('cpu_model', '?')} ({', '.join(m.get('simd', []))}), {m.get('mem_total_gb', '?')} GB RAM; "
        f"load average (1/5/15 min) {report['load_average']['start']} at start, "
        f"{report['load_average']['end']} at the end.",
        f"- Versions: {versions}, Python {m['python']}.",
        f"- Threads: {report['threads']['requested']} requested; TF intra-op "
        f"{report['threads']['tf_intra_op'] or 'default (all cores)'}, inter-op "
        f"{report['threads']['tf_inter_op'] or 'default'}; onnxruntime "
        f"and LiteRT {report['threads']['requested']} (onnxruntime spinning off).",
        f"- Data: {report['n_examples']} {report['split']} sentences ({report['data']}); "
        f"{report['repeats']} repeats; batch sizes {', '.join(map(str, report['batch_sizes']))}.",
        f"- Retention l_j = {report['retention']}"
        + (" (length-relative: input i keeps ceil(l_j*n_i/N))" if report.get("relative_retention") else "")
        + f"; FLOP bound L*N/sum(l_j) = {_f(report['flop_bound'])}x.",
        f"- Speedup references: " + ", ".join(f"({k}) `{v}`" for k, v in refs.items()) + ".", ""]
    metric = report["metric"]
    other = metric != "accuracy"  # e.g. MRPC's F1, shown next to accuracy
    metric_head, metric_rule = (f" | {metric} %", "---|") if other else ("", "")
    if report.get("peer_comparison"):
        lines += ["## Against the strongest alternatives", "",
                  "The peers are built from the same fine-tuned BERT: `peer` = ONNX Runtime's "
                  "transformer-optimized graph on length-sorted dynamic batches (float32), `peer-int8` = "
                  "the same graph with int8 weights. x > 1: PoWER-BERT is faster; x < 1: it loses.", "",
                  "| batch | deployment | variant | examples/s | accuracy % | x vs peer | x vs peer-int8 |",
                  "|---|---|---|---|---|---|---|"]
        for r in report["peer_comparison"]:
            lines.append(f"| {r['batch_size']} | {r['deployment']} | `{r['variant']}` | {r['examples_per_s']:.1f} | "
                         f"{_pct(r['accuracy'])} | {_f(r['x_vs_peer'])} | {_f(r['x_vs_peer_int8'])} |")
        lines.append("")
    if report.get("fused_operators"):
        lines += ["Fused operators of the peer graphs (ONNX Runtime optimizer's statistics): "
                  + "; ".join(f"`{name}`: " + ", ".join(f"{op} {n}" for op, n in ops.items())
                              for name, ops in report["fused_operators"].items()), ""]
    lines += ["## Headline: each PoWER-BERT variant against BERT in the same runtime and padding", "",
              "| batch | variant | own BERT | x vs own BERT | work bound | of bound % |", "|---|---|---|---|---|---|"]
    for r in report["rows"]:
        own = r["like_for_like"]
        if own["baseline"]:
            lines.append(f"| {r['batch_size']} | `{r['variant']}` | `{own['baseline']}` | {_f(own['speedup'])} | "
                         f"{_f(own['work_bound'])} | {_pct(own['achieved'])} |")
    lines.append("")
    for batch in report["batch_sizes"]:
        lines += [f"## Batch size {batch}", "",
                  "| variant | item | examples/s | pass s: median (min-max) | p50 ms/batch | p99 ms/batch "
                  f"| peak MB | accuracy %{metric_head} | x vs own BERT | of own bound % | x vs 1 | x vs 2 | x vs 4 "
                  "| x vs peer | x vs peer-int8 | work bound | achieved vs 1 | MAC bound | achieved vs 1 |",
                  "|---|---|---|---|---|---|---|---|" + metric_rule + "---|---|---|---|---|---|---|---|---|---|---|"]
        for r in (r for r in report["rows"] if r["batch_size"] == batch):
            s = r["speedup"]
            metric_cell = f" | {_pct(r['metric'])}" if other else ""
            lines.append(
                f"| `{r['variant']}` | {r['item']} | {r['examples_per_s']:.1f} | {r['median_s']:.3f} "
                f"({r['min_s']:.3f}-{r['max_s']:.3f}) | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
                f"{_f(r['peak_rss_mb'], '.0f')} | {_pct(r['accuracy'])}{metric_cell} | "
                f"{_f(r['like_for_like']['speedup'])} | {_pct(r['like_for_like']['achieved'])} | {_f(s.get('1'))} | "
                f"{_f(s.get('2'))} | {_f(s.get('4'))} | {_f(s.get('peer'))} | {_f(s.get('peer-int8'))} | "
                f"{_f(r['work_bound'])} | {_f(r['bound_achieved'])} | "
                f"{_f(r.get('matmul_bound'))} | {_f(r.get('matmul_achieved'))} |")
        lines.append("")
    if report["xla"]:
        lines += ["## XLA (exported `serving_default` with `jit_compile=True`, fixed shapes)", "",
                  "Against the same model's export without XLA. XLA compiles once per input shape (a pass at batch B has up to two: full batches "
                  "and the remainder). Compile s = first call minus second call, summed over the "
                  "shapes; ms/batch = median pass time / batches; break-even = batches after which the time saved per batch repays the compilation.", "",
                  "| batch | model | shapes | compile s | without XLA ms/batch | XLA ms/batch | steady speedup "
                  "| break-even batches | = passes |", "|---|---|---|---|---|---|---|---|---|"]
        for x in report["xla"]:
            lines.append(f"| {x['batch_size']} | {x['model']} | {x['shapes']} | {x['compile_s']:.1f} | "
                         f"{_f(x['plain_ms_per_batch'], '.1f')} | {x['xla_ms_per_batch']:.1f} | {_f(x['steady_speedup'])} | "
                         f"{_f(x['breakeven_batches'], 'd')} | {_f(x['breakeven_passes'], '.1f')} |")
        lines.append("")
    if report["length_aware"]:
        how = ("`power-dynamic` is length-relative: input i keeps ceil(l_j*n_i/N) of its own n_i "
               "real tokens in layer j, whatever the padding, so its answers equal those at N."
               if report.get("relative_retention") else
               "`power-dynamic` keeps min(l_j, T) word vectors in layer j: the same real tokens as "
               "at N, since padding ranks last and never acts on real tokens. `power-la-dynamic` "
               "(length-aware) keeps ceil(l_j*T/N).")
        lines += ["## PoWER-BERT on dynamic padding (item 6)", "",
                  f"Batches sorted by length and padded to their longest, T. {how} Accuracy cost = "
                  "accuracy minus that of BERT with dynamic padding (item 2), in points.", "",
                  "| batch | variant | accuracy % | BERT dynamic % | cost (points) | PoWER at N % "
                  "| x vs 2 | x vs 1 |", "|---|---|---|---|---|---|---|---|"]
        for x in report["length_aware"]:
            lines.append(f"| {x['batch_size']} | `{x['variant']}` | {_pct(x['accuracy'])} | "
                         f"{_pct(x['bert_dynamic_accuracy'])} | {_f(x['cost_points'], '+.2f')} | "
                         f"{_pct(x['power_accuracy'])} | {_f(x['speedup_vs_2'])} | {_f(x['speedup_vs_1'])} |")
        lines.append("")
    lines += ["## Setup costs", "",
              "| what | seconds | RSS MB |", "|---|---|---|"]
    for name, sec in setup["model_load_s"].items():
        lines.append(f"| load model `{name}` | {sec:.1f} | {_f(setup['model_load_rss_mb'].get(name), '.0f')} |")
    for name, sec in setup["export_s"].items():
        lines.append(f"| make `{name}` | {sec:.1f} | |")
    for name in setup.get("export_reused", []):
        lines.append(f"| `{name}` reused from {setup['export_dir']} | - | |")
    for name, sec in setup["runner_load_s"].items():
        lines.append(f"| load runner `{name}` | {sec:.2f} | {_f(setup['runner_load_rss_mb'].get(name), '.0f')} |")
    lines += ["", "## Method", ""] + [f"- {line}" for line in report["method"]] + [""]
    if report.get("skipped"):
        lines += ["## Skipped variants", ""] + [f"- `{k}`: {v}" for k, v in report["skipped"].items()] + [""]
    lines += ["## Variants", ""] + [f"- `{v['id']}` (item {v['item']}): {v['description']}"
                                    for v in report["variants"]] + [""]
    lines += [report["final_line"], ""]
    return "\n".join(lines)


def plot_points(report):
    """(variant, runtime, ms per example, metric in %) at `plot_batch`, for variants that were scored.

    The y value is the task's own metric (`report["metric"]`: F1, MCC, Spearman, accuracy), which a
    regression task has where it has no accuracy."""
    batch = plot_batch(report)
    return [(r["variant"], r["runtime"], r["ms_per_example"], 100 * r["metric"]) for r in report["rows"]
            if r["batch_size"] == batch and r.get("metric") is not None]


def plot_accuracy_vs_time(report, path):
    """The task's dev metric against milliseconds per example, one point per variant, at `plot_batch`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    batch = plot_batch(report)
    colors = {"bert-padded": "tab:blue", "bert-dynamic": "tab:cyan", "power": "tab:red",
              "power-dynamic": "tab:olive", "power-la-dynamic": "tab:green", "peer-ort-padded": "black",
              "peer-ort-dynamic": "black", "peer-ort-int8-dynamic": "dimgray", "peer-hf-dynamic": "tab:brown"}
    markers = {"saved_model": "o", "keras": "^", "xla": "*", "onnx": "s", "tflite": "D", "tflite_int8": "d",
               "ort_optimized": "P", "ort_int8": "X", "torch_eager": "v"}
    fig, ax = plt.subplots(figsize=(10, 5.5))
    for variant, runtime, ms, value in plot_points(report):
        ax.scatter(ms, value, color=colors.get(variant.split(":")[0], "gray"),
                   marker=markers.get(runtime, "x"), s=60, alpha=0.85, label=variant)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    ax.set_xlabel(f"milliseconds per example (median pass / examples, batch {batch})")
    ax.set_ylabel(f"{report['split']} {report['metric']} (%)")
    ax.set_title(f"{report['task']}: {report['metric']} vs inference time ({report['n_examples']} examples, "
                 f"{report['threads']['requested']} threads)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def method_notes(memory_method):
    return [
        "One process; exports, conversions and model loads happen before any timing. Sentences "
        "are tokenized once beforehand (tokenization is not timed); batches are pre-sliced int32 "
        "arrays. Fixed-shape variants pad to N in file order; dynamic ones sort by length "
        "(stable) and pad each batch to its longest.",
        "Each (variant, batch size) is warmed up first (every distinct shape called twice).",
        "Rounds: for each repeat, for each batch size, every variant runs one full pass, in an "
        "order rotated by one per round. A batch's latency is the wall time of the call "
        "including the copy of the logits to NumPy; a pass's time is the sum of its batches.",
        "examples/s = sentences / median pass time over repeats; min-max show the spread; p50/p99 "
        "are percentiles of the batch latencies of all repeats pooled. Speedup x vs k = median "
        "pass time of reference k at the same batch size / this variant's.",
        "x vs own BERT (the headline, like for like) = BERT with the same runtime and the same "
        "padding (fixed N or dynamic) / this variant, so a faster runtime is not counted as "
        "pruning; of own bound = that speedup / (token-layers of that BERT / this variant's), in %.",
        "Work bound = token-layers of variant 1 / this variant's (a layer keeping t word vectors "
        "of a batch of B costs B*t; the attention's T^2 term and the embeddings are ignored). For "
        "PoWER-BERT at N it is the paper's FLOP bound L*N/sum(l_j). Achieved = (x vs 1) / bound.",
        "MAC bound = multiply-accumulates of variant 1's encoder layers / this variant's, counted "
        "as the layers compute them: a layer's query/key/value projections and attention run on "
        "the vectors entering it (only [CLS]'s query in a PoWER-BERT layer keeping one), its "
        "output projection and feed-forward on the vectors it keeps. It is the speedup if every "
        "multiply-accumulate ran at the same speed and nothing else cost time; achieved = "
        "(x vs 1) / MAC bound.",
        f"Peak memory of a pass: {memory_method}; the table shows the largest over repeats. It "
        "counts what a pass allocates beyond what is already resident (weights, runtime arenas "
        "kept from earlier passes), so it measures activations, not the model; model and runner "
        "load costs are under Setup costs.",
        "Accuracy: argmax of the logits of the first repeat's pass, all sentences, against the labels.",
    ]


def final_line(report):
    """`[quick ]bench <task>: PoWER-BERT 2.61x faster than padded baseline (batch 32)`."""
    batch = plot_batch(report)
    prefix = f"{'quick ' if report['quick'] else ''}bench {report['task']}"
    vs_peer = [r for r in report.get("peer_comparison", [])
               if r["batch_size"] == batch and r["deployment"] == "best PoWER-BERT float32" and r["x_vs_peer"]]
    if vs_peer:
        r = vs_peer[0]
        return (f"{prefix}: PoWER-BERT ({r['variant']}) {r['x_vs_peer']:.2f}x ONNX Runtime's optimized BERT "
                f"on dynamic batches (batch {batch}, float32)")
    power = find_row(report["rows"], batch, "power:saved_model", "power:keras")
    if power is None or power["speedup"].get("1") is None:
        return f"{prefix}: no PoWER-BERT vs padded-baseline comparison (references {report['references']})"
    return f"{prefix}: PoWER-BERT {power['speedup']['1']:.2f}x faster than padded baseline (batch {batch})"
