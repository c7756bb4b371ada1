"""The task flags shared by the commands that need a task (`powerbert train`, `powerbert import`):
a built-in task by name (`--task`), or the user's own files (`--train FILE --dev FILE ...`),
turned into one `TaskSpec`.

Imports no TensorFlow at module level, so `powerbert --help` stays fast.
"""

import argparse
import os

from training.tasks import FILE_FORMATS, METRIC_NAMES, TaskSpec, UnknownTaskError, get_task, task_names

# (argparse dest, flag) of the flags that describe the user's own files.
_OWN_DATA_FLAGS = (
    ("train", "--train"), ("dev", "--dev"), ("test", "--test"), ("text_column", "--text-column"),
    ("text_pair_column", "--text-pair-column"), ("label_column", "--label-column"),
    ("regression", "--regression"), ("metric", "--metric"), ("file_format", "--format"),
    ("task_name", "--task-name"),
)
# What a task from the user's own files cannot do without.
_REQUIRED_WITH_TRAIN = (("dev", "--dev"), ("text_column", "--text-column"),
                        ("label_column", "--label-column"))


def add_task_arguments(parser: argparse.ArgumentParser) -> None:
    """Add `--task` and the own-data flags (`--train`, `--dev`, ...) to `parser`."""
    parser.add_argument("--task", metavar="NAME", default=None,
                        help=f"built-in task: one of {', '.join(task_names())} (files under --data-dir)")
    own = parser.add_argument_group(
        "your own data (instead of --task)",
        "Labelled files with a header row: .csv (RFC 4180 quoting) or .tsv (tab-separated, quoting "
        "off like GLUE), or .jsonl (one JSON object per line, its keys are the columns). Labels are "
        "names or integers (the label set is the train file's distinct labels, integers in "
        "numeric order), or numbers with --regression. A resumed run (same --out) reads its task "
        "back from the run's task.json: leave these flags out.")
    own.add_argument("--train", metavar="FILE", default=None, help="training file")
    own.add_argument("--dev", metavar="FILE", default=None,
                     help="dev file: reported, and picks each step's best checkpoint")
    own.add_argument("--test", metavar="FILE", default=None,
                     help="labelled test file: checked now, recorded in the run's task.json")
    own.add_argument("--text-column", metavar="C", default=None, help="column of the text")
    own.add_argument("--text-pair-column", metavar="C", default=None,
                     help="column of the second text (sentence-pair tasks)")
    own.add_argument("--label-column", metavar="C", default=None, help="column of the label")
    own.add_argument("--regression", action="store_true",
                     help="labels are numeric scores (mean squared error; pearson, spearman)")
    own.add_argument("--metric", choices=METRIC_NAMES, default=None,
                     help="metric that picks checkpoints (default: accuracy; spearman with --regression)")
    own.add_argument("--format", dest="file_format", choices=FILE_FORMATS, default=None,
                     help="format of the files (default: from their extension)")
    own.add_argument("--task-name", metavar="NAME", default=None,
                     help="name of the task in summaries and exports (default: the train file's "
                          "name without its extension)")


def task_from_args(args: argparse.Namespace, run_dir=None) -> TaskSpec:
    """The `TaskSpec` that the flags of `add_task_arguments` describe.

    `--task NAME`: that built-in task, in the file layout found in `--data-dir` (GLUE's own MNLI,
    QQP and QNLI files, else the shared data's substitutes; `training.data.task_for_data`), or
    the official layout with `--data tfds`. `--train FILE ...`: a task from the user's files, its
    labels read from the train file (a `--test` file is read and checked too). Neither: the task
    recorded in `run_dir` (the `--out` of a started run, resumed).

    Raises:
        ValueError: both or neither given, an own-data flag with `--task`, a missing
            `--dev`/`--text-column`/`--label-column`, a task name of a built-in task, an unknown
            task. `training.data.DataError` (a ValueError): a bad file.
    """
    given = [flag for dest, flag in _OWN_DATA_FLAGS if getattr(args, dest) not in (None, False)]
    if args.task is not None:
        if given:
            raise ValueError(f"--task {args.task} names a built-in task; {', '.join(given)} "
                             f"describe your own files: give --task or --train, not both")
        if getattr(args, "data", None) == "tfds":
            return get_task(args.task)
        from training.data import task_for_data

        return task_for_data(args.task, getattr(args, "data_dir", None))
    if args.train is not None:
        return _own_data_task(args)
    if given:
        raise ValueError(f"{', '.join(given)} describe your own files: give --train FILE too")
    recorded = _recorded_task(run_dir)
    if recorded is None:
        raise ValueError(f"no task: give --task (one of {', '.join(task_names())}) or your own "
                         f"files (--train FILE --dev FILE --text-column C --label-column C)"
                         + (", or the --out of a started run to resume it" if run_dir else ""))
    return recorded


def _own_data_task(args: argparse.Namespace) -> TaskSpec:
    """The user task of `--train`, `--dev`, ...; see `task_from_args`."""
    from training.data import read_split
    from training.user_task import user_task

    missing = [flag for dest, flag in _REQUIRED_WITH_TRAIN if getattr(args, dest) is None]
    if missing:
        raise ValueError(f"--train needs {', '.join(missing)} too")
    name = args.task_name or os.path.splitext(os.path.basename(args.train))[0]
    _check_not_builtin(name)
    task = user_task(name, train=args.train, dev=args.dev, test=args.test,
                     text_column=args.text_column, pair_column=args.text_pair_column,
                     label_column=args.label_column, is_regression=args.regression,
                     primary_metric=args.metric, file_format=args.file_format)
    if args.test is not None:
        # Training reads train and dev; the test file is read here so a bad one stops it too.
        read_split(task, "test")
    return task


def _check_not_builtin(name: str) -> None:
    """Refuse a user task named like a built-in one: readers of a run's config.json would take
    it for that task."""
    try:
        get_task(name)
    except UnknownTaskError:
        return
    raise ValueError(f"task name {name!r} is a built-in task's; choose another with --task-name")


def _recorded_task(run_dir):
    """The task recorded in the started run `run_dir`, else None."""
    if run_dir is None:
        return None
    from training.run_dir import RunDir  # imports TensorFlow: only for a resume

    run = RunDir(run_dir)
    return run.read_task() if run.has_config() else None
