"""`powerbert bench --run RUN`: the sub-command's parser and entry point.

Light to import (no TensorFlow until the command runs). The measurement is
`benchmarks.run.run_benchmark`; the variants are in `benchmarks.variants`, the statistics (pure
functions) in `benchmarks.stats`, the report in `benchmarks.report`; docs/benchmark.md explains
the method.
"""

from benchmarks.settings import DEFAULT_REPEATS, QUICK_EXAMPLES, QUICK_REPEATS, BenchError


def add_bench_parser(subparsers):
    import argparse

    parser = subparsers.add_parser(
        "bench", help="time BERT vs PoWER-BERT (SavedModel, Keras, XLA, ONNX, TFLite) on the dev set",
        description="Benchmark a run directory's fine-tuned and re-trained models in one process, "
                    "variants interleaved; writes <out>/benchmark-<task>.md, .json and .png "
                    "(--quick: benchmark-<task>-quick.*).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--run", required=True, help="run directory of `powerbert train`")
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK_EXAMPLES} sentences, batch sizes 1 and 32, {QUICK_REPEATS} repeats, "
                             f"SavedModel variants of items 1, 2, 3, 6 only (no ONNX/TFLite/XLA)")
    parser.add_argument("--out", default="results", help="results directory")
    parser.add_argument("--data-dir", default=None, help="directory holding glue/ (default: $POWERBERT_DATA_DIR)")
    parser.add_argument("--batch-sizes", default=None,
                        help="comma-separated (default 1,8,32,128; quick 1,32)")
    parser.add_argument("--repeats", type=int, default=None,
                        help=f"passes per variant and batch size (default {DEFAULT_REPEATS}; quick {QUICK_REPEATS})")
    parser.add_argument("--variants", default=None,
                        help="comma-separated variant ids, groups (bert-padded, bert-dynamic, power, "
                             "power-dynamic, power-la-dynamic), runtimes (saved_model, keras, xla, onnx, tflite) or "
                             "item numbers 1-7 (default: all; quick: the SavedModel variants)")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads (TF, onnxruntime, LiteRT)")
    parser.add_argument("--subset", type=int, default=None,
                        help=f"benchmark this many dev sentences (default all; quick {QUICK_EXAMPLES})")
    parser.add_argument("--export-dir", default=None,
                        help="cache of exports and conversions (default <run>/bench/exports)")
    return parser


def bench_main(args):
    """Run `powerbert bench`; prints progress, the report's paths and the one-line result."""
    batch_sizes = None
    if args.batch_sizes:
        try:
            batch_sizes = [int(v) for v in args.batch_sizes.split(",")]
        except ValueError:
            raise BenchError(f"--batch-sizes must be comma-separated integers, got {args.batch_sizes!r}")
    from benchmarks.run import run_benchmark

    report = run_benchmark(args.run, out=args.out, data_dir=args.data_dir, batch_sizes=batch_sizes,
                           repeats=args.repeats, variants=args.variants, threads=args.threads,
                           quick=args.quick, subset=args.subset, export_dir=args.export_dir,
                           log=lambda line: print(line, flush=True))
    print(f"wrote {', '.join(report['paths'].values())}")
    print(report["final_line"], flush=True)
    return report
