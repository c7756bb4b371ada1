"""`powerbert analyze`: the paper's analyses of a trained run, one sub-command each.

- `mi`: mutual information between the fine-tuned model's label and its label with the word of
  the k-th highest significance eliminated at block j (supplementary section 1.1, Figure 1).

Imports no TensorFlow at module level, so `powerbert --help` stays fast.
"""

import argparse


def add_analyze_parser(commands):
    analyze = commands.add_parser("analyze", help="the paper's analyses of a run (mi)",
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
    """Run the chosen analysis (`mi`, the only one so far) and print its summary."""
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
