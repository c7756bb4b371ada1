"""Task definitions: every task is a `TaskSpec` value, so readers, metrics and the tfds builder
handle all tasks through the same code path.

Built-in tasks: sst2, cola, mrpc, rte, stsb, qnli, qqp, mnli (GLUE), imdb and race (multiple
choice). The hyper-parameters are the PoWER-BERT supplementary Table 1 settings (see
docs/METHOD.md). A task from the user's own TSV/CSV/JSON Lines files is made with
`training.user_task.user_task` (or `powerbert train --train`).

A task may have several file layouts (`TASK_LAYOUTS`): first the official one (GLUE's files,
RACE's `train/`), then substitutes for data that lacks a split (the shared data's 3-column MNLI
dev files, its QQP train subset, its dev-only QNLI). `training.data.task_for_data` picks the first
layout whose files exist; the layouts of one task share every setting but the files.
"""

import dataclasses
import types
from typing import Any, Mapping, Optional, Tuple

SPLITS = ("train", "dev", "test")
# tsv: tab-separated, quoting off (GLUE); csv: RFC 4180; jsonl: one JSON object per line.
FILE_FORMATS = ("tsv", "csv", "jsonl")
# race: a folder of RACE article files (one JSON object each, level sub-folders).
BUILTIN_FORMATS = FILE_FORMATS + ("race",)
# The names `training.metrics` implements; kept here so a TaskSpec can be checked on creation.
CLASSIFICATION_METRICS = ("accuracy", "f1", "matthews_corrcoef")
REGRESSION_METRICS = ("pearson", "spearman")
METRIC_NAMES = CLASSIFICATION_METRICS + REGRESSION_METRICS

# The held-out dev fraction and seed for tasks without a dev file (IMDB): the paper held out 20%
# of the training data as dev.
DEV_HOLDOUT_FRACTION = 0.2
DEV_HOLDOUT_SEED = 2020
# Tasks that have only dev data here (MNLI, QNLI) train on this fraction of a dev file.
TRAIN_FROM_DEV_FRACTION = 0.7


class UnknownTaskError(ValueError):
    """A task name that is neither built in nor registered."""


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """Everything the project needs to know about a task, as data.

    Attributes:
        name: Short lower-case name, e.g. "sst2".
        directory: Folder of the task's files relative to the data directory (e.g.
            "glue/SST-2"); "" for user tasks, whose `files` are absolute paths.
        files: `(split, file name)` pairs for the splits that have their own file.
        file_format: "tsv" (tab-separated, quoting off, as GLUE needs), "csv" (RFC 4180),
            "jsonl" (JSON Lines: one object per line, its keys are the columns) or "race" (a
            folder of RACE article files; built-in task only).
        text_column: Column holding the (first) text.
        label_column: Column holding the label or score.
        pair_column: Column holding the second text of sentence-pair tasks, else None.
        label_values: The label strings as written in the files (a JSON Lines integer label 1
            is "1"); the label id is the position.
        label_names: Human-readable names, same order as `label_values` (tfds ClassLabel names).
        is_regression: True for score targets (STS-B); then `label_values` is empty.
        score_range: Inclusive `(low, high)` bounds a regression score must lie in, or None.
        headerless_splits: Splits whose file has no header row (CoLA train/dev).
        headerless_columns: The column names assumed for those files.
        labelled_splits: Splits whose files carry labels (GLUE test files do not).
        carved_split: For data without a file for some split, `(source, carved, fraction,
            seed)`: split `carved` is that fraction of the `source` file, chosen by
            `training.data.holdout_indices`, and `source` is the rest (IMDB: dev is 20 % of
            train; MNLI here: train is 70 % of dev matched).
        other_dev_splits: Evaluation splits besides "dev", each with its own file (MNLI's
            "dev_mismatched"); reported beside dev, never used to choose checkpoints.
        repair_space_joined_label: Rows one field short whose last field ends in a space and a
            valid label are split there instead of rejected (GLUE's QQP train file has such a
            row: its label is joined to question2 by a space instead of a tab).
        num_choices: Options per question of a multiple-choice task (RACE: 4), else 0. Then
            `text_column` is the passage, `pair_column` the question, `options_column` the
            options and `label_values` the answer letters.
        options_column: The options' key in multiple-choice files.
        metrics: Metric names reported by `training.metrics.compute_metrics`.
        primary_metric: The metric used to pick checkpoints; one of `metrics`.
        max_length: Default maximum sequence length N.
        lr_bert: Learning rate of the BERT weights.
        lr_soft_extract: Learning rate of the soft-extract retention parameters.
        lambda_: Weight of the mass regularizer in the configuration search.
        batch_size: Training batch size.
    """

    name: str
    directory: str
    files: Tuple[Tuple[str, str], ...]
    file_format: str
    text_column: str
    label_column: str
    pair_column: Optional[str] = None
    label_values: Tuple[str, ...] = ()
    label_names: Tuple[str, ...] = ()
    is_regression: bool = False
    score_range: Optional[Tuple[float, float]] = None
    headerless_splits: Tuple[str, ...] = ()
    headerless_columns: Tuple[str, ...] = ()
    labelled_splits: Tuple[str, ...] = ("train", "dev")
    carved_split: Optional[Tuple[str, str, float, int]] = None
    other_dev_splits: Tuple[str, ...] = ()
    repair_space_joined_label: bool = False
    num_choices: int = 0
    options_column: Optional[str] = None
    metrics: Tuple[str, ...] = ("accuracy",)
    primary_metric: str = "accuracy"
    max_length: int = 128
    lr_bert: float = 3e-5
    lr_soft_extract: float = 5e-4
    lambda_: float = 2e-4
    batch_size: int = 32

    def __post_init__(self):
        problems = _spec_problems(self)
        if problems:
            raise ValueError(f"invalid TaskSpec {self.name!r}: " + "; ".join(problems))

    @property
    def splits(self) -> Tuple[str, ...]:
        """The splits this task has, in `SPLITS` order, then `other_dev_splits`."""
        own = {split for split, _ in self.files}
        if self.carved_split is not None:
            own.add(self.carved_split[1])
        return tuple(split for split in SPLITS + self.other_dev_splits if split in own)

    @property
    def num_labels(self) -> int:
        """The number of classes (answer letters of a multiple-choice task), or 1 for regression."""
        return 1 if self.is_regression else len(self.label_values)

    @property
    def is_multiple_choice(self) -> bool:
        return self.num_choices > 0

    @property
    def is_pair(self) -> bool:
        """True for sentence-pair tasks."""
        return self.pair_column is not None

    def to_dict(self) -> dict:
        """Every field, JSON-ready (tuples become lists when written); `from_dict` reverses it."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TaskSpec":
        """The `TaskSpec` whose `to_dict()` is `data` (also after a JSON round trip).

        Raises:
            ValueError: unknown or missing fields, or an inconsistent spec.
        """
        known = {field.name for field in dataclasses.fields(cls)}
        data = _upgraded(data)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown TaskSpec fields {unknown}")
        try:
            return cls(**{name: _as_tuples(value) for name, value in data.items()})
        except TypeError as err:  # a required field is missing
            raise ValueError(f"incomplete TaskSpec: {err}") from None

    def file_for(self, split: str) -> str:
        """The file name (relative to `directory`) that holds `split`."""
        if split not in self.splits:
            raise ValueError(
                f"task {self.name!r} has no split {split!r}; its splits are {list(self.splits)}")
        if self.carved_split is not None and split == self.carved_split[1]:
            split = self.carved_split[0]
        return dict(self.files)[split]


def _upgraded(data: Mapping[str, Any]) -> dict:
    """`data` with the fields of older `task.json` files renamed: `dev_holdout: [fraction,
    seed]` is `carved_split: ["train", "dev", fraction, seed]`."""
    data = dict(data)
    holdout = data.pop("dev_holdout", None)
    if holdout is not None:
        data["carved_split"] = ["train", "dev", *holdout]
    return data


def _as_tuples(value):
    """`value` with every list (JSON's form of a tuple) turned back into a tuple."""
    return tuple(map(_as_tuples, value)) if isinstance(value, list) else value


def _spec_problems(spec: TaskSpec) -> list:
    """Everything wrong with `spec`, as readable sentences (empty when it is consistent)."""
    problems = []
    file_splits = [split for split, _ in spec.files]
    allowed = SPLITS + spec.other_dev_splits
    if not file_splits:
        problems.append("no files given")
    unknown = sorted(set(file_splits) - set(allowed))
    if unknown:
        problems.append(f"unknown splits {unknown} (allowed: {list(allowed)})")
    if spec.file_format not in BUILTIN_FORMATS:
        problems.append(f"file_format {spec.file_format!r} is not one of {list(FILE_FORMATS)}")
    unlabelled = [split for split in spec.other_dev_splits if split not in spec.labelled_splits]
    if unlabelled:
        problems.append(f"other_dev_splits {unlabelled} are evaluated, so they must be in labelled_splits")
    if spec.carved_split is not None:
        source, carved, fraction, _ = spec.carved_split
        if source not in file_splits or carved in file_splits or carved not in SPLITS:
            problems.append(f"carved_split {spec.carved_split} needs a {source!r} file and no "
                            f"{carved!r} file, and {carved!r} must be one of {list(SPLITS)}")
        if not 0 < fraction < 1:
            problems.append(f"carved_split fraction {fraction} must be between 0 and 1")
    if (spec.file_format == "race") != spec.is_multiple_choice or (
            spec.is_multiple_choice and (spec.options_column is None or spec.num_choices < 2)):
        problems.append("a multiple-choice task (num_choices >= 2, options_column) reads the "
                        "\"race\" file format, and only it does")
    if spec.is_regression:
        if spec.label_values or spec.label_names:
            problems.append("a regression task has no label_values/label_names")
    else:
        if len(spec.label_values) < 2 or len(set(spec.label_values)) != len(spec.label_values):
            problems.append(f"label_values {spec.label_values} must be 2 or more distinct strings")
        if len(spec.label_names) != len(spec.label_values):
            problems.append(f"label_names {spec.label_names} must match label_values "
                            f"{spec.label_values} one to one")
    unknown_metrics = sorted(set(spec.metrics) - set(METRIC_NAMES))
    if unknown_metrics:
        problems.append(f"unknown metrics {unknown_metrics} (known: {list(METRIC_NAMES)})")
    if spec.primary_metric not in spec.metrics:
        problems.append(f"primary_metric {spec.primary_metric!r} is not in metrics {spec.metrics}")
    suitable = REGRESSION_METRICS if spec.is_regression else CLASSIFICATION_METRICS
    unsuitable = [m for m in spec.metrics if m in METRIC_NAMES and m not in suitable]
    if unsuitable:
        kind = "regression" if spec.is_regression else "classification"
        problems.append(f"metrics {unsuitable} do not apply to {kind}; choose from {list(suitable)}")
    if spec.headerless_splits:
        needed = (spec.text_column, spec.pair_column, spec.label_column)
        missing = [c for c in needed if c is not None and c not in spec.headerless_columns]
        if missing:
            problems.append(f"headerless_columns {spec.headerless_columns} lack {missing}")
    if spec.max_length < 2:
        problems.append(f"max_length {spec.max_length} leaves no room for [CLS] and [SEP]")
    return problems


_BINARY = ("0", "1")
_NLI = ("entailment", "not_entailment")

_BUILTIN = (
    TaskSpec(
        name="sst2", directory="glue/SST-2",
        files=(("train", "train.tsv"), ("dev", "dev.tsv"), ("test", "test.tsv")),
        file_format="tsv", text_column="sentence", label_column="label",
        label_values=_BINARY, label_names=("negative", "positive"),
        max_length=64, lr_bert=3e-5, lr_soft_extract=5e-4, lambda_=2e-4, batch_size=64),
    TaskSpec(
        name="cola", directory="glue/CoLA",
        files=(("train", "train.tsv"), ("dev", "dev.tsv"), ("test", "test.tsv")),
        file_format="tsv", text_column="sentence", label_column="label",
        label_values=_BINARY, label_names=("unacceptable", "acceptable"),
        # CoLA's train/dev are the raw CoLA files, which have no header.
        headerless_splits=("train", "dev"),
        headerless_columns=("source", "label", "original_label", "sentence"),
        metrics=("accuracy", "matthews_corrcoef"), primary_metric="matthews_corrcoef",
        max_length=64, lr_bert=2e-5, lr_soft_extract=1.5e-3, lambda_=7e-3, batch_size=32),
    TaskSpec(
        name="mrpc", directory="glue/MRPC",
        files=(("train", "train.tsv"), ("dev", "dev.tsv"), ("test", "test.tsv")),
        file_format="tsv", text_column="#1 String", pair_column="#2 String",
        label_column="Quality",
        label_values=_BINARY, label_names=("not_equivalent", "equivalent"),
        metrics=("accuracy", "f1"), primary_metric="f1",
        max_length=128, lr_bert=6e-5, lr_soft_extract=3e-3, lambda_=3e-3, batch_size=64),
    TaskSpec(
        name="rte", directory="glue/RTE",
        files=(("train", "train.tsv"), ("dev", "dev.tsv"), ("test", "test.tsv")),
        file_format="tsv", text_column="sentence1", pair_column="sentence2",
        label_column="label", label_values=_NLI, label_names=_NLI,
        max_length=256, lr_bert=3e-5, lr_soft_extract=3e-3, lambda_=1e-3, batch_size=16),
    TaskSpec(
        name="stsb", directory="glue/STS-B",
        files=(("train", "train.tsv"), ("dev", "dev.tsv"), ("test", "test.tsv")),
        file_format="tsv", text_column="sentence1", pair_column="sentence2",
        label_column="score", is_regression=True, score_range=(0.0, 5.0),
        metrics=("pearson", "spearman"), primary_metric="spearman",
        max_length=64, lr_bert=3e-5, lr_soft_extract=3e-3, lambda_=1e-3, batch_size=64),
    TaskSpec(
        name="imdb", directory="imdb",
        files=(("train", "train_subset_5000.csv"), ("test", "test_subset_5000.csv")),
        file_format="csv", text_column="text", label_column="label",
        label_values=_BINARY, label_names=("negative", "positive"),
        labelled_splits=("train", "dev", "test"),
        carved_split=("train", "dev", DEV_HOLDOUT_FRACTION, DEV_HOLDOUT_SEED),
        max_length=512, lr_bert=3e-5, lr_soft_extract=2e-4, lambda_=7e-4, batch_size=8),
)

_MNLI_LABELS = ("entailment", "neutral", "contradiction")
_QQP_COLUMNS = ("id", "qid1", "qid2", "question1", "question2", "is_duplicate")
_QNLI = TaskSpec(
    name="qnli", directory="glue/QNLI",
    files=(("train", "train.tsv"), ("dev", "dev.tsv"), ("test", "test.tsv")),
    file_format="tsv", text_column="question", pair_column="sentence",
    label_column="label", label_values=_NLI, label_names=_NLI,
    max_length=128, lr_bert=3e-5, lr_soft_extract=2e-4, lambda_=1.5e-4, batch_size=16)
_QQP = TaskSpec(
    name="qqp", directory="glue/QQP",
    files=(("train", "train.tsv"), ("dev", "dev.tsv"), ("test", "test.tsv")),
    file_format="tsv", text_column="question1", pair_column="question2",
    label_column="is_duplicate", label_values=_BINARY, label_names=("not_duplicate", "duplicate"),
    repair_space_joined_label=True,
    # The paper reports QQP's F1 (GLUE gives F1 and accuracy).
    metrics=("accuracy", "f1"), primary_metric="f1",
    max_length=128, lr_bert=3e-5, lr_soft_extract=1e-4, lambda_=3e-4, batch_size=64)
# The paper has one MNLI model with two Table 1 rows (MNLI-m, MNLI-mm); the search uses MNLI-m's.
_MNLI = TaskSpec(
    name="mnli", directory="glue/MNLI",
    files=(("train", "train.tsv"), ("dev", "dev_matched.tsv"),
           ("dev_mismatched", "dev_mismatched.tsv"), ("test", "test_matched.tsv")),
    file_format="tsv", text_column="sentence1", pair_column="sentence2",
    label_column="gold_label", label_values=_MNLI_LABELS, label_names=_MNLI_LABELS,
    other_dev_splits=("dev_mismatched",), labelled_splits=("train", "dev", "dev_mismatched"),
    max_length=128, lr_bert=3e-5, lr_soft_extract=2e-4, lambda_=1e-4, batch_size=64)
_RACE = TaskSpec(
    name="race", directory="race/RACE",
    files=(("train", "train"), ("dev", "dev"), ("test", "test")),
    file_format="race", text_column="article", pair_column="questions", label_column="answers",
    options_column="options", num_choices=4,
    label_values=("A", "B", "C", "D"), label_names=("A", "B", "C", "D"),
    labelled_splits=("train", "dev", "test"),
    max_length=512, lr_bert=1e-5, lr_soft_extract=2e-4, lambda_=1e-4, batch_size=4)

# Substitute layouts, for data without some official file (the shared data): each makes the
# missing split from another file, seeded, so the protocol differs from the paper's.
_SUBSTITUTES = (
    # Dev only: train on 70 % of dev, evaluate on the rest.
    dataclasses.replace(_QNLI, files=(("dev", "dev.tsv"),),
                        carved_split=("dev", "train", TRAIN_FROM_DEV_FRACTION, DEV_HOLDOUT_SEED)),
    # A train subset without header and no dev file: dev is 20 % of it.
    dataclasses.replace(_QQP, files=(("train", "train_subset_23497.tsv"),),
                        headerless_splits=("train",), headerless_columns=_QQP_COLUMNS,
                        carved_split=("train", "dev", DEV_HOLDOUT_FRACTION, DEV_HOLDOUT_SEED)),
    # The 3-column dev files (premise, hypothesis, label id 0/1/2 in _MNLI_LABELS order): train on
    # 70 % of dev matched, evaluate on the rest of it and on all of dev mismatched.
    dataclasses.replace(_MNLI, files=(("dev", "dev_matched_3col.tsv"),
                                      ("dev_mismatched", "dev_mismatched_3col.tsv")),
                        headerless_splits=("dev", "dev_mismatched"),
                        headerless_columns=("sentence1", "sentence2", "gold_label"),
                        label_values=("0", "1", "2"), labelled_splits=("dev", "dev_mismatched"),
                        carved_split=("dev", "train", TRAIN_FROM_DEV_FRACTION, DEV_HOLDOUT_SEED)),
    # RACE's train split is a subset folder.
    dataclasses.replace(_RACE, files=(("train", "train_subset"), ("dev", "dev"), ("test", "test"))),
)

TASKS: Mapping[str, TaskSpec] = types.MappingProxyType(
    {t.name: t for t in _BUILTIN + (_QNLI, _QQP, _MNLI, _RACE)})
# Every layout of each task, the official one (`TASKS[name]`) first.
TASK_LAYOUTS: Mapping[str, Tuple[TaskSpec, ...]] = types.MappingProxyType(
    {name: (spec,) + tuple(s for s in _SUBSTITUTES if s.name == name) for name, spec in TASKS.items()})


def task_names() -> Tuple[str, ...]:
    """The names of the built-in tasks."""
    return tuple(TASKS)


def get_task(name: str) -> TaskSpec:
    """The built-in task called `name`.

    Matching ignores case and dashes, so the GLUE spellings "SST-2" and "STS-B" work too.

    Raises:
        UnknownTaskError: `name` is not a built-in task; the message lists the known ones.
    """
    key = str(name).lower().replace("-", "")
    if key not in TASKS:
        raise UnknownTaskError(
            f"unknown task {name!r}; known tasks: {', '.join(TASKS)} "
            f"(for your own files: powerbert train --train FILE --dev FILE ..., or "
            f"training.user_task.user_task)")
    return TASKS[key]
