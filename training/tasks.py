"""Task definitions: every task is a `TaskSpec` value, so readers, metrics and the tfds builder
handle all tasks through the same code path.

Built-in tasks: sst2, cola, mrpc, rte, stsb, qnli (GLUE) and imdb. The hyper-parameters are the
PoWER-BERT supplementary Table 1 settings (see docs/METHOD.md). A task from the user's own
TSV/CSV/JSON Lines files is made with `training.user_task.user_task` (or `powerbert train --train`).
"""

import dataclasses
import types
from typing import Any, Mapping, Optional, Tuple

SPLITS = ("train", "dev", "test")
# tsv: tab-separated, quoting off (GLUE); csv: RFC 4180; jsonl: one JSON object per line.
FILE_FORMATS = ("tsv", "csv", "jsonl")
# The names `training.metrics` implements; kept here so a TaskSpec can be checked on creation.
CLASSIFICATION_METRICS = ("accuracy", "f1", "matthews_corrcoef")
REGRESSION_METRICS = ("pearson", "spearman")
METRIC_NAMES = CLASSIFICATION_METRICS + REGRESSION_METRICS

# The held-out dev fraction and seed for tasks without a dev file (IMDB): the paper held out 20%
# of the training data as dev.
DEV_HOLDOUT_FRACTION = 0.2
DEV_HOLDOUT_SEED = 2020


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
        file_format: "tsv" (tab-separated, quoting off, as GLUE needs), "csv" (RFC 4180) or
            "jsonl" (JSON Lines: one object per line, its keys are the columns).
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
        dev_holdout: For tasks without a dev file, `(fraction, seed)`: "dev" is that fraction
            of the train file, chosen by `training.data.holdout_indices`; "train" is the rest.
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
    dev_holdout: Optional[Tuple[float, int]] = None
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
        """The splits this task has, in `SPLITS` order."""
        own = {split for split, _ in self.files}
        if self.dev_holdout is not None:
            own.add("dev")
        return tuple(split for split in SPLITS if split in own)

    @property
    def num_labels(self) -> int:
        """Width of the model's output: the number of classes, or 1 for regression."""
        return 1 if self.is_regression else len(self.label_values)

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
        source = "train" if split == "dev" and self.dev_holdout is not None else split
        return dict(self.files)[source]


def _as_tuples(value):
    """`value` with every list (JSON's form of a tuple) turned back into a tuple."""
    return tuple(map(_as_tuples, value)) if isinstance(value, list) else value


def _spec_problems(spec: TaskSpec) -> list:
    """Everything wrong with `spec`, as readable sentences (empty when it is consistent)."""
    problems = []
    file_splits = [split for split, _ in spec.files]
    if not file_splits:
        problems.append("no files given")
    unknown = sorted(set(file_splits) - set(SPLITS))
    if unknown:
        problems.append(f"unknown splits {unknown} (allowed: {list(SPLITS)})")
    if spec.file_format not in FILE_FORMATS:
        problems.append(f"file_format {spec.file_format!r} is not one of {list(FILE_FORMATS)}")
    if spec.dev_holdout is not None and ("dev" in file_splits or "train" not in file_splits):
        problems.append("dev_holdout needs a train file and no dev file")
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
        name="qnli", directory="glue/QNLI",
        files=(("train", "train.tsv"), ("dev", "dev.tsv"), ("test", "test.tsv")),
        file_format="tsv", text_column="question", pair_column="sentence",
        label_column="label", label_values=_NLI, label_names=_NLI,
        max_length=128, lr_bert=3e-5, lr_soft_extract=2e-4, lambda_=1.5e-4, batch_size=16),
    TaskSpec(
        name="imdb", directory="imdb",
        files=(("train", "train_subset_5000.csv"), ("test", "test_subset_5000.csv")),
        file_format="csv", text_column="text", label_column="label",
        label_values=_BINARY, label_names=("negative", "positive"),
        labelled_splits=("train", "dev", "test"),
        dev_holdout=(DEV_HOLDOUT_FRACTION, DEV_HOLDOUT_SEED),
        max_length=512, lr_bert=3e-5, lr_soft_extract=2e-4, lambda_=7e-4, batch_size=8),
)

TASKS: Mapping[str, TaskSpec] = types.MappingProxyType({t.name: t for t in _BUILTIN})


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
