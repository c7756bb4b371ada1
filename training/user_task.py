"""`user_task`: a `TaskSpec` for your own TSV/CSV/JSON Lines files (labels read from the file if
not given)."""

import os
from typing import Mapping, Optional, Sequence, Tuple

from training.data import distinct_labels
from training.tasks import FILE_FORMATS, REGRESSION_METRICS, TaskSpec


def user_task(
    name: str,
    *,
    train: Optional[str] = None,
    dev: Optional[str] = None,
    test: Optional[str] = None,
    text_column: str,
    label_column: str,
    pair_column: Optional[str] = None,
    label_values: Optional[Sequence[str]] = None,
    label_names: Optional[Sequence[str]] = None,
    is_regression: bool = False,
    score_range: Optional[Tuple[float, float]] = None,
    primary_metric: Optional[str] = None,
    test_labelled: bool = True,
    file_format: Optional[str] = None,
    **settings,
) -> TaskSpec:
    """A `TaskSpec` for the user's own TSV/CSV files (each with a header row) or JSON Lines files
    (one object per line, its keys are the columns).

    Args:
        name: Name of the task, used in messages.
        train, dev, test: Paths of the split files; give at least one. Without a dev file,
            pass `carved_split=("train", "dev", fraction, seed)` to hold out part of train as dev.
        text_column, label_column, pair_column: Header names of the text, label and optional
            second-text columns.
        label_values: The label strings in the order of their ids (a JSON integer label 1 is
            "1"). When None (classification), they are the distinct labels of the train file (or
            of the first file given), sorted numerically if they are all integers, else
            alphabetically.
        label_names: Readable names for the labels; defaults to `label_values`.
        is_regression: The label column holds float scores.
        score_range: Inclusive bounds a score must lie in (regression only).
        primary_metric: The metric that picks checkpoints (`training.tasks.METRIC_NAMES`);
            default accuracy, spearman for regression. It is reported with the kind's usual
            metrics (accuracy; pearson and spearman) unless `metrics` is given.
        test_labelled: Whether the test file has the label column.
        file_format: "tsv", "csv" or "jsonl"; by default taken from the file extension.
        **settings: Any other `TaskSpec` field (carved_split, max_length, lr_bert,
            lr_soft_extract, lambda_, batch_size, metrics); the defaults are SST-2's Table 1 row
            with N = 128 and batch 32.

    Raises:
        ValueError: inconsistent arguments. `training.data.DataError` when the labels have to
            be read from a file and that file is missing or malformed.
    """
    paths = {split: os.path.abspath(path)
             for split, path in (("train", train), ("dev", dev), ("test", test)) if path}
    if not paths:
        raise ValueError(f"user task {name!r}: give at least one of train=, dev=, test=")
    if file_format is None:
        file_format = _format_from_extension(name, paths)
    usual_metrics = REGRESSION_METRICS if is_regression else ("accuracy",)
    primary_metric = primary_metric or ("spearman" if is_regression else "accuracy")
    settings.setdefault("metrics", tuple(dict.fromkeys(usual_metrics + (primary_metric,))))
    if not is_regression and label_values is None:
        source = paths.get("train") or next(iter(paths.values()))
        label_values = distinct_labels(source, label_column, file_format)
    label_values = tuple(label_values or ())
    labelled = ("train", "dev", "test") if test_labelled else ("train", "dev")
    return TaskSpec(
        name=name, directory="", files=tuple(paths.items()), file_format=file_format,
        text_column=text_column, label_column=label_column, pair_column=pair_column,
        label_values=label_values,
        label_names=tuple(label_names) if label_names is not None else label_values,
        is_regression=is_regression, score_range=score_range, primary_metric=primary_metric,
        labelled_splits=labelled, **settings)


def _format_from_extension(name: str, paths: Mapping[str, str]) -> str:
    """The one file format implied by the extensions of `paths`."""
    formats = {os.path.splitext(p)[1].lower().lstrip(".") for p in paths.values()}
    if len(formats) != 1 or not formats <= set(FILE_FORMATS):
        raise ValueError(
            f"user task {name!r}: cannot tell the file format from the extensions of "
            f"{list(paths.values())}; name the format ({', '.join(FILE_FORMATS)}) with --format "
            f"(file_format=)")
    return formats.pop()
