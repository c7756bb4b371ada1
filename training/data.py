"""Readers for the task files: GLUE TSVs, the IMDB CSVs, RACE's article files and user
TSV/CSV/JSON Lines files.

Every reader returns plain Python/NumPy (`Examples`) and checks the whole file before returning,
so bad data fails before any training starts. Errors are `DataError`s whose message starts with
`file:line:` and names the offending value and what was allowed.

Format facts the readers rely on (see shared/data/README.md):
* TSVs are read with quoting off: GLUE text contains literal `"` characters.
* Files are decoded as `utf-8-sig`, which drops the BOM that starts the MRPC files.
* Texts are stripped: SST-2 sentences end with a space before the tab.
* CSVs are strict RFC 4180 (the IMDB texts are quoted and contain `""`).
* JSON Lines files hold one object per line; its keys are the columns. Their values keep their
  JSON types, so a text must be a string and a score a number.
* RACE: a split is a folder with level sub-folders (`high/`, `middle/`) of article files, each
  one JSON object with `article`, `questions`, `options` (4 per question) and `answers`
  ("A".."D"); every question is an example. Files are read in sorted path order.
* GLUE's QQP train file has a row whose label is joined to question2 by a space instead of a tab
  (`...the exam jlpt5? 0`): with `TaskSpec.repair_space_joined_label` it is split at that space
  (the row's text and label are intact, so it is kept rather than skipped as BERT's reader does).

All three formats go through one path: each row becomes a record `{column: value}` (`_records`),
and the same checks run on the records.
"""

import contextlib
import csv
import dataclasses
import itertools
import json
import math
import os
import pathlib
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from training.tasks import TASK_LAYOUTS, TaskSpec, get_task

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
        lines: int64 line number of each example in `path` (1-based, the line the row ends on;
            for RACE, the question's position in its article file).
        path: The file the examples were read from (RACE: the split's folder).
        options: For multiple-choice tasks, each example's answer options (a tuple of
            `TaskSpec.num_choices` texts), else None.
    """

    text: List[str]
    text_b: Optional[List[str]]
    labels: Optional[np.ndarray]
    lines: np.ndarray
    path: str
    options: Optional[List[Tuple[str, ...]]] = None

    def __len__(self) -> int:
        return len(self.text)

    def take(self, indices: Sequence[int]) -> "Examples":
        """The examples at `indices`, in that order."""
        return Examples(
            text=[self.text[i] for i in indices],
            text_b=None if self.text_b is None else [self.text_b[i] for i in indices],
            labels=None if self.labels is None else self.labels[np.asarray(indices, dtype=int)],
            lines=self.lines[np.asarray(indices, dtype=int)],
            path=self.path,
            options=None if self.options is None else [self.options[i] for i in indices])


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


def task_for_data(task: Union[str, TaskSpec], data_dir: Optional[PathLike] = None) -> TaskSpec:
    """The layout of built-in task `task` (`training.tasks.TASK_LAYOUTS`) whose files are all in
    the data directory: the official one when present, else the first substitute. A `TaskSpec`
    is returned as it is.

    Raises:
        UnknownTaskError: an unknown name.
        MissingDataError: no layout is complete; the message lists each layout's files.
    """
    if isinstance(task, TaskSpec):
        return task
    layouts = TASK_LAYOUTS[get_task(task).name]
    if len(layouts) == 1:  # the reader names a missing file itself
        return layouts[0]
    root = resolve_data_dir(data_dir)
    missing = []
    for layout in layouts:
        paths = [root / layout.directory / name for _, name in layout.files]
        absent = [str(p.relative_to(root)) for p in paths if not p.exists()]
        if not absent:
            return layout
        missing.append(absent)
    raise MissingDataError(
        f"task {layouts[0].name!r} has no complete set of files in {str(root)!r}; "
        + "; or ".join(f"layout {i + 1} lacks {', '.join(a)}" for i, a in enumerate(missing))
        + _layout_hint(root / layouts[0].directory / "x"))


def split_path(task: Union[str, TaskSpec], split: str,
               data_dir: Optional[PathLike] = None) -> pathlib.Path:
    """The file (RACE: folder) `read_split` reads for `split` (for a carved split, its source
    file: IMDB's "dev" is in the train file).

    User tasks have absolute paths and need no data directory.
    """
    task = _as_task(task, data_dir)
    name = task.file_for(split)
    if os.path.isabs(name):
        return pathlib.Path(name)
    return resolve_data_dir(data_dir) / task.directory / name


def read_split(task: Union[str, TaskSpec], split: str,
               data_dir: Optional[PathLike] = None) -> Examples:
    """Read one split ("train", "dev", "test" or one of `other_dev_splits`) of `task`, checking
    every row. A task name is read in the layout `task_for_data` picks.

    With `carved_split = (source, carved, fraction, seed)`, splits `carved` and `source` are
    disjoint parts of the `source` file chosen by `holdout_indices` (IMDB: dev is 20 % of the
    train file). Test files of GLUE have no labels: `labels` is None.

    Raises:
        UnknownTaskError: `task` is an unknown name.
        ValueError: `task` has no such split.
        DataError: see the subclasses; every message names the file and, for row problems,
            the line.
    """
    task = _as_task(task, data_dir)
    path = split_path(task, split, data_dir)
    carve = task.carved_split
    file_split = carve[0] if carve is not None and split == carve[1] else split
    examples = _read_file(task, file_split, path)
    if carve is None or split not in carve[:2]:
        return examples
    source, carved, fraction, seed = carve
    rest, chosen = holdout_indices(len(examples), fraction, seed)
    return examples.take(chosen if split == carved else rest)


def read_race_folder(path: PathLike, task: TaskSpec, labelled: bool = True) -> Examples:
    """Every question of the RACE article files under `path` (`*/*.txt`, sorted), one example
    each: `text` the article, `text_b` the question, `options` its options, `labels` the
    answer's position in `task.label_values` ("A".."D" -> 0..3).

    Raises:
        MissingDataError: `path` is not a folder or holds no `*/*.txt` file.
        MalformedRowError: a file that is not one JSON object with `task`'s keys, a question
            without `task.num_choices` options or an answer, an empty text.
        LabelError: an answer outside `task.label_values`.
    """
    path = pathlib.Path(path)
    if not path.is_dir():
        raise MissingDataError("folder does not exist" + _layout_hint(path), path)
    files = sorted(path.glob("*/*.txt"))
    if not files:
        raise MissingDataError("holds no article files (expected <level>/<name>.txt, e.g. "
                               "high/1.txt)", path)
    ids = {value: i for i, value in enumerate(task.label_values)}
    text, text_b, options, labels, lines = [], [], [], [], []
    for file in files:
        with _utf8(file) as handle:
            raw = handle.read()
        article = _race_article(file, raw, task, labelled)
        questions = article[task.pair_column]
        passage = _race_text(file, article[task.text_column], task.text_column) if questions else None
        for i, question in enumerate(questions):
            where = f"question {i + 1}"
            choices = article[task.options_column][i]
            if not isinstance(choices, list) or len(choices) != task.num_choices:
                raise MalformedRowError(f"{where} has options {_shown(choices)}; expected a list of "
                                        f"{task.num_choices} texts", file)
            text.append(passage)
            text_b.append(_race_text(file, question, where))
            options.append(tuple(_race_text(file, choice, f"{where}, option {task.label_values[j]}")
                                 for j, choice in enumerate(choices)))
            if labelled:
                answer = article[task.label_column][i]
                if answer not in ids:
                    raise LabelError(f"{where}: answer {_shown(answer)} is not one of "
                                     f"{list(task.label_values)}", file)
                labels.append(ids[answer])
            lines.append(i + 1)
    return Examples(text=text, text_b=text_b, labels=np.asarray(labels, np.int64) if labelled else None,
                    lines=np.asarray(lines, np.int64), path=str(path), options=options)


def _race_text(file: pathlib.Path, value, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise MalformedRowError(f"{what} is {_shown(value)}; expected a non-empty text", file)
    return value.strip()


def _race_article(file: pathlib.Path, raw: str, task: TaskSpec, labelled: bool) -> dict:
    """The JSON object of one RACE article file, with its per-question lists of equal length."""
    try:
        article = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise MalformedRowError(f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno}); "
                                f"expected one RACE article object", file) from None
    if not isinstance(article, dict):
        raise MalformedRowError(f"is {_kind(article)}; expected one RACE article object", file)
    keys = [task.text_column, task.pair_column, task.options_column] + ([task.label_column] if labelled else [])
    _require_columns(file, None, "the article object", list(article), keys)
    lists = keys[1:]
    sizes = {key: len(article[key]) if isinstance(article[key], list) else None for key in lists}
    if None in sizes.values() or len(set(sizes.values())) != 1:
        raise MalformedRowError(f"expected {', '.join(lists)} to be lists of one length per question, "
                                f"found {sizes}", file)
    return article


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
    """The distinct labels of `label_column` in a headed file (or a JSON Lines file), as the
    strings of `TaskSpec.label_values`, sorted numerically when they are all integers, else
    alphabetically.

    Raises:
        DataError: the file is missing, empty or malformed, a label is neither a string nor an
            integer, the labels mix the two, or there are fewer than two labels.
    """
    path = pathlib.Path(path)
    keys = _LabelKeys()
    values = {keys.key(path, line, record[label_column])
              for line, record in _records(path, file_format, [label_column])}
    if len(values) < 2:
        raise LabelError(f"column {label_column!r} has {len(values)} distinct label(s) "
                         f"{sorted(values)}; a classification task needs at least 2", path)
    is_int = all(v.lstrip("-").isdigit() for v in values)
    return tuple(sorted(values, key=int if is_int else str))


def _as_task(task: Union[str, TaskSpec], data_dir: Optional[PathLike] = None) -> TaskSpec:
    return task_for_data(task, data_dir)


def _read_file(task: TaskSpec, split: str, path: pathlib.Path) -> Examples:
    """Parse and check every row of `path` as the `split` file of `task`."""
    if task.file_format == "race":
        return read_race_folder(path, task, labelled=split in task.labelled_splits)
    labelled = split in task.labelled_splits
    wanted = [task.text_column] + ([task.pair_column] if task.is_pair else [])
    if labelled:
        wanted.append(task.label_column)
    headerless = task.headerless_columns if split in task.headerless_splits else None
    parse_label = _label_parser(task) if labelled else None

    text, text_b, labels, lines = [], [], [], []
    repair = task.label_values if task.repair_space_joined_label and labelled else None
    for line, record in _records(path, task.file_format, wanted, headerless, repair):
        text.append(_text(path, line, record, task.text_column))
        if task.is_pair:
            text_b.append(_text(path, line, record, task.pair_column))
        if parse_label is not None:
            labels.append(parse_label(path, line, record[task.label_column]))
        lines.append(line)
    if parse_label is None:
        label_array = None
    else:
        label_array = np.asarray(labels, np.float32 if task.is_regression else np.int64)
    return Examples(text=text, text_b=text_b if task.is_pair else None, labels=label_array,
                    lines=np.asarray(lines, np.int64), path=str(path))


# One row of a file: {column: value}. Values are strings, except in JSON Lines files, where they
# are the line's JSON values (str, int, float, bool, None, list or dict).
Record = Dict[str, Any]


def _records(path: pathlib.Path, file_format: str, wanted: Sequence[str],
             headerless_columns: Optional[Sequence[str]] = None,
             joined_labels: Optional[Sequence[str]] = None) -> Iterator[Tuple[int, Record]]:
    """An iterator of `(line number, record)` over the non-blank rows of `path`, each checked to
    have the `wanted` columns; at its end it raises `EmptyFileError` if there was no row.

    `headerless_columns`: the column names of a TSV/CSV file without a header row.
    `joined_labels`: repair rows whose last field ends in " <one of these>" and that lack the
    last column (see `split_joined_label`).
    Not a generator itself, so a missing file is reported here, not at the first `next`.
    """
    if not path.is_file():
        raise MissingDataError("file does not exist" + _layout_hint(path), path)
    if file_format == "jsonl":
        return _json_records(path, wanted)
    return _delimited_records(path, file_format, wanted, headerless_columns, joined_labels)


def split_joined_label(fields: List[str], num_columns: int,
                       labels: Sequence[str]) -> Optional[List[str]]:
    """`fields` with its last field split at its final space, if that gives `num_columns`
    fields and the part after the space is one of `labels`; else None.

    >>> split_joined_label(["1", "q1", "the exam jlpt5? 0"], 4, ("0", "1"))
    ['1', 'q1', 'the exam jlpt5?', '0']
    """
    if len(fields) != num_columns - 1 or " " not in fields[-1]:
        return None
    text, label = fields[-1].rsplit(" ", 1)
    if label not in labels or not text.strip():
        return None
    return fields[:-1] + [text, label]


def _delimited_records(path, file_format, wanted, headerless_columns,
                       joined_labels=None) -> Iterator[Tuple[int, Record]]:
    rows = _rows(path, file_format)
    if headerless_columns is None:
        header_line, header = _header(path, rows)
        _require_columns(path, header_line, "header", header, wanted,
                         hint=_format_hint(header, file_format))
    else:
        header_line, header = 0, list(headerless_columns)
    found = False
    for line, fields in rows:
        found = True
        if joined_labels is not None and len(fields) == len(header) - 1:
            fields = split_joined_label(fields, len(header), joined_labels) or fields
        yield line, dict(zip(header, _fields(path, line, fields, header)))
    if not found:
        what = "has a header but no data rows" if header_line else "is empty"
        raise EmptyFileError(f"file {what}", path)


def _json_records(path, wanted) -> Iterator[Tuple[int, Record]]:
    found = False
    with _utf8(path) as handle:
        for line, raw in enumerate(handle, start=1):
            if raw.strip():
                record = _json_object(path, line, raw)
                _require_columns(path, line, "the object", list(record), wanted)
                found = True
                yield line, record
    if not found:
        raise EmptyFileError("file is empty", path)


@contextlib.contextmanager
def _utf8(path: pathlib.Path, newline: Optional[str] = None):
    """`path` opened as UTF-8 text without its BOM; a byte that is not UTF-8 raises a
    `DataError` naming its line."""
    with open(path, encoding="utf-8-sig", newline=newline) as handle:
        try:
            yield handle
        except UnicodeDecodeError as exc:
            raise DataError(f"not UTF-8 text: {exc.reason} at byte {exc.start}", path,
                            _line_of_bad_byte(path)) from exc


def _rows(path: pathlib.Path, file_format: str) -> Iterator[Tuple[int, List[str]]]:
    """`(line number, fields)` of the non-blank rows of a TSV/CSV file; the line is the one the
    row ends on (a quoted CSV text may span lines)."""
    if file_format == "tsv":
        options = dict(delimiter="\t", quoting=csv.QUOTE_NONE)
    else:
        options = dict(strict=True)
    with _utf8(path, newline="") as handle:
        reader = csv.reader(handle, **options)
        first_line = 1  # of the row being read: where a quote that breaks it was opened
        try:
            for fields in reader:
                if fields:
                    yield reader.line_num, fields
                first_line = reader.line_num + 1
        except csv.Error as exc:
            raise _unparsable_row(path, file_format, first_line, exc) from exc


def _unparsable_row(path, file_format, line, exc: csv.Error) -> MalformedRowError:
    """The error for a row starting on `line` that the csv module cannot parse."""
    shown = _excerpt(_physical_line(path, line))
    if "unexpected end of data" in str(exc):
        return MalformedRowError(
            f'not valid CSV: the quoted text opened in {shown} is never closed; expected a closing '
            f'" (a quote inside a quoted text is written "")', path, line)
    return MalformedRowError(f"not valid {file_format.upper()}: {exc} in {shown}", path, line)


def _physical_line(path: pathlib.Path, line: int) -> str:
    """Line `line` (1-based) of `path` as text, without its line break."""
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as handle:
        return next(itertools.islice(handle, line - 1, None), "").rstrip("\r\n")


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


_LOOKS = {"tsv": "tab-separated", "csv": "comma-separated", "jsonl": "like JSON Lines"}


def _format_hint(first_row: List[str], file_format: str) -> str:
    """' (looks tab-separated: use .tsv or --format tsv)' when the fields a file's first row was
    split into suggest another format than `file_format`, else ''."""
    first = first_row[0].strip()
    if first.startswith(("{", "[")):
        looks = "jsonl"
    elif len(first_row) == 1 and "\t" in first:
        looks = "tsv"
    elif len(first_row) == 1 and "," in first:
        looks = "csv"
    else:
        return ""
    return "" if looks == file_format else f" (looks {_LOOKS[looks]}: use .{looks} or --format {looks})"


def _require_columns(path, line, what, present, wanted, hint="") -> None:
    missing = [name for name in wanted if name not in present]
    if missing:
        raise MalformedRowError(
            f"{what} has no column {', '.join(map(repr, missing))}; its columns are "
            f"{list(present)}{hint}", path, line)


def _fields(path, line, fields, header) -> List[str]:
    if len(fields) != len(header):
        raise MalformedRowError(
            f"expected {len(header)} fields ({', '.join(header)}), found {len(fields)}",
            path, line)
    return fields


def _json_object(path, line, raw: str) -> Record:
    """The JSON object on one line of a JSON Lines file."""
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise MalformedRowError(
            f"not valid JSON: {exc.msg} (column {exc.colno}) in {_excerpt(raw.strip())}; expected "
            f"one JSON object per line{_format_hint([raw], 'jsonl')}", path, line) from None
    if not isinstance(value, dict):
        raise MalformedRowError(f"{_excerpt(raw.strip())} is {_kind(value)}; expected a JSON "
                                f'object such as {{"text": "...", "label": "..."}}', path, line)
    return value


def _text(path, line, record: Record, column: str) -> str:
    value = record[column]
    if not isinstance(value, str):
        raise MalformedRowError(f"column {column!r} is {_kind(value)} ({_shown(value)}); "
                                f"expected a text (a string)", path, line)
    text = value.strip()
    if not text:
        raise MalformedRowError(f"column {column!r} is empty ({value!r}); expected a text",
                                path, line)
    return text


class _LabelKeys:
    """Turns a file's raw labels into `TaskSpec.label_values` strings (a JSON integer 1 is "1"),
    checking that they all have one type: in JSON Lines, 1 on one line and "1" on another is
    a mistake, not one label."""

    def __init__(self):
        self.first = None  # (line, value) of the file's first label

    def key(self, path, line, value) -> str:
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise LabelError(f"label {_shown(value)} is {_kind(value)}; expected a label name (a "
                             f"string) or an integer (scores need a regression task: "
                             f"--regression)", path, line)
        if self.first is None:
            self.first = (line, value)
        first_line, first = self.first
        if type(value) is not type(first):
            raise LabelError(f"label {_shown(value)} is {_kind(value)} but the label on line "
                             f"{first_line} is {_kind(first)} ({_shown(first)}); expected the "
                             f"labels of a file to be all strings or all integers", path, line)
        return value.strip() if isinstance(value, str) else str(value)


def _label_parser(task: TaskSpec):
    """A function `(path, line, value) -> label id or score` that checks against `task`.

    Make one per file: it remembers the type of the file's labels.
    """
    if task.is_regression:
        return lambda path, line, value: _score(task, path, line, value)
    ids = {value: i for i, value in enumerate(task.label_values)}
    keys = _LabelKeys()

    def label_id(path, line, value):
        key = keys.key(path, line, value)
        if key not in ids:
            shown = _shown(key if isinstance(value, str) else value)
            raise LabelError(f"label {shown} is not one of the {task.name} labels "
                             f"{list(task.label_values)}", path, line)
        return ids[key]

    return label_id


def _score(task: TaskSpec, path, line, value) -> float:
    # In TSV/CSV every value is text; in JSON Lines a score must be a JSON number, not "0.5".
    if isinstance(value, str) and task.file_format != "jsonl":
        try:
            score = float(value)
        except ValueError:
            raise LabelError(f"score {value.strip()!r} is not a number", path, line) from None
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        score = float(value)
    else:
        raise LabelError(f"score {_shown(value)} is {_kind(value)}; expected a number", path, line)
    if not math.isfinite(score):
        raise LabelError(f"score {_shown(value)} is not finite", path, line)
    if task.score_range is not None:
        low, high = task.score_range
        if not low <= score <= high:
            raise LabelError(f"score {_shown(value)} is outside the {task.name} range "
                             f"[{low}, {high}]", path, line)
    return score


def _kind(value) -> str:
    """The JSON type of `value`, with its article: "a string", "an integer", "null", ..."""
    if value is None:
        return "null"
    for kind, name in ((bool, "a boolean"), (int, "an integer"), (float, "a fractional number"),
                       (str, "a string"), (list, "a list")):
        if isinstance(value, kind):
            return name
    return "an object"


def _shown(value) -> str:
    """`value` as a message shows it: strings quoted by Python, other values as JSON writes
    them (so 1 and '1' differ)."""
    return repr(value) if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _excerpt(text: str, limit: int = 80) -> str:
    """`text` quoted, cut to `limit` characters."""
    return repr(text if len(text) <= limit else text[:limit] + "...")
