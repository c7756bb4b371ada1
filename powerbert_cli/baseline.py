"""`powerbert baseline`: the methods PoWER-BERT is compared with, from a fine-tuned run.

- `distilbert`: a DistilBERT-style student (one teacher layer out of L/K, soft-label loss);
- `pkd`: a BERT-PKD student (the teacher's first K layers, patient distillation);
- `head-prune`: Michel et al.'s progressive head pruning, heads removed physically.

Each writes a baseline directory (`baseline.json`, one `model.keras` per point) that
`powerbert analyze pareto --baseline DIR` times against PoWER-BERT. A re-run of the same command
resumes a student's training from its last checkpoint.

Imports no TensorFlow at module level, so `powerbert --help` stays fast.
"""

import argparse
import sys


def add_baseline_parser(commands):
    baseline = commands.add_parser("baseline", help="train a comparison baseline (distilbert, pkd, head-prune)",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    methods = baseline.add_subparsers(dest="method", required=True)
    for method, text in (("distilbert", "DistilBERT-style student: every L/K-th teacher layer, T^2 KL "
                                        "soft-label loss at temperature T (default 2, DistilBERT's)"),
                         ("pkd", "BERT-PKD student: the teacher's first K layers, (1 - alpha) hard + "
                                 "alpha soft cross-entropy at T + beta * patient loss on [CLS] states "
                                 "(PKD-Skip pairs); defaults T 10, alpha 0.5, beta 100 from the "
                                 "supplementary's ranges")):
        p = methods.add_parser(method, help=text, description=text + ". Trains with the teacher run's data "
                               "settings (subset, epochs, checkpoint selection); --lr, --batch-size and "
                               "--epochs override its values.", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        _common(p)
        p.add_argument("--layers", type=int, required=True, help="student layers K")
        p.add_argument("--lr", type=float, default=None, help="peak learning rate (default: the teacher run's)")
        p.add_argument("--batch-size", type=int, default=None, help="batch size (default: the teacher run's)")
        p.add_argument("--epochs", type=int, default=None, help="epochs (default: the teacher run's fine-tuning epochs)")
        p.add_argument("--temperature", type=float, default=None, help="softmax temperature T")
        p.add_argument("--alpha", type=float, default=None, help="weight of the soft loss (hard: 1 - alpha)")
        p.add_argument("--beta", type=float, default=None, help="weight of the patient loss")
        p.add_argument("--quiet", action="store_true", help="one line per chunk instead of progress bars")
    prune = methods.add_parser(
        "head-prune", help="Michel et al. 2019: progressive head pruning by mask-gradient importance",
        description="Remove the least important heads (|dL/d head mask| on training examples, "
                    "normalised per layer) a step at a time, recomputing the importance after each "
                    "step; every level is a point, evaluated on dev without re-training. Every layer "
                    "keeps at least one head.", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    _common(prune)
    prune.add_argument("--step-fraction", type=float, default=0.1, help="fraction of all heads removed per step")
    prune.add_argument("--levels", type=int, default=6, help="pruning steps")
    prune.add_argument("--importance-examples", type=int, default=2000,
                       help="training examples the importance is estimated on (seeded subset)")
    return baseline


def _common(parser):
    parser.add_argument("--teacher", required=True, help="run directory of `powerbert train` with a finished fine-tune step")
    parser.add_argument("--out", required=True, help="baseline directory (created; reused to resume)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the shuffles, dropout and subsets")
    parser.add_argument("--data-dir", default=None, help="directory holding glue/ and imdb/ (default: $POWERBERT_DATA_DIR)")


def baseline_command(args):
    command = " ".join(["powerbert"] + sys.argv[1:])
    if args.method == "head-prune":
        from training.baselines.head_prune_run import run_head_prune

        if not 0 < args.step_fraction < 1 or args.levels < 1 or args.importance_examples < 1:
            raise ValueError("--step-fraction must be in (0, 1), --levels and --importance-examples >= 1")
        run_head_prune(args.teacher, args.out, step_fraction=args.step_fraction, levels=args.levels,
                       importance_examples=args.importance_examples, seed=args.seed, data_dir=args.data_dir,
                       command=command)
        print(f"wrote {args.out}/baseline.json")
        return 0
    from training.baselines.students import StudentSettings, train_student

    settings = StudentSettings(args.method, args.layers, seed=args.seed, lr=args.lr, batch_size=args.batch_size,
                               temperature=args.temperature, alpha=args.alpha, beta=args.beta, epochs=args.epochs)
    info = train_student(args.teacher, settings, args.out, data_dir=args.data_dir,
                         verbose=2 if args.quiet else 1, command=command)
    print(f"{args.method} student, {info['layers']} layers: dev {info['dev']['primary']:.4f} "
          f"(chosen on {info['checkpoints_chosen_on']}); wrote {args.out}/baseline.json")
    return 0
