"""Readers for the task files: GLUE TSVs, the IMDB CSVs and user TSV/CSV files.

Every reader returns plain Python/NumPy (`Examples`) and checks the whole file before returning,
so bad data fails before any training starts. Errors are `DataError`s whose message starts with
`file:line:` and names the offending value and what was allowed.

Format facts the readers rely on (see shared/data/README.md):
* TSVs are read with quoting off: GLUE text contains literal `"` characters.
* Files are decoded as `utf-8-sig`, which drops the BOM that starts the MRPC files.
* Texts are stripped: SST-2 sentences end with a space before the tab.
* CSVs are strict RFC 4180 (the IMDB texts are quoted and contain `""`).
"""

import csv
import dataclasses
import math
import os
import pathlib
from typing import Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from training.tasks import TaskSpec, get_task

ENV_VAR = "POWERBERT_DATA_DIR"

PathLike = Union[str, os.PathLike]


class DataError(ValueError):
    """Bad or missing data. `path` and `line` (1-based) locate the problem when known."""

    def __init__(self, message: str, path: Optional[PathLike] = None,
                 line: Optional[int] = None):
        self.path = None if path is None else str(path)
        self.line = line
        if path is not None and line is not None:
            message = f"{path}:{line}: {message}"
        elif path is not None:
            message = f"{path}: {message}"
        super().__init__(message)


class MissingDataError(DataError):
    """The data directory or a task file does not exist."""


class EmptyFileError(DataError):
    """A file has no data rows."""


class MalformedRowError(DataError):
    """A row (or the header) does not have the expected fields, or a text is empty."""


class LabelError(DataError):
    """A label outside the task's label set, or a score that is not a number or out of range."""


@dataclasses.dataclass(frozen=True)
class Examples:
    """The examples of one split, in file order.

    Attributes:
        text: The (first) text of each example, stripped.
        text_b: The second texts for sentence-pair tasks, else None.
        labels: int64 label ids (positions in `TaskSpec.label_values`), float32 scores for
            regression tasks, or None for unlabelled files (GLUE test).
        lines: int64 line number of each example in `path` (1-based, the line the row ends on).
        path: The file the examples were read from.
    """

    text: List[str]
    text_b: Optional[List[str]]
    labels: Optional[np.ndarray]
    lines: np.ndarray
    path: str

    def __len__(self) -> int:
        return len(self.text)

    def take(self, indices: Sequence[int]) -> "Examples":
        """The examples at `indices`, in that order."""
        return Examples(
            text=[self.text[i] for i in indices],
            text_b=None if self.text_b is None else [self.text_b[i] for i in indices],
            labels=None if self.labels is None else self.labels[np.asarray(indices, dtype=int)],
            lines=self.lines[np.asarray(indices, dtype=int)],
            path=self.path)


def resolve_data_dir(data_dir: Optional[PathLike] = None) -> pathlib.Path:
    """`data_dir`, else `$POWERBERT_DATA_DIR`; it must be an existing directory.

    Raises:
        DataError: neither is set.
        MissingDataError: the directory does not exist.
    """
    chosen = data_dir if data_dir is not None else os.environ.get(ENV_VAR) or None
    if chosen is None:
        raise DataError(
            f"no data directory: pass --data-dir (data_dir=...) or set {ENV_VAR} to the folder "
            f"that holds glue/ and imdb/")
    path = pathlib.Path(chosen)
    if not path.is_dir():
        source = "data_dir" if data_dir is not None else ENV_VAR
        raise MissingDataError(f"data directory {str(path)!r} (from {source}) does not exist")
    return path


def split_path(task: Union[str, TaskSpec], split: str,
               data_dir: Optional[PathLike] = None) -> pathlib.Path:
    """The file `read_split` reads for `split` (for IMDB "dev", the train file).

    User tasks have absolute paths and need no data directory.
    """
    task = _as_task(task)
    name = task.file_for(split)
    if os.path.isabs(name):
        return pathlib.Path(name)
    return resolve_data_dir(data_dir) / task.directory / name


def read_split(task: Union[str, TaskSpec], split: str,
               data_dir: Optional[PathLike] = None) -> Examples:
    """Read one split ("train", "dev" or "test") of `task`, checking every row.

    For tasks with `dev_holdout` (IMDB), "train" and "dev" are disjoint parts of the train file
    chosen by `holdout_indices`. Test files of GLUE have no labels: `labels` is None.

    Raises:
        UnknownTaskError: `task` is an unknown name.
        ValueError: `task` has no such split.
        DataError: see the subclasses; every message names the file and, for row problems,
            the line.
    """
    task = _as_task(task)
    path = split_path(task, split, data_dir)
    examples = _read_file(task, split, path)
    if task.dev_holdout is None or split == "test":
        return examples
    fraction, seed = task.dev_holdout
    train_idx, dev_idx = holdout_indices(len(examples), fraction, seed)
    return examples.take(dev_idx if split == "dev" else train_idx)


def holdout_indices(n: int, fraction: float, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """Split `range(n)` into sorted, disjoint (train, dev) index arrays; dev has
    `round(n * fraction)` items.

    Uses `np.random.RandomState`, whose stream NumPy keeps fixed across versions (NEP 19), so
    the split never changes with the NumPy version.
    """
    order = np.random.RandomState(seed).permutation(n)
    n_dev = int(round(n * fraction))
    return np.sort(order[n_dev:]), np.sort(order[:n_dev])


def distinct_labels(path: PathLike, label_column: str, file_format: str) -> Tuple[str, ...]:
    """The distinct values of `label_column` in a headed file, sorted numerically when they are
    all integers, else alphabetically.

    Raises:
        DataError: the file is missing, empty or malformed, or has fewer than two labels.
    """
    path = pathlib.Path(path)
    rows = _rows(path, file_format)
    header_line, header = _header(path, rows)
    (col,) = _column_indices(path, header_line, header, [label_column])
    values = {_fields(path, line, fields, header)[col].strip() for line, fields in rows}
    if not values:
        raise EmptyFileError("file has a header but no data rows", path)
    if len(values) < 2:
        raise LabelError(f"column {label_column!r} has {len(values)} distinct label(s) "
                         f"{sorted(values)}; a classification task needs at least 2", path)
    is_int = all(v.lstrip("-").isdigit() for v in values)
    return tuple(sorted(values, key=int if is_int else str))


def _as_task(task: Union[str, TaskSpec]) -> TaskSpec:
    return task if isinstance(task, TaskSpec) else get_task(task)


def _read_file(task: TaskSpec, split: str, path: pathlib.Path) -> Examples:
    """Parse and check every row of `path` as the `split` file of `task`."""
    rows = _rows(path, task.file_format)
    if split in task.headerless_splits:
        header_line, header = 0, list(task.headerless_columns)
    else:
        header_line, header = _header(path, rows)
    labelled = split in task.labelled_splits
    wanted = [task.text_column] + ([task.pair_column] if task.is_pair else [])
    if labelled:
        wanted.append(task.label_column)
    cols = _column_indices(path, header_line, header, wanted)
    text_col, pair_col = cols[0], (cols[1] if task.is_pair else None)
    parse_label = _label_parser(task) if labelled else None

    text, text_b, labels, lines = [], [], [], []
    for line, fields in rows:
        fields = _fields(path, line, fields, header)
        text.append(_text(path, line, fields, text_col, header))
        if pair_col is not None:
            text_b.append(_text(path, line, fields, pair_col, header))
        if parse_label is not None:
            labels.append(parse_label(path, line, fields[cols[-1]].strip()))
        lines.append(line)
    if not text:
        what = "has a header but no data rows" if header_line else "is empty"
        raise EmptyFileError(f"file {what}", path)
    if parse_label is None:
        label_array = None
    else:
        label_array = np.asarray(labels, np.float32 if task.is_regression else np.int64)
    return Examples(text=text, text_b=text_b if task.is_pair else None, labels=label_array,
                    lines=np.asarray(lines, np.int64), path=str(path))


def _rows(path: pathlib.Path, file_format: str) -> Iterator[Tuple[int, List[str]]]:
    """An iterator of `(line number, fields)` over the non-blank rows of `path`.

    Not a generator itself, so a missing file is reported here, not at the first `next`.
    """
    if not path.is_file():
        raise MissingDataError("file does not exist" + _layout_hint(path), path)
    return _iter_rows(path, file_format)


def _iter_rows(path: pathlib.Path, file_format: str) -> Iterator[Tuple[int, List[str]]]:
    if file_format == "tsv":
        options = dict(delimiter="\t", quoting=csv.QUOTE_NONE)
    else:
        options = dict(strict=True)
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle, **options)
        try:
            for fields in reader:
                if fields:
                    yield reader.line_num, fields
        except csv.Error as exc:
            raise MalformedRowError(f"not valid {file_format.upper()}: {exc}", path,
                                    reader.line_num) from exc
        except UnicodeDecodeError as exc:
            raise DataError(f"not UTF-8 text: {exc.reason} at byte {exc.start}", path,
                            _line_of_bad_byte(path)) from exc


def _line_of_bad_byte(path: pathlib.Path) -> int:
    """The line holding the first byte that is not UTF-8 (the decoder's offsets are relative
    to a buffer chunk, so they cannot give the line)."""
    raw = path.read_bytes()
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return raw.count(b"\n", 0, exc.start) + 1
    return 1


def _layout_hint(path: pathlib.Path) -> str:
    parent = path.parent
    if parent.is_dir():
        present = sorted(p.name for p in parent.iterdir())
        return f" (the folder holds: {', '.join(present) or 'nothing'})"
    return f" (nor does its folder {str(parent)!r})"


def _header(path: pathlib.Path, rows: Iterator) -> Tuple[int, List[str]]:
    """Consume and return the header row and its line number."""
    try:
        line, header = next(rows)
    except StopIteration:
        raise EmptyFileError("file is empty", path) from None
    return line, [name.strip() for name in header]


def _column_indices(path, header_line, header, names) -> List[int]:
    missing = [name for name in names if name not in header]
    if missing:
        raise MalformedRowError(
            f"header has no column {', '.join(map(repr, missing))}; its columns are {header}",
            path, header_line)
    return [header.index(name) for name in names]


def _fields(path, line, fields, header) -> List[str]:
    if len(fields) != len(header):
        raise MalformedRowError(
            f"expected {len(header)} fields ({', '.join(header)}), found {len(fields)}",
            path, line)
    return fields


def _text(path, line, fields, col, header) -> str:
    text = fields[col].strip()
    if not text:
        raise MalformedRowError(f"column {header[col]!r} is empty", path, line)
    return text


def _label_parser(task: TaskSpec):
    """A function `(path, line, raw) -> label id or score` that checks against `task`."""
    if task.is_regression:
        return lambda path, line, raw: _score(task, path, line, raw)
    ids = {value: i for i, value in enumerate(task.label_values)}

    def label_id(path, line, raw):
        if raw not in ids:
            raise LabelError(f"label {raw!r} is not one of the {task.name} labels "
                             f"{list(task.label_values)}", path, line)
        return ids[raw]

    return label_id


def _score(task: TaskSpec, path, line, raw) -> float:
    try:
        score = float(raw)
    except ValueError:
        raise LabelError(f"score {raw!r} is not a number", path, line) from None
    if not math.isfinite(score):
        raise LabelError(f"score {raw!r} is not finite", path, line)
    if task.score_range is not None:
        low, high = task.score_range
        if not low <= score <= high:
            raise LabelError(f"score {raw!r} is outside the {task.name} range [{low}, {high}]",
                             path, line)
    return score
