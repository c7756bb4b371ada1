"""`powerbert` command line: train, import, export, convert, serve, predict, bench.

The top of the import order: the only module that imports every package (`powerbert_tf`,
`training`, `serving`, `benchmarks`). Sub-commands import their package when they run, so
`powerbert --help` starts without TensorFlow.
"""

import argparse
import sys

from powerbert_cli.analyze import add_analyze_parser, analyze_command
from powerbert_cli.baseline import add_baseline_parser, baseline_command
from powerbert_cli.quiet_tensorflow import import_tensorflow_quietly
from powerbert_cli.task_args import add_task_arguments, task_from_args
from training.config import MIXED_PRECISIONS, PRESETS, STEPS, STRATEGIES, resolve_config
from training.distribute import WorkerLost

_OVERRIDES = [
    # (flag, config field, type, help)
    ("--max-length", "max_length", int, "input length N (default: the task's, e.g. 64 for SST-2)"),
    ("--batch-size", "batch_size", int, "training batch size (default: Table 1 of the paper)"),
    ("--epochs", "epochs", int, "epochs of each step (paper: 3; quick: 1)"),
    ("--search-epochs", "search_epochs", int, "epochs of the configuration search (default: --epochs)"),
    ("--retrain-epochs", "retrain_epochs", int, "epochs of re-training (default: --epochs)"),
    ("--lr-bert", "lr_bert", float, "peak learning rate of the BERT weights (LR_BERT)"),
    ("--lr-soft-extract", "lr_soft_extract", float, "peak learning rate of the retention weights"),
    ("--lambda", "lambda_", float, "weight of the mass regularizer lambda * sum_j j * mass(r_j)"),
    ("--warmup-fraction", "warmup_fraction", float, "fraction of steps of linear warm-up (0.1)"),
    ("--weight-decay", "weight_decay", float, "AdamW weight decay of the BERT weights (0.01)"),
    ("--dropout", "dropout", float, "dropout of the classifier head (0.1)"),
    ("--train-subset", "train_subset", int, "train on this many (seeded random) training examples"),
    ("--search-subset", "search_subset", int, "examples for the search (default: --train-subset)"),
    ("--retrain-subset", "retrain_subset", int, "examples for re-training (default: --train-subset)"),
    ("--dev-subset", "dev_subset", int, "evaluate on the first this many dev examples"),
    ("--rounding", "rounding", str, "mass -> l_j rounding: ceil (paper, default), floor (reference code), round"),
    ("--seed", "seed", int, "seed of subsets, shuffling, initialisation and dropout (0)"),
    ("--word-selection", "word_selection", str,
     "which l_j word vectors re-training keeps: significance (PoWER-BERT), head (the first l_j: "
     "Head-WS) or random (a random l_j drawn from --seed: Rand-WS)"),
    ("--selection-holdout", "selection_holdout", float,
     "choose each step's best checkpoint on this fraction of train, held out (default: on dev)"),
    ("--checkpoint-every", "checkpoint_every", int, "steps between dev evaluations / checkpoints (200)"),
]


def build_parser():
    parser = argparse.ArgumentParser(prog="powerbert", description="PoWER-BERT for TensorFlow / Keras.")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show TensorFlow's C++ start-up log (oneDNN, CUDA probing), hidden by default")
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser(
        "train", help="fine-tune, search a retention configuration, re-train (resumable)",
        description="Run the three PoWER-BERT steps into a run directory, on a built-in task "
                    "(--task) or your own files (--train, --dev, ...). Re-running the same "
                    "command resumes: completed steps are skipped and an interrupted step continues "
                    "from its last checkpoint. Defaults come from the task's row of Table 1 of the "
                    "paper (your own data: SST-2's row with N=128, batch 32), then the preset, then "
                    "these flags.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_task_arguments(train)
    train.add_argument("--init", default=None,
                       help="pretrained encoder: preset name, Hugging Face or Google BERT directory "
                            "(default: minilm-l6; a resumed run: its own)")
    train.add_argument("--out", required=True, help="run directory (created; reused to resume)")
    train.add_argument("--data-dir", default=None,
                       help="directory holding glue/ and imdb/ (default: $POWERBERT_DATA_DIR)")
    train.add_argument("--data", default=None, choices=("local", "tfds"),
                       help="built-in tasks from the local files in --data-dir, read through the local "
                            "tensorflow-datasets builder (default), or from tensorflow-datasets' own glue/* "
                            "builders, which download (online only; offline it stops at once and says so)")
    train.add_argument("--preset", default=None, choices=sorted(PRESETS),
                       help="paper: Table 1, 3 epochs, full data; quick: subsets, 1 epoch (~10 min for SST-2)")
    train.add_argument("--step", default="all", choices=("all",) + STEPS, help="run all steps or one")
    train.add_argument("--retention", default=None,
                       help="comma-separated l_1..l_L to re-train with instead of the searched one")
    train.add_argument("--no-bucket", action="store_true",
                       help="fine-tune at fixed length N instead of length-bucketed batches")
    train.add_argument("--length-aware", action="store_true",
                       help="re-train with length-aware retention: length-bucketed batches, layer j of "
                            "a batch of length T keeps ceil(l_j*T/N) word vectors (dev is bucketed too)")
    train.add_argument("--relative-retention", action="store_true",
                       help="length-relative retention: the search learns fractions rho_j = l_j/N and "
                            "layer j keeps ceil(rho_j*n) of each input's n real tokens, so length-sorted "
                            "dynamic batches need no padding to N (search, re-training and dev run on "
                            "length-bucketed batches)")
    train.add_argument("--strategy", default="default", choices=STRATEGIES,
                       help="tf.distribute strategy of all three steps: default (one device), mirrored "
                            "(all of this machine's devices) or multi-worker (the machines the TF_CONFIG "
                            "environment variable lists: run the same command on each; the chief writes "
                            "--out, on a filesystem they share). The global batch is --batch-size "
                            "whatever the number of replicas; a run may resume under another strategy "
                            "(docs/distributed.md)")
    train.add_argument("--mixed-precision", default=None, choices=MIXED_PRECISIONS,
                       help="train all three steps under Keras' mixed_bfloat16 or mixed_float16 policy "
                            "(float32 variables, significance scores and retention weights; float16 "
                            "with loss scaling); default float32. The models keep the policy when saved")
    train.add_argument("--quiet", action="store_true", help="one line per chunk instead of progress bars")
    for flag, _, kind, text in _OVERRIDES:
        train.add_argument(flag, type=kind, default=None, help=text)

    export = commands.add_parser(
        "export", help="write a SavedModel version in TF Serving's layout",
        description="Export a run's final model (re-trained, else fine-tuned) or a .keras file as "
                    "<base>/<version>/ with the signatures serving_default (token ids) and "
                    "classify_text (raw strings, tokenized in the graph). Existing versions are "
                    "never overwritten.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    export.add_argument("source", metavar="RUN_OR_MODEL", help="run directory or .keras file")
    export.add_argument("--base", required=True, help="model base path, e.g. models/sst2")
    export.add_argument("--version", type=int, default=None, help="version number (default: next free)")
    export.add_argument("--task", default=None, help="task of a .keras file (labels, pair or single)")
    export.add_argument("--init", default=None, help="pretrained model of a .keras file's vocabulary")
    export.add_argument("--max-length", type=int, default=None, help="N of a .keras file (default: the task's)")
    export.add_argument("--dynamic-length", action="store_true",
                        help="serving_default takes (batch, None) ids: batches padded only to their "
                             "longest input (what length-relative retention is for)")
    export.add_argument("--tflite", choices=("float32", "int8"), default=None,
                        help="also write serving_default as <version>/model.tflite (int8: quantized "
                             "weights), served instead of the SavedModel by `powerbert serve "
                             "--prefer_tflite_model` and by TF Serving with the same flag")
    export.add_argument("--jit-compile", action="store_true",
                        help="compile serving_default with XLA (TF Serving: --xla_cpu_compilation_enabled)")
    kit = export.add_argument_group(
        "deployment kit", "--serving-config DIR also puts the model into TF Serving's flag files in DIR "
                          "(models.config, batching_parameters.txt, monitoring.config; docs/deploy.md): "
                          "other models already there are kept")
    kit.add_argument("--serving-config", metavar="DIR", default=None, help="directory of the flag files")
    # SUPPRESS: the help says what the default is (a rule, not a value)
    kit.add_argument("--serving-name", default=argparse.SUPPRESS,
                     help="model name in the URLs (default: the base's last part)")
    kit.add_argument("--serving-base-path", default=argparse.SUPPRESS,
                     help="base path as the server sees it, absolute (default: /models/NAME, the layout "
                          "of docs/deploy.md's docker run lines)")
    for flag, text in (("--max-batch-size", "largest batch"), ("--batch-timeout-micros", "longest wait for a batch to fill"),
                       ("--max-enqueued-batches", "batches queued before requests are refused"),
                       ("--num-batch-threads", "batches run at once (set it for the serving machine)")):
        kit.add_argument(flag, type=int, default=argparse.SUPPRESS,
                         help=f"batching_parameters.txt: {text} (default: the value in DIR's file, "
                              "else TF Serving's default)")

    from serving.convert import add_convert_parser
    from serving.rest_server import add_serve_parser
    from benchmarks.cli import add_bench_parser

    from powerbert_cli.demo import add_demo_parser
    from powerbert_cli.import_model import add_import_parser
    from serving.batch_predict import add_predict_parser

    summarize = commands.add_parser(
        "summarize", help="mean +- std of finished runs that differ only in their seed",
        description="Read each run directory's summary.json and print (or write) a Markdown table of "
                    "baseline and PoWER-BERT metric, difference and FLOP ratio as mean +- sample std.")
    summarize.add_argument("runs", nargs="+", metavar="RUN", help="run directories of `powerbert train`")
    summarize.add_argument("--out", default=None, help="also write the table and a JSON beside it (<out>.md/.json)")

    add_convert_parser(commands)
    add_serve_parser(commands)
    add_bench_parser(commands)
    add_demo_parser(commands)
    add_import_parser(commands)
    add_predict_parser(commands)
    add_analyze_parser(commands)
    add_baseline_parser(commands)
    return parser


def _config_from_args(args, task):
    overrides = {field: getattr(args, flag[2:].replace("-", "_")) for flag, field, _, _ in _OVERRIDES}
    if args.no_bucket:
        overrides["bucket_finetune"] = False
    if args.length_aware:
        overrides["length_aware"] = True
    if args.relative_retention:
        overrides["relative_retention"] = True
    # The strategy is this command's (the machines it runs on), never the saved run's.
    overrides.update(strategy=args.strategy, mixed_precision=args.mixed_precision)
    if args.retention:
        try:
            overrides["retention"] = tuple(int(v) for v in args.retention.split(","))
        except ValueError:
            raise ValueError(f"--retention must be comma-separated integers, got {args.retention!r}")
    overrides.update(init=args.init, data_source=args.data)
    saved = _saved_config(args.out)
    if saved is not None and args.preset is None:
        # A resume: the run's own settings, changed only where a flag is given (and refused by
        # `RunDir.start` where that changes a step already started).
        from training.config import TrainConfig

        given = {k: v for k, v in overrides.items() if v is not None}
        return TrainConfig.from_dict({**saved, **given, "task": task.name})
    return resolve_config(task, args.preset or "paper", **{"init": "minilm-l6", **{
        k: v for k, v in overrides.items() if v is not None}})


def _saved_config(out):
    """The `config.json` dict of a started run at `out`, else None."""
    from training.run_dir import RunDir

    run = RunDir(out)
    return run.read_config().to_dict() if run.has_config() else None


def train_command(args):
    from training.distribute import make_strategy
    from training.pipeline import Pipeline, format_summary

    strategy = make_strategy(args.strategy)  # first: a multi-worker strategy must precede other TF work
    task = task_from_args(args, run_dir=args.out)
    pipeline = Pipeline(_config_from_args(args, task), args.out, data_dir=args.data_dir, task=task,
                        strategy=strategy, verbose=2 if args.quiet else 1)
    summary = pipeline.run(STEPS if args.step == "all" else (args.step,))
    print(format_summary(summary))


def export_command(args):
    from powerbert_cli.export_run import export_run, serving_config_for

    # The kit's files are checked before the export, so a bad one costs no export.
    kit = serving_config_for(args)
    path = export_run(args.source, args.base, args.version, init=args.init, task=args.task,
                      max_length=args.max_length, jit_compile=args.jit_compile,
                      dynamic_length=args.dynamic_length, tflite=args.tflite)
    print(f"exported {path}")
    if kit:
        print(f"model {kit.name} (base path {kit.base_path}) in {', '.join(kit.write())}")


def convert_command(args):
    from serving.convert import convert_main

    convert_main(args)


def serve_command(args):
    from serving.rest_server import serve_main

    return serve_main(args)


def bench_command(args):
    from benchmarks.cli import bench_main

    bench_main(args)
    return 0


def summarize_command(args):
    import json

    from training.run_dir import RunDir, RunDirError
    from training.seed_summary import format_seed_summary, summarize_seeds

    summaries = []
    for run in args.runs:
        summary = RunDir(run).read_summary()
        if summary is None:
            raise RunDirError(f"{run} has no summary.json (is it a finished `powerbert train` run?)")
        summaries.append(summary)
    result = summarize_seeds(summaries)
    table = format_seed_summary(result)
    print(table)
    if args.out:
        with open(args.out + ".md", "w") as f:
            f.write(table + "\n")
        with open(args.out + ".json", "w") as f:
            json.dump(dict(result, runs_read=list(args.runs)), f, indent=2)


def import_command(args):
    from powerbert_cli.import_model import import_main

    return import_main(args)


def export_weights_command(args):
    from powerbert_cli.import_model import export_weights_main

    return export_weights_main(args)


def predict_command(args):
    from serving.batch_predict import predict_main

    return predict_main(args)


def demo_command(args):
    from powerbert_cli.demo import demo_main

    return demo_main(args)


_COMMANDS = {"train": train_command, "export": export_command, "convert": convert_command,
             "serve": serve_command, "bench": bench_command, "demo": demo_command,
             "summarize": summarize_command, "import": import_command, "predict": predict_command,
             "export-weights": export_weights_command, "analyze": analyze_command,
             "baseline": baseline_command}


def main(argv=None, quiet_native_log=False):
    """Run one command; returns the exit code.

    `quiet_native_log`: route TensorFlow's native log lines through the filter of
    `powerbert_cli.quiet_tensorflow` (the `powerbert` program does; a caller in-process keeps its
    own stderr).
    """
    args = build_parser().parse_args(argv)
    if quiet_native_log:
        import_tensorflow_quietly(verbose=args.verbose)
    try:
        code = _COMMANDS[args.command](args)
    # DataError, RetentionError, CheckpointError, RunDirError, ExportError, BenchError,
    # DistributeError and unknown tasks are all ValueErrors raised before any long work starts.
    except (ValueError, FileNotFoundError) as err:
        print(f"powerbert: error: {err}", file=sys.stderr)
        return 2
    except WorkerLost as err:  # the last checkpoint is kept: the same command resumes
        print(f"powerbert: error: {err}", file=sys.stderr)
        return 3
    return code or 0


def run():
    """The `powerbert` program."""
    sys.exit(main(quiet_native_log=True))


if __name__ == "__main__":
    run()
