"""Statistics of `powerbert bench`: pure functions of recorded timings, predictions and shapes.

Nothing here measures anything, so every number in the report can be checked by hand (see
`tests/test_bench.py`). Conventions:
- a *pass* is one run of a variant over all benchmarked sentences at one batch size; its time is
  the sum of its batch latencies (tokenization and batch slicing are done beforehand, untimed);
- speedups and examples/second use the **median pass time over repeats**; min and max are shown
  to judge the noise; p50/p99 are percentiles of the per-batch latencies of all repeats pooled;
- the *work bound* of a variant is the token-layers of the padded baseline divided by its own:
  a layer that keeps t word vectors of a batch of B costs B*t. For PoWER-BERT at fixed N this is
  the paper's FLOP bound `L*N/sum(l_j)` (it ignores the attention's T^2 term and the embeddings).
"""

import math

import numpy as np


def accuracy(logits, labels):
    """Fraction of rows whose argmax over classes equals the label id.

    Args:
        logits: float (n, C) scores (or int (n,) class ids).
        labels: int (n,) label ids.
    """
    logits, labels = np.asarray(logits), np.asarray(labels)
    predicted = logits if logits.ndim == 1 else np.argmax(logits, axis=-1)
    if predicted.shape != labels.shape:
        raise ValueError(f"{predicted.shape[0] if predicted.ndim else 0} predictions for "
                         f"{labels.shape[0] if labels.ndim else 0} labels")
    if labels.size == 0:
        raise ValueError("accuracy of no examples")
    return float(np.mean(predicted == labels))


def pass_summary(pass_seconds, latencies, n_examples):
    """Median/min/max pass time, examples/second and batch-latency percentiles.

    Args:
        pass_seconds: one total time per repeat.
        latencies: per-batch seconds of every repeat (any nesting; flattened).
        n_examples: sentences in one pass.
    """
    times = np.asarray(pass_seconds, np.float64)
    lat = np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in latencies]) if len(latencies) else np.zeros(0)
    if times.size == 0 or lat.size == 0:
        raise ValueError("a variant needs at least one timed pass")
    median = float(np.median(times))
    return {"median_s": median, "min_s": float(times.min()), "max_s": float(times.max()),
            "repeats": int(times.size), "examples_per_s": n_examples / median,
            "ms_per_example": 1000.0 * median / n_examples,
            "p50_ms": 1000.0 * float(np.percentile(lat, 50)),
            "p99_ms": 1000.0 * float(np.percentile(lat, 99))}


def token_layers(batch_shapes, kept_per_layer):
    """Work of one pass: sum over batches of `B * sum_j kept_j(T)`.

    Args:
        batch_shapes: (B, T) per batch.
        kept_per_layer: T -> list of word vectors kept by each layer for inputs of length T.
    """
    return int(sum(b * sum(kept_per_layer(t)) for b, t in batch_shapes))


def layer_macs(t_in, t_out, hidden, intermediate, cls_only=False):
    """Multiply-accumulates of one encoder layer for one example, as `EncoderLayer` computes them.

    Keys and values of the `t_in` vectors entering the layer, queries of all of them (only
    [CLS]'s when `cls_only`: a hard layer keeping one vector), their attention scores and
    context, then output projection and feed-forward of the `t_out` vectors kept.
    """
    queries = 1 if cls_only else t_in
    attention = (2 * t_in + queries) * hidden * hidden + 2 * queries * t_in * hidden
    return attention + t_out * hidden * (hidden + 2 * intermediate)


def matmul_work(batch_shapes, kept_per_layer, hidden, intermediate, cls_shortcut=False):
    """Multiply-accumulates of one pass's encoder layers (embeddings and head left out).

    Args:
        batch_shapes: (B, T) per batch.
        kept_per_layer: T -> word vectors kept by each layer (`kept_function`).
        cls_shortcut: layers keeping one vector compute only [CLS]'s query (hard extract with a
            static keep, i.e. PoWER-BERT at N; not length-aware models, whose keep is a tensor).
    """
    total = 0
    for b, t in batch_shapes:
        t_in = t
        for t_out in kept_per_layer(t):
            total += b * layer_macs(t_in, t_out, hidden, intermediate, cls_only=cls_shortcut and t_out == 1)
            t_in = t_out
    return int(total)


def kept_function(kind, num_layers, retention=None):
    """`T -> kept per layer` of a model kind: "bert" (all T), "power" (l_j, capped at T),
    "power-la" (ceil(l_j * T / N)), `retention` a `RetentionConfig` for the last two."""
    if kind == "bert":
        return lambda t: [t] * num_layers
    if kind == "power" and retention.relative:  # slots per batch; short inputs mask some out
        return lambda t: retention.scaled_lengths(t)
    if kind == "power":
        return lambda t: [min(length, t) for length in retention.lengths]
    if kind == "power-la":
        return lambda t: retention.scaled_lengths(t)
    raise ValueError(f"unknown model kind {kind!r}")


def ratio(numerator, denominator):
    """numerator / denominator, or None when either is missing or the denominator is 0."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


# A PoWER-BERT variant's like-for-like baseline: BERT with the same runtime and the same padding,
# so a runtime's own speed (TFLite, ONNX Runtime, XLA) is not counted as pruning.
_OWN_BASELINE_GROUP = {"power": "bert-padded", "power-dynamic": "bert-dynamic", "power-la-dynamic": "bert-dynamic"}
INT8_RUNTIMES = ("tflite_int8", "ort_int8")


def own_baseline(variant_id):
    """`group:runtime` -> the BERT variant of the same runtime and padding (None for BERT)."""
    group, _, runtime = variant_id.partition(":")
    baseline = _OWN_BASELINE_GROUP.get(group)
    return f"{baseline}:{runtime}" if baseline else None


def like_for_like(row_summary, row_measure, baseline_summary, baseline_measure):
    """{"speedup", "work_bound", "achieved"} of a variant against its own BERT baseline:
    speedup = baseline median / variant median; work bound = baseline token-layers / variant's;
    achieved = speedup / work bound. Values are None where a part is missing."""
    speedup = ratio((baseline_summary or {}).get("median_s"), row_summary.get("median_s"))
    bound = ratio((baseline_measure or {}).get("token_layers"), row_measure.get("token_layers"))
    return {"speedup": speedup, "work_bound": bound, "achieved": ratio(speedup, bound)}


def result_rows(measurements, n_examples, references, work_reference=None):
    """One row per (variant, batch size) with timings, speedups and the work bound.

    Args:
        measurements: {(variant id, batch size): {"pass_seconds": [...], "latencies": [[...]],
            optional "token_layers", "matmul_work", "accuracy", "peak_rss_mb": [...],
            "extra": {...}}}.
        n_examples: sentences per pass.
        references: {label: variant id}, e.g. {"1": "bert-padded:saved_model"}; each row gets
            `speedup[label]` = reference median / row median at the same batch size (None when the
            reference was not run).
        work_reference: variant id whose token-layers define `work_bound` and whose
            multiply-accumulates define `matmul_bound` (default: reference "1").

    Returns:
        list of dicts sorted by batch size, then in `measurements` order.
    """
    work_reference = work_reference or references.get("1")
    summaries = {key: pass_summary(m["pass_seconds"], m["latencies"], n_examples)
                 for key, m in measurements.items()}
    rows = []
    for (variant, batch), m in measurements.items():
        row = {"variant": variant, "batch_size": batch, **summaries[(variant, batch)]}
        row["speedup"] = {label: ratio(summaries.get((ref, batch), {}).get("median_s"), row["median_s"])
                          for label, ref in references.items()}
        ref_work = measurements.get((work_reference, batch), {}).get("token_layers")
        row["token_layers"] = m.get("token_layers")
        row["work_bound"] = ratio(ref_work, m.get("token_layers"))
        vs_1 = row["speedup"].get("1")
        row["bound_achieved"] = ratio(vs_1, row["work_bound"])
        ref_macs = measurements.get((work_reference, batch), {}).get("matmul_work")
        row["matmul_work"] = m.get("matmul_work")
        row["matmul_bound"] = ratio(ref_macs, m.get("matmul_work"))
        row["matmul_achieved"] = ratio(vs_1, row["matmul_bound"])
        own = own_baseline(variant)
        row["like_for_like"] = dict(baseline=own, **like_for_like(
            summaries[(variant, batch)], m, summaries.get((own, batch)), measurements.get((own, batch))))
        row["accuracy"] = m.get("accuracy")
        peaks = m.get("peak_rss_mb") or []
        row["peak_rss_mb"] = max(peaks) if peaks else None
        row.update(m.get("extra", {}))
        rows.append(row)
    batch_order = sorted({batch for _, batch in measurements})
    return sorted(rows, key=lambda r: batch_order.index(r["batch_size"]))


def xla_payoff(compile_seconds, eager_batch_ms, xla_batch_ms, batches_per_pass):
    """When XLA pays: compile time of a pass's shapes vs the time it saves per batch.

    Args:
        compile_seconds: first-call time minus steady latency, summed over the distinct shapes.
        eager_batch_ms, xla_batch_ms: median (p50) batch latency without / with XLA.
        batches_per_pass: batches in one pass.

    Returns:
        dict with `saved_ms_per_batch`, `breakeven_batches` (None if XLA is not faster) and
        `breakeven_passes`.
    """
    saved = eager_batch_ms - xla_batch_ms
    if saved <= 0:
        return {"saved_ms_per_batch": saved, "breakeven_batches": None, "breakeven_passes": None}
    batches = math.ceil(1000.0 * compile_seconds / saved)
    return {"saved_ms_per_batch": saved, "breakeven_batches": batches,
            "breakeven_passes": batches / batches_per_pass}


def rotated(items, shift):
    """`items` rotated left by `shift` (the run order of a benchmark round)."""
    items = list(items)
    if not items:
        return items
    shift %= len(items)
    return items[shift:] + items[:shift]


def find_row(rows, batch, *variants):
    """The row of the first of `variants` that ran at `batch`, or None."""
    for variant in variants:
        for r in rows:
            if r["variant"] == variant and r["batch_size"] == batch:
                return r
    return None


def xla_rows(rows, warmup):
    """XLA rows against the same model's export without XLA (else its Keras rows);
    `warmup[(id, batch)]["overhead_s"]` is the compile time (first call minus second call, summed
    over the distinct shapes)."""
    out = []
    per_batch = lambda row: 1000.0 * row["median_s"] / row["batches_per_pass"]
    for r in (r for r in rows if r["runtime"] == "xla"):
        group = r["variant"].split(":")[0]
        eager = find_row(rows, r["batch_size"], f"{group}:saved_model", f"{group}:keras")
        w = warmup[(r["variant"], r["batch_size"])]
        x = {"batch_size": r["batch_size"], "model": group, "shapes": w["shapes"], "compile_s": w["overhead_s"],
             "xla_ms_per_batch": per_batch(r), "plain_ms_per_batch": per_batch(eager) if eager else None,
             "steady_speedup": eager["median_s"] / r["median_s"] if eager else None,
             "breakeven_batches": None, "breakeven_passes": None}
        if eager:
            x.update(xla_payoff(w["overhead_s"], per_batch(eager), per_batch(r), r["batches_per_pass"]))
        out.append(x)
    return out


def length_aware_rows(rows):
    """PoWER-BERT on dynamic padding (item 6: `power-dynamic`, `power-la-dynamic`): accuracy cost
    in points against BERT with dynamic padding (item 2, same runtime preferred) and the accuracy
    of PoWER-BERT at N for comparison."""
    out = []
    for r in (r for r in rows if r["item"] == "6"):
        b, runtime = r["batch_size"], r["runtime"]
        dyn = find_row(rows, b, f"bert-dynamic:{runtime}", "bert-dynamic:saved_model", "bert-dynamic:keras")
        power = find_row(rows, b, f"power:{runtime}", "power:saved_model", "power:keras")
        known = dyn is not None and None not in (r["accuracy"], dyn["accuracy"])
        out.append({"batch_size": b, "variant": r["variant"], "accuracy": r["accuracy"],
                    "bert_dynamic_accuracy": dyn["accuracy"] if dyn else None,
                    "cost_points": 100 * (r["accuracy"] - dyn["accuracy"]) if known else None,
                    "power_accuracy": power["accuracy"] if power else None,
                    "speedup_vs_2": r["speedup"].get("2"), "speedup_vs_1": r["speedup"].get("1")})
    return out


def peer_comparison(rows):
    """PoWER-BERT's deployments against the strongest alternatives, per batch size.

    For each batch size with a peer row (`speedup["peer"]` or `["peer-int8"]` present), the
    fastest PoWER-BERT variant overall, in float32, with int8 weights and as an exported
    SavedModel (what TF Serving runs), each with its examples/s, accuracy and speedup over the
    float32 peer (ONNX Runtime's optimized BERT on dynamic batches) and the int8 peer.

    Returns:
        list of {"batch_size", "deployment", "variant", "examples_per_s", "accuracy",
        "x_vs_peer", "x_vs_peer_int8"}; deployments without a row are left out.
    """
    out = []
    for batch in sorted({r["batch_size"] for r in rows}):
        at = [r for r in rows if r["batch_size"] == batch]
        if not any(r["speedup"].get("peer") or r["speedup"].get("peer-int8") for r in at):
            continue
        power = [r for r in at if r["model"] in ("power", "power-la")]
        picks = {
            "best PoWER-BERT": power,
            "best PoWER-BERT float32": [r for r in power if r["runtime"] not in INT8_RUNTIMES],
            "best PoWER-BERT int8": [r for r in power if r["runtime"] in INT8_RUNTIMES],
            "PoWER-BERT SavedModel": [r for r in power if r["runtime"] == "saved_model"],
        }
        for deployment, candidates in picks.items():
            if candidates:
                best = max(candidates, key=lambda r: r["examples_per_s"])
                out.append({"batch_size": batch, "deployment": deployment, "variant": best["variant"],
                            "examples_per_s": best["examples_per_s"], "accuracy": best["accuracy"],
                            "x_vs_peer": best["speedup"].get("peer"),
                            "x_vs_peer_int8": best["speedup"].get("peer-int8")})
    return out
