"""`run_benchmark`: the measurement behind `powerbert bench` (CLI in `benchmarks.cli`).

Every variant (`benchmarks.variants.VARIANTS`) runs over the same tokenized dev sentences at
every batch size, interleaved: for each repeat, for each batch size, every variant runs one pass,
in an order rotated by one each time, so slow drifts of a shared machine hit all variants alike.
Statistics are pure functions in `benchmarks.stats`; the report is written by
`benchmarks.report`.
"""

import gc
import os
import sys
import time

import numpy as np

from benchmarks.machine import PeakRss, load_average, machine_info, rss_kb
from benchmarks.report import final_line, method_notes, write_report
from benchmarks.run_models import RunModels
from benchmarks.settings import (DEFAULT_BATCH_SIZES, DEFAULT_REPEATS, QUICK_BATCH_SIZES, QUICK_EXAMPLES,
                                 QUICK_REPEATS, BenchError)
from benchmarks import peers
from benchmarks.timing import assemble, time_pass, warm_up
from benchmarks.stats import (accuracy, kept_function, length_aware_rows, matmul_work, peer_comparison,
                              result_rows, rotated, token_layers, xla_rows)
from benchmarks.variants import (Exports, artifact_for, make_batches, make_runner, reference_ids,
                                 select_variants)
from serving.convert import ConversionError
from training.run_dir import RunDir, RunDirError

def run_benchmark(run_dir, *, out="results", data_dir=None, examples=None, tokenizer=None,
                  batch_sizes=None, repeats=None, variants=None, threads=2, quick=False, subset=None,
                  export_dir=None, command=None, log=print):
    """Benchmark a run directory's models; writes the report into `out` and returns it (a dict).

    Args:
        run_dir: `powerbert train --out` directory (config.json, finetune/ and retrain/model.keras,
            retention.json).
        examples: `training.data.Examples` or `(texts, labels)` instead of the task's dev split.
        tokenizer: a `BertTokenizer` (default: the vocabulary of the run's pretrained `init`).
        batch_sizes, repeats: default (1, 8, 32, 128) and 3; quick (1, 32) and 2.
        variants: ids, groups, runtimes or item numbers (`select_variants`); default all, quick
            `QUICK_VARIANTS`.
        threads: intra-op threads of TF (set if TF has not run anything yet), onnxruntime, LiteRT.
        subset: benchmark this many sentences (seeded random choice); quick default 256.
        export_dir: where exports and conversions are cached (default `<run>/bench/exports`).

    Raises:
        BenchError (a ValueError): bad run directory, missing models, options or data.
    """
    started = time.perf_counter()
    thread_info = set_threads(threads)
    from powerbert_tf import load_tokenizer
    from training.metrics import compute_metrics

    try:
        config = RunDir(run_dir).read_config()
        task = RunDir(run_dir).read_task()  # built-in or the user's own data
    except RunDirError as err:
        raise BenchError(str(err)) from None
    chosen = select_variants(variants, quick)
    batch_sizes = _positive_ints(batch_sizes or (QUICK_BATCH_SIZES if quick else DEFAULT_BATCH_SIZES), "batch sizes")
    repeats = repeats or (QUICK_REPEATS if quick else DEFAULT_REPEATS)
    if repeats < 1:
        raise BenchError(f"repeats must be >= 1, got {repeats}")
    # A relative model already scales with each input; per-batch scaling of it does not exist. The
    # length-aware form is rebuilt with significance ranking, so it would not be a static-selection
    # run's model.
    relative_skips = {v.id: "the run's retention is length-relative: power-dynamic is its dynamic form"
                      for v in chosen if v.model == "power-la" and config.relative_retention}
    relative_skips.update({v.id: f"the run re-trained with --word-selection {config.word_selection}, which has no "
                                 f"length-aware form" for v in chosen
                           if v.model == "power-la" and config.word_selection != "significance"})
    chosen = [v for v in chosen if v.id not in relative_skips]
    models = RunModels(run_dir, tokenizer or load_tokenizer(config.init), task,
                       needed={v.model for v in chosen})
    texts, text_b, options, labels, data_note = bench_examples(examples, task, data_dir,
                                                          subset or (QUICK_EXAMPLES if quick else None))
    features = bench_features(models.tokenizer, texts, text_b, options, models.max_length)
    n = len(features["input_ids"])
    if options is not None:
        data_note += (f"; {len(texts)} questions of {task.num_choices} options, each option timed as "
                      f"its own sequence (batch sizes count sequences)")
    load_start = load_average()
    log(f"bench {task.name}: {n} sentences, N={models.max_length}, batch sizes {list(batch_sizes)}, "
        f"{repeats} repeats, {len(chosen)} variants")

    # === Setup: models, exports, runners, batches, warm-up (all before any timing) ===
    for name in sorted({v.model for v in chosen}):
        models.get(name)
    exports = Exports(export_dir or os.path.join(run_dir, "bench", "exports"), models,
                      models.fingerprint(), log=log)
    runners, runner_s, runner_mb, skipped = _prepare_runners(chosen, models, exports, threads, log,
                                                             skipped=relative_skips)
    chosen = [v for v in chosen if v.id in runners]
    batches = {(batching, b): make_batches(features, b, *batching) for batching in {v.batching for v in chosen}
               for b in batch_sizes}
    warmup = {}
    for b in batch_sizes:
        for v in chosen:
            # XLA compiles once per shape: every shape is warmed up, dynamic or not.
            warmup[(v.id, b)] = warm_up(runners[v.id], batches[(v.batching, b)],
                                         v.dynamic and v.runtime != "xla")
        log(f"  warm-up batch {b}: " + ", ".join(f"{v.id} {warmup[(v.id, b)]['first_call_s']:.1f}s"
                                                 for v in chosen))

    measurements = _rounds(chosen, runners, batches, batch_sizes, repeats, n, log)

    # === Statistics ===
    for (vid, b), m in measurements.items():
        v = next(x for x in chosen if x.id == vid)
        plan = batches[(v.batching, b)]
        logits = m.pop("logits").reshape(len(labels), -1) if options is not None else m.pop("logits")
        bert_config = models.get(v.model).encoder.bert_config
        kept = kept_function(v.model, bert_config.num_hidden_layers, models.retention)
        m["token_layers"] = token_layers(plan.shapes, kept)
        m["matmul_work"] = matmul_work(plan.shapes, kept, bert_config.hidden_size, bert_config.intermediate_size,
                                       cls_shortcut=v.model == "power")
        m["accuracy"] = accuracy(logits, labels) if task.num_labels > 1 else None
        m["extra_metric"] = compute_metrics(task, labels, logits)["primary"]
        m["extra"] = {"model": v.model, "runtime": v.runtime, "item": v.item, "metric": m.pop("extra_metric"),
                      "first_call_s": warmup[(vid, b)]["first_call_s"], "batches_per_pass": len(plan.shapes)}
    refs = reference_ids(chosen)
    rows = result_rows(measurements, n, refs)
    report = {
        "task": task.name, "metric": task.primary_metric, "init": config.init, "run": portable_path(run_dir), "quick": quick,
        "command": command or " ".join(["powerbert"] + sys.argv[1:]),
        "split": "dev", "data": data_note, "n_examples": n, "max_length": models.max_length,
        "multiple_choice": options is not None,
        "retention": list(models.retention.lengths) if models.retention else None,
        "relative_retention": bool(models.retention and models.retention.relative),
        "flop_bound": models.retention.flop_ratio if models.retention else None,
        "batch_sizes": list(batch_sizes), "repeats": repeats, "threads": thread_info,
        "machine": machine_info(), "references": refs,
        "variants": [{"id": v.id, "item": v.item, "description": v.description} for v in chosen],
        "skipped": skipped,
        "setup": {"model_load_s": models.load_seconds, "model_load_rss_mb": models.load_rss_mb,
                  "export_s": exports.seconds, "export_reused": exports.reused,
                  "export_dir": portable_path(exports.directory),
                  "runner_load_s": runner_s, "runner_load_rss_mb": runner_mb,
                  "warmup": {f"{vid}@{b}": w for (vid, b), w in warmup.items()}},
        "rows": rows, "xla": xla_rows(rows, warmup), "length_aware": length_aware_rows(rows),
        "peer_comparison": peer_comparison(rows),
        "fused_operators": {artifact_for(v): peers.read_fused_operators(exports.path(artifact_for(v)))
                            for v in chosen if v.runtime in peers.PEER_KINDS},
        "method": method_notes(PeakRss().method),
    }
    report["final_line"] = final_line(report)
    report["load_average"] = {"start": load_start, "end": load_average()}
    report["wall_seconds"] = time.perf_counter() - started
    report["paths"] = write_report(report, out)
    return report


# === Pieces ===

def portable_path(path):
    """`path` relative to the working directory (the repository when run from it): a report
    names no directory of the machine it was made on."""
    return os.path.relpath(path)


def set_threads(threads):
    import tensorflow as tf

    if threads is not None:
        if threads < 1:
            raise BenchError(f"--threads must be >= 1, got {threads}")
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:  # TF already ran something in this process: keep its settings
            pass
    return {"requested": threads, "tf_intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
            "tf_inter_op": tf.config.threading.get_inter_op_parallelism_threads()}


def _positive_ints(values, what):
    values = tuple(int(v) for v in values)
    if not values or min(values) < 1 or len(set(values)) != len(values):
        raise BenchError(f"{what} must be distinct positive integers, got {list(values)}")
    return values


def bench_features(tokenizer, texts, text_b, options, max_length):
    """int32 (n, N) features of the benchmarked sentences; for multiple choice, of the n * C
    option sequences (question q's options in rows q * C .. q * C + C - 1)."""
    if options is None:
        return {k: v.numpy() for k, v in tokenizer(texts, text_b, max_length=max_length).items()}
    features = tokenizer.multiple_choice(texts, text_b, np.asarray(options, object), max_length=max_length)
    return {k: v.numpy().reshape(-1, max_length) for k, v in features.items()}


def bench_examples(examples, task, data_dir, subset):
    """(texts, texts_b or None, options or None, int labels, description) of the benchmarked
    examples (options: multiple choice)."""
    from training.data import DataError, read_split, resolve_data_dir
    from training.input_pipeline import subset_indices

    if examples is None:
        examples = read_split(task, "dev", data_dir)  # DataError (a ValueError) names the file
        try:
            note = f"{os.path.relpath(examples.path, resolve_data_dir(data_dir))} under the data directory"
        except DataError:  # the user's own files: no data directory involved
            note = os.path.basename(examples.path)
    else:
        note = "examples passed in"
    if isinstance(examples, tuple):
        texts, labels = examples
        text_b = options = None
    else:
        texts, text_b, options, labels = examples.text, examples.text_b, examples.options, examples.labels
    if labels is None:
        raise BenchError("the benchmark needs labelled sentences (accuracy); these have no labels")
    if len(texts) == 0 or len(texts) != len(labels):
        raise BenchError(f"{len(texts)} sentences for {len(labels)} labels")
    keep = subset_indices(len(texts), subset, 0)
    if len(keep) < len(texts):
        note += f", seeded random subset of {len(keep)} of {len(texts)}"
    pick = lambda seq: None if seq is None else [seq[i] for i in keep]
    return pick(list(texts)), pick(text_b), pick(options), np.asarray(labels)[keep], note


def _prepare_runners(chosen, models, exports, threads, log, skipped=None):
    """Make the exports each variant needs and load its runner; a variant whose conversion or
    runtime fails (`ConversionError`, e.g. onnxruntime or torch missing) is skipped, the rest
    still run."""
    runners, seconds, rss_mb, skipped = {}, {}, {}, dict(skipped or {})
    for v in chosen:  # every conversion first, so its garbage is not counted as a runner's memory
        try:
            if artifact_for(v):
                exports.path(artifact_for(v))
        except ConversionError as err:
            skipped[v.id] = str(err)
            log(f"  skipping {v.id}: {err}")
    for v in chosen:
        if v.id in skipped:
            continue
        gc.collect()
        try:
            before, t0 = rss_kb(), time.perf_counter()
            runners[v.id] = make_runner(v, models, exports, threads)
            seconds[v.id], rss_mb[v.id] = time.perf_counter() - t0, (rss_kb() - before) / 1024
        except ConversionError as err:
            skipped[v.id] = str(err)
            log(f"  skipping {v.id}: {err}")
    if not runners:
        raise BenchError(f"no variant could be prepared: {skipped}")
    return runners, seconds, rss_mb, skipped


def _rounds(chosen, runners, batches, batch_sizes, repeats, n, log):
    """The interleaved rounds; {(variant id, batch): pass times, batch latencies, peak RSS and
    (from the first repeat) the logits in sentence order}. One progress line per round."""
    measurements = {(v.id, b): {"pass_seconds": [], "latencies": [], "peak_rss_mb": []}
                    for b in batch_sizes for v in chosen}
    for r in range(repeats):
        for i, b in enumerate(batch_sizes):
            done = []
            for v in rotated(chosen, r * len(batch_sizes) + i):
                plan, m = batches[(v.batching, b)], measurements[(v.id, b)]
                gc.collect()
                with PeakRss() as memory:
                    latencies, outputs = time_pass(runners[v.id], plan)
                m["pass_seconds"].append(float(latencies.sum()))
                m["latencies"].append(latencies)
                m["peak_rss_mb"].append(memory.peak_mb)
                if r == 0:
                    m["logits"] = assemble(outputs, plan.indices, n)
                done.append(f"{v.id} {latencies.sum():.2f}s")
            log(f"  round {r + 1}/{repeats} batch {b}: " + ", ".join(done))
    return measurements
