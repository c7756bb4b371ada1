"""Where a SavedModel's time goes: per-op-type time of `serving_default` from TensorFlow's step stats.

`python -m benchmarks.profile_ops DIR [DIR ...] --length 25 --batch 1 --out results/profile.md`
loads each exported version in a TF1 session (`tf.compat.v1.saved_model.load`), runs the
signature with `RunOptions(trace_level=FULL_TRACE)` and sums the executor's per-node wall times
by op type over the traced runs. It answers "matrix work or per-op overhead?": the op count, the
time in MatMul/BatchMatMul (the work), and the share of everything else.

Times come from the executor's per-node stats (`all_start_micros`..`all_end_micros`), so they
include each op's scheduling overhead but not Python's; `call ms` is the whole `Session.run`.
"""

import argparse
import collections
import os
import sys
import time

import numpy as np

# Op types that do the matrix work of a BERT layer.
MATRIX_OPS = ("MatMul", "BatchMatMulV2", "_MklMatMul", "_MklBatchMatMulV2", "_FusedMatMul", "_MklFusedMatMul")


def profile(saved_model_dir, length, batch, runs=20, seed=0):
    """{"ops": n, "call_ms": median, "by_type": {op type: ms per call}} of `serving_default`."""
    import tensorflow as tf

    from serving.savedmodel import SERVING_SIGNATURE, import_tf_text

    import_tf_text()
    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
        meta = tf.compat.v1.saved_model.load(session, ["serve"], saved_model_dir)
        signature = meta.signature_def[SERVING_SIGNATURE]
        width = signature.inputs["input_ids"].tensor_shape.dim[1].size
        if width not in (-1, length):
            raise ValueError(f"{saved_model_dir} takes inputs of length {width} only (exported at fixed N); "
                             f"profile it with --length {width}, or export with --dynamic-length")
        rng = np.random.default_rng(seed)
        ids = rng.integers(5, _vocab_size(saved_model_dir), (batch, length)).astype(np.int32)
        values = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
        feeds = {signature.inputs[name].name: values[name] for name in signature.inputs}
        fetches = {name: info.name for name, info in signature.outputs.items()}
        for _ in range(3):
            session.run(fetches, feeds)
        options = tf.compat.v1.RunOptions(trace_level=tf.compat.v1.RunOptions.FULL_TRACE)
        by_type, calls = collections.Counter(), []
        nodes = 0
        for _ in range(runs):
            metadata = tf.compat.v1.RunMetadata()
            started = time.perf_counter()
            session.run(fetches, feeds, options=options, run_metadata=metadata)
            calls.append(1000 * (time.perf_counter() - started))
            traced = 0
            for device in metadata.step_stats.dev_stats:
                for node in device.node_stats:
                    op = node.timeline_label.split("= ")[-1].split("(")[0] or node.node_name
                    by_type[op] += (node.all_end_rel_micros or node.op_end_rel_micros) / 1000.0
                    traced += 1
            nodes = max(nodes, traced)
        # Untraced timing: tracing itself slows every op.
        plain = []
        for _ in range(runs):
            started = time.perf_counter()
            session.run(fetches, feeds)
            plain.append(1000 * (time.perf_counter() - started))
    return {"ops": nodes, "call_ms": float(np.median(plain)), "traced_call_ms": float(np.median(calls)),
            "by_type": {op: ms / runs for op, ms in by_type.most_common()}}


def _vocab_size(saved_model_dir):
    """Lines of the export's `assets/vocab.txt` (the ids the model accepts), capped at 30,522."""
    path = os.path.join(saved_model_dir, "assets", "vocab.txt")
    if not os.path.isfile(path):
        return 30522
    with open(path, encoding="utf-8", errors="replace") as f:
        return min(sum(1 for _ in f), 30522)


def markdown(results, length, batch, command):
    lines = [f"# Where the time goes: `serving_default` at batch {batch}, length {length}", "",
             f"Command: `{command}`", "",
             "Per-op-type time from TensorFlow's executor step stats (FULL_TRACE), summed over "
             "the ops of one call and averaged over the traced calls; `call ms` is an untraced "
             "`Session.run`. Matrix ops: " + ", ".join(MATRIX_OPS) + ".", "",
             "| model | ops executed | call ms | traced ms | matrix ops ms | other ops ms | other share | top other op types (ms) |",
             "|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        matrix = sum(ms for op, ms in r["by_type"].items() if op in MATRIX_OPS)
        other = sum(ms for op, ms in r["by_type"].items() if op not in MATRIX_OPS)
        top = ", ".join(f"{op} {ms:.2f}" for op, ms in list(
            (op, ms) for op, ms in r["by_type"].items() if op not in MATRIX_OPS)[:6])
        share = other / (matrix + other) if matrix + other else 0.0
        lines.append(f"| {name} | {r['ops']} | {r['call_ms']:.2f} | {r['traced_call_ms']:.2f} | {matrix:.2f} | "
                     f"{other:.2f} | {100 * share:.0f} % | {top} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_ops", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("versions", nargs="+", metavar="NAME=VERSION_DIR",
                        help="exported versions to profile, each named, e.g. bert=models/bert/1")
    parser.add_argument("--length", type=int, default=25, help="input length T (all tokens real)")
    parser.add_argument("--batch", type=int, default=1, help="batch size")
    parser.add_argument("--runs", type=int, default=20, help="traced and untraced calls each")
    parser.add_argument("--threads", type=int, default=2, help="TF intra- and inter-op threads")
    parser.add_argument("--out", default=None, help="write the table to this .md file")
    args = parser.parse_args(argv)
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    except RuntimeError:  # TF already ran something in this process: keep its settings
        pass
    results = {}
    for spec in args.versions:
        name, sep, path = spec.partition("=")
        if not sep or not os.path.isdir(path):
            parser.error(f"{spec!r}: expected NAME=VERSION_DIR with an existing directory")
        try:
            results[name] = profile(path, args.length, args.batch, args.runs)
        except ValueError as err:
            parser.error(str(err))
    text = markdown(results, args.length, args.batch,
                    " ".join(["python -m benchmarks.profile_ops"] + list(sys.argv[1:] if argv is None else argv)))
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
