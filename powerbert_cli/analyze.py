"""`powerbert analyze`: the paper's analyses of a trained run, one sub-command each.

- `mi`: mutual information between the fine-tuned model's label and its label with the word of
  the k-th highest significance eliminated at block j (supplementary section 1.1, Figure 1).
- `pareto`: dev metric against inference time for PoWER-BERT runs and the baselines of
  `powerbert baseline`, all timed in one run (supplementary section 1.2, Figure 2).
- `paper-table`: the paper's Table 2 (metric loss and speed-up per task) for finished runs and
  their benchmark reports (`results/paper-table.md`).

Imports no TensorFlow at module level, so `powerbert --help` stays fast.
"""

import argparse


def add_analyze_parser(commands):
    analyze = commands.add_parser("analyze", help="the paper's analyses of a run (mi, pareto, paper-table)",
                                  description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    analyses = analyze.add_subparsers(dest="analysis", required=True)
    mi = analyses.add_parser(
        "mi", help="MI(X; Y_k) of the significance ranking, per block (supplementary Figure 1)",
        description="For each block j and rank k = 1..N-1, eliminate only the word with the k-th "
                    "highest significance at block j (after its attention sub-block; [CLS] is never "
                    "eliminated) and compute the mutual information between the fine-tuned model's "
                    "label X and the modified label Y_k over a seeded random subset of the task's "
                    "training inputs. Writes DIR/mi.json and DIR/mi.png.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    mi.add_argument("--run", required=True, help="run directory with finetune/model.keras")
    mi.add_argument("--blocks", required=True, help="comma-separated 1-based blocks, e.g. 1,3,6")
    mi.add_argument("--examples", type=int, default=2000, help="training inputs (seeded random subset)")
    mi.add_argument("--seed", type=int, default=0, help="seed of the subset")
    mi.add_argument("--data-dir", default=None, help="directory holding glue/ (default: $POWERBERT_DATA_DIR)")
    mi.add_argument("--out", required=True, help="directory for mi.json and mi.png")
    mi.add_argument("--quiet", action="store_true", help="no progress bar")
    pareto = analyses.add_parser(
        "pareto", help="accuracy vs inference time of PoWER-BERT and baselines (supplementary Figure 2)",
        description="Time the fine-tuned BERT of --teacher, the re-trained model of every --power run "
                    "(a lambda sweep: several runs) and every point of every --baseline directory "
                    "(`powerbert baseline`) over the task's dev sentences, in one run: the same batches, "
                    "the same runtime (in-memory Keras, tf.function), interleaved repeats, padded to N "
                    "and in length-sorted dynamic batches. Writes DIR/pareto.json, pareto.md (seeds "
                    "averaged) and pareto.png.", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    pareto.add_argument("--teacher", required=True, help="run directory whose fine-tuned model is the BERT point")
    pareto.add_argument("--power", nargs="*", default=[], metavar="RUN", help="PoWER-BERT run directories")
    pareto.add_argument("--baseline", nargs="*", default=[], metavar="DIR", help="baseline directories")
    pareto.add_argument("--batch-size", type=int, default=32, help="inference batch size")
    pareto.add_argument("--repeats", type=int, default=3, help="interleaved timed passes per point")
    pareto.add_argument("--examples", type=int, default=None, help="time a seeded subset of dev (default: all)")
    pareto.add_argument("--data-dir", default=None, help="directory holding glue/ (default: $POWERBERT_DATA_DIR)")
    pareto.add_argument("--out", required=True, help="directory for pareto.json, pareto.md and pareto.png")
    table = analyses.add_parser(
        "paper-table", help="the paper's Table 2 for finished runs of any tasks (results/paper-table.md)",
        description="One row per task of the given runs (MNLI: matched and mismatched): the dev metric "
                    "of always answering the training split's most frequent label (read from --data-dir), BERT and "
                    "PoWER-BERT dev metric as mean +- std over the runs' seeds, loss, retention, FLOP "
                    "bound and, from `powerbert bench` reports, the speed-up at the batch size against "
                    "BERT padded to N and in dynamic batches; beside the paper's loss and speed-up. Writes "
                    "DIR/paper-table.md and DIR/paper-table.json.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    table.add_argument("--runs", nargs="+", required=True, metavar="RUN",
                       help="finished run directories (all seeds of all tasks)")
    table.add_argument("--bench", nargs="*", default=[], metavar="REPORT",
                       help="`powerbert bench --out` directories or their benchmark-<task>.json files, one per task")
    table.add_argument("--batch-size", type=int, default=32, help="the benchmark rows' batch size")
    table.add_argument("--out", required=True, help="directory for paper-table.md and paper-table.json")
    table.add_argument("--data-dir", default=None,
                       help="the data the runs read, for each task's constant answer (default: $POWERBERT_DATA_DIR)")
    return analyze


def parse_blocks(text):
    """`"1,3,6"` -> (1, 3, 6); ValueError unless distinct positive integers."""
    try:
        blocks = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"--blocks must be comma-separated integers, got {text!r}") from None
    if min(blocks) < 1 or len(set(blocks)) != len(blocks):
        raise ValueError(f"--blocks must be distinct 1-based blocks, got {text!r}")
    return blocks


def analyze_command(args):
    """Run the chosen analysis and print its summary."""
    if args.analysis == "pareto":
        return _pareto(args)
    if args.analysis == "paper-table":
        return _paper_table(args)
    from analysis.mi_experiment import analyze_mi, write_report

    if args.examples < 1:
        raise ValueError(f"--examples must be >= 1, got {args.examples}")
    report = analyze_mi(args.run, parse_blocks(args.blocks), examples=args.examples, seed=args.seed,
                        data_dir=args.data_dir, verbose=0 if args.quiet else 1)
    json_path, png_path = write_report(report, args.out)
    for result in report["per_block"]:
        shown = ", ".join(f"k={k}: {result['mi'][k - 1]:.3f}" for k in (1, 2, 5, 10) if k <= len(result["mi"]))
        print(f"block {result['block']}: MI {shown}")
    print(f"H(X) = {report['h_x']:.3f}; wrote {json_path} and {png_path}")
    return 0


def _pareto(args):
    from benchmarks.pareto import run_pareto

    if args.batch_size < 1 or args.repeats < 1 or (args.examples is not None and args.examples < 1):
        raise ValueError("--batch-size, --repeats and --examples must be >= 1")
    report = run_pareto(args.teacher, args.power, args.baseline, out=args.out, data_dir=args.data_dir,
                        batch_size=args.batch_size, repeats=args.repeats, subset=args.examples)
    for g in report["groups"]:
        print(f"{g['method']:<12} {g['setting']:<16} {report['metric']} {g['metric_mean']:.4f}  "
              f"speed-up padded {g['speedup']['padded']:.2f}x, dynamic {g['speedup']['dynamic']:.2f}x")
    print(f"wrote {report['paths']['md']}, {report['paths']['json']} and {report['paths']['png']}")
    return 0


def _paper_table(args):
    import sys

    from benchmarks.paper_table import build_paper_table, format_paper_table, write_paper_table

    table = build_paper_table(args.runs, args.bench, batch_size=args.batch_size, data_dir=args.data_dir)
    print(format_paper_table(table))
    md, js = write_paper_table(table, args.out, " ".join(["powerbert"] + sys.argv[1:]))
    print(f"wrote {md} and {js}")
    return 0
