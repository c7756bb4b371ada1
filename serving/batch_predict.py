"""`powerbert predict`: batch prediction from a file with an exported model.

Reads inputs from a plain text file (one per line), a CSV or TSV file with a header, or a JSON
Lines file, and writes one JSON line per input, in input order:
`{"line", "label", "label_name", "probabilities"}`, or `{"line", "score"}` for regression.

The file is streamed `CHUNK_INPUTS` inputs at a time, so memory does not grow with its size:
each chunk is tokenized in Python with the export's own vocabulary, sorted by token length into
batches (padded to their longest input when `serving_default` takes a dynamic length, else to N),
run through `serving_default`, and written back in input order.

The output is written to a hidden temporary file beside it and renamed into place on success, so
a failed run never leaves a partial output under the final name (an older file there is kept).
"""

import contextlib
import csv
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass

import numpy as np

from serving.savedmodel import SERVING_SIGNATURE, op_types, version_dirs

FORMATS = {".txt": "text", ".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl"}
# Inputs read, predicted and written at a time: what bounds the memory.
CHUNK_INPUTS = 4096
DEFAULT_BATCH_SIZE = 64
_SHOWN_CHARS = 80  # of an offending value in a bad-line message
_BAR_WIDTH = 30


class PredictError(ValueError):
    """A bad flag, model directory or input header, reported before any prediction."""


class BadLineError(PredictError):
    """An input line that cannot be predicted, without --skip-bad-lines."""


# === Command line ===

def add_predict_parser(commands):
    predict = commands.add_parser(
        "predict", help="batch prediction from a file with an exported model",
        description="Predict every input of a text, CSV, TSV or JSON Lines file with a model written "
                    "by `powerbert export`, streaming the file in chunks (memory does not grow with "
                    "its size). Writes one JSON line per input, in input order: {line, label, "
                    "label_name, probabilities}, or {line, score} for regression. The output "
                    "appears only when the whole file succeeded.")
    predict.add_argument("--model", required=True,
                         help="model base path (<base>/<version>/) written by `powerbert export`")
    predict.add_argument("--version", type=int, default=None, help="version to use (default: the newest)")
    predict.add_argument("--input", required=True, help="file of inputs (.txt, .csv, .tsv or .jsonl)")
    predict.add_argument("--output", required=True, help="JSON Lines file of predictions (replaced if it exists)")
    predict.add_argument("--format", choices=sorted(set(FORMATS.values())), default=None,
                         help="format of --input (default: from its extension)")
    predict.add_argument("--text-column", default=None,
                         help="CSV/TSV column or JSON field of the text (default: text)")
    predict.add_argument("--text-pair-column", default=None,
                         help="column or field of the second text; required for pair models")
    predict.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                         help=f"inputs per model call (default: {DEFAULT_BATCH_SIZE})")
    predict.add_argument("--skip-bad-lines", action="store_true",
                         help="report bad input lines on stderr and go on (default: stop at the first)")


def predict_main(args):
    job = check_job(args)
    predictor = Predictor(job.version_dir, job.metadata, job.batch_size)
    summary = predict_file(job, predictor, CHUNK_INPUTS)
    print(f"{summary}; wrote {job.output}")
    return 0


# === The checked job ===

@dataclass(frozen=True)
class PredictJob:
    """A `powerbert predict` command whose flags, model and input header have been checked."""

    input: str
    output: str
    format: str
    text_column: str  # None for plain text
    pair_column: str  # None for single-text models
    version_dir: str
    metadata: dict    # the export's assets/powerbert.json
    batch_size: int
    skip_bad_lines: bool


def check_job(args):
    """The job `args` ask for; a PredictError names the bad flag before any model is loaded."""
    from serving.export import read_metadata

    _check_paths(args.input, args.output)
    if args.batch_size < 1:
        raise PredictError(f"--batch-size must be at least 1, got {args.batch_size}")
    file_format = input_format(args.input, args.format)
    version_dir = version_directory(args.model, args.version)
    metadata = read_metadata(version_dir)
    if metadata.get("num_choices"):
        raise PredictError(f"{version_dir} is a multiple-choice model ({metadata['task']}); powerbert predict "
                           f"reads texts and text pairs: send article, question and options to its "
                           f"classify_text signature (powerbert serve) instead")
    text_column, pair_column = _columns(file_format, args.text_column, args.text_pair_column,
                                        metadata["pair"])
    job = PredictJob(args.input, args.output, file_format, text_column, pair_column, version_dir,
                     metadata, args.batch_size, args.skip_bad_lines)
    with open(job.input, "rb") as handle:
        read_records(job, handle)  # a CSV/TSV header without the columns fails here
    return job


def _check_paths(input_path, output_path):
    if not os.path.isfile(input_path):
        raise PredictError(f"--input {input_path}: no such file")
    if os.path.isdir(output_path):
        raise PredictError(f"--output {output_path} is a directory; pass a file name")
    directory = os.path.dirname(os.path.abspath(output_path))
    if not os.path.isdir(directory):
        raise PredictError(f"--output {output_path}: its directory {directory} does not exist")
    same = os.path.realpath(input_path) == os.path.realpath(output_path) or (
        os.path.exists(output_path) and os.path.samefile(input_path, output_path))
    if same:
        raise PredictError(f"--output {output_path} is the input file; pass another file name")


def input_format(path, given=None):
    """`given`, else the format of `path`'s extension."""
    if given:
        return given
    extension = os.path.splitext(path)[1].lower()
    if extension not in FORMATS:
        raise PredictError(f"cannot tell the format of {path} from its extension "
                           f"({', '.join(FORMATS)}); pass --format {'|'.join(sorted(set(FORMATS.values())))}")
    return FORMATS[extension]


def version_directory(base, version=None):
    """The directory of `version` (default: the newest) under the model base path `base`."""
    if not os.path.isdir(base):
        raise PredictError(f"--model {base}: no such model directory")
    versions = version_dirs(base)
    if not versions:
        if os.path.isfile(os.path.join(base, "saved_model.pb")):
            raise PredictError(f"--model {base} is a version directory; pass its parent "
                               f"{os.path.dirname(os.path.abspath(base))} (and --version)")
        raise PredictError(f"--model {base} holds no versions (numeric directories such as "
                           f"{os.path.join(base, '1')}, as `powerbert export` writes them)")
    if version is None:
        return versions[max(versions)]
    if version not in versions:
        raise PredictError(f"--model {base} has no version {version}; it has {sorted(versions)}")
    return versions[version]


def _columns(file_format, text_column, pair_column, pair):
    """(text column, pair column) of the input, checked against the model's kind."""
    if pair and file_format == "text":
        raise PredictError("the model classifies text pairs; give them as csv, tsv or jsonl "
                           "with --text-column and --text-pair-column")
    if file_format == "text":
        if text_column or pair_column:
            raise PredictError("--text-column and --text-pair-column are for csv, tsv and jsonl "
                               "input; a text file holds one input per line")
        return None, None
    if pair and not pair_column:
        raise PredictError("the model classifies text pairs; pass --text-pair-column (the column "
                           "of the second text)")
    if not pair and pair_column:
        raise PredictError("the model classifies single texts; --text-pair-column is for pair models")
    return text_column or "text", pair_column


# === Reading the input ===

@dataclass(frozen=True)
class Record:
    """One input: its (first) line number in the file and its text(s)."""

    line: int
    text: str
    text_b: str = None


@dataclass(frozen=True)
class BadLine:
    line: int
    problem: str
    shown: str  # the offending value, shortened

    def message(self, path):
        return f"{path}:{self.line}: {self.problem} ({self.shown})"


class _LineReader:
    """The lines of a binary file as text (line endings kept), counting the bytes read.

    Bytes that are not UTF-8 become lone surrogates (`surrogateescape`), so such a line is
    reported by its number (see `_text_problem`) instead of ending the read.
    """

    def __init__(self, handle):
        self._handle = handle
        self.bytes_read = 0

    def __iter__(self):
        for number, raw in enumerate(self._handle, start=1):
            self.bytes_read += len(raw)
            line = raw.decode("utf-8", "surrogateescape")
            yield line.removeprefix("\ufeff") if number == 1 else line


def read_records(job, handle):
    """(line reader, iterator of Record or BadLine) of the input opened as binary `handle`.

    A CSV/TSV header is read now: one without the job's columns is a PredictError.
    """
    lines = _LineReader(handle)
    columns = [c for c in (job.text_column, job.pair_column) if c is not None]
    if job.format == "text":
        return lines, _text_records(lines)
    if job.format == "jsonl":
        return lines, _jsonl_records(lines, columns)
    return lines, _table_records(lines, job.format, columns, job.input)


def _text_records(lines):
    for number, line in enumerate(lines, start=1):
        yield _checked_record(number, [("text", line.rstrip("\r\n"))])


def _jsonl_records(lines, columns):
    for number, line in enumerate(lines, start=1):
        yield _jsonl_record(number, line.rstrip("\r\n"), columns)


def _jsonl_record(number, line, columns):
    try:
        value = json.loads(line)
    except ValueError as err:
        return BadLine(number, f"invalid JSON: {err}", _shown(line))
    if not isinstance(value, dict):
        return BadLine(number, "not a JSON object", _shown(line))
    missing = [c for c in columns if c not in value]
    if missing:
        return BadLine(number, f"no field {missing[0]!r}", _shown(line))
    return _checked_record(number, [(f"field {c!r}", value[c]) for c in columns])


class _RecordText:
    """Feeds lines to `csv.reader`, keeping those of the record being read to show a bad one."""

    def __init__(self, lines):
        self._lines = iter(lines)
        self.current = []

    def __iter__(self):
        return self

    def __next__(self):
        line = next(self._lines)
        self.current.append(line)
        return line

    def text(self):
        return "".join(self.current).rstrip("\r\n")


def _table_records(lines, file_format, columns, path):
    """Records of a CSV or TSV file; its header is read now and must hold `columns`."""
    source = _RecordText(lines)
    # TSV as GLUE writes it (and IANA defines it): no quoting, a quote is an ordinary character.
    options = dict(delimiter="\t", quoting=csv.QUOTE_NONE) if file_format == "tsv" else dict(strict=True)
    reader = csv.reader(source, **options)
    try:
        header = next(reader, None)
    except csv.Error as err:
        raise PredictError(f"{path}:1: the header is not valid {file_format.upper()}: {err}") from None
    if header is None:
        raise PredictError(f"{path} is empty; a {file_format.upper()} file starts with a header line")
    header = [name.strip() for name in header]
    missing = [c for c in columns if c not in header]
    if missing:
        raise PredictError(f"{path}:1: the header has no column {missing[0]!r}; its columns are {header} "
                           "(choose with --text-column / --text-pair-column)")
    return _table_rows(reader, source, file_format, len(header), [(c, header.index(c)) for c in columns])


def _table_rows(reader, source, file_format, width, columns):
    while True:
        start = reader.line_num + 1  # a quoted field may go on over later lines
        source.current = []
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as err:  # the reader goes on with the next line
            yield BadLine(start, f"not valid {file_format.upper()}: {err}", _shown(source.text()))
            continue
        if len(fields) != width:
            yield BadLine(start, f"expected {width} fields, got {len(fields)}", _shown(source.text()))
            continue
        yield _checked_record(start, [(f"column {name!r}", fields[index]) for name, index in columns])


def _checked_record(line, named_texts):
    """A Record of the texts, or a BadLine naming the first that is not a non-empty UTF-8 string."""
    for what, value in named_texts:
        problem = _text_problem(value, what)
        if problem:
            return BadLine(line, problem, _shown(value))
    return Record(line, *(value for _, value in named_texts))


def _text_problem(value, what):
    if not isinstance(value, str):
        return f"{what} is not a string"
    if not value.strip():
        return f"empty {what}"
    if not _is_utf8(value):
        return f"{what} is not UTF-8"
    return None


def _is_utf8(text):
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # the lone surrogates of undecodable bytes
        return False
    return True


def _shown(value):
    """`value` for a message: a string's repr (its raw bytes if not UTF-8), else its JSON, shortened."""
    if isinstance(value, str):
        shown = repr(value) if _is_utf8(value) else repr(value.encode("utf-8", "surrogateescape"))
    else:
        shown = json.dumps(value, ensure_ascii=False)
    return shown if len(shown) <= _SHOWN_CHARS else shown[:_SHOWN_CHARS - 3] + "..."


class _BadLines:
    """What becomes of a bad input line: it stops the run, or (`skip`) is reported on `stream`."""

    def __init__(self, path, skip, stream):
        self.path, self.skip, self.stream = path, skip, stream
        self.count = 0

    def good(self, items):
        """The Records of `items`; each BadLine raises a BadLineError or is reported and skipped."""
        for item in items:
            if isinstance(item, Record):
                yield item
                continue
            message = item.message(self.path)
            if not self.skip:
                raise BadLineError(message)
            self.count += 1
            print(message, file=self.stream, flush=True)


def _chunks(records, size):
    chunk = []
    for record in records:
        chunk.append(record)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


# === The model ===

def export_lower_cases(version_dir, metadata):
    """Whether the export's tokenizer lower-cases: `powerbert.json`'s `lower_case`, or for exports
    written before it recorded that, whether its `classify_text` graph holds a StringLower op (a
    cased tokenizer has no lower-casing op)."""
    if "lower_case" in metadata:
        return bool(metadata["lower_case"])
    return "StringLower" in op_types(version_dir)


def length_sorted_batches(lengths, batch_size):
    """Index arrays of batches of at most `batch_size` inputs, by increasing length (stable)."""
    order = np.argsort(lengths, kind="stable")
    return [order[start:start + batch_size] for start in range(0, len(order), batch_size)]


class Predictor:
    """An exported version's `serving_default`, fed by its own vocabulary, in length-sorted batches."""

    def __init__(self, version_dir, metadata, batch_size=DEFAULT_BATCH_SIZE):
        from powerbert_tf import BertTokenizer
        from serving.servable import Servable

        version = int(os.path.basename(os.path.normpath(version_dir)))
        self.servable = Servable(os.path.basename(os.path.dirname(os.path.abspath(version_dir))), version,
                                 version_dir)
        signature = self.servable.signature(SERVING_SIGNATURE)
        self.input_names = sorted(signature.inputs)
        self.dynamic_length = signature.inputs["input_ids"].shape[1] is None
        self.regression = "score" in signature.outputs
        self.max_length, self.label_names = metadata["max_length"], metadata["label_names"]
        self.batch_size = batch_size
        self.tokenizer = BertTokenizer.from_vocab_file(os.path.join(version_dir, "assets", "vocab.txt"),
                                                       lower_case=export_lower_cases(version_dir, metadata))

    def predict(self, texts, pair_texts=None):
        """One result dict per text, in the order given."""
        inputs = {name: tensor.numpy() for name, tensor in
                  self.tokenizer(texts, pair_texts, max_length=self.max_length).items()}
        lengths = inputs["attention_mask"].sum(axis=1)
        results = [None] * len(texts)
        for batch in length_sorted_batches(lengths, self.batch_size):
            width = int(lengths[batch].max()) if self.dynamic_length else self.max_length
            outputs = self.servable.run(SERVING_SIGNATURE,
                                        {name: inputs[name][batch, :width] for name in self.input_names})
            for row, index in enumerate(batch):
                results[index] = self._result(outputs, row)
        return results

    def _result(self, outputs, row):
        if self.regression:
            return {"score": float(outputs["score"][row])}
        label = int(outputs["label"][row])
        return {"label": label, "label_name": self.label_names[label],
                "probabilities": outputs["probabilities"][row].tolist()}


# === Running a file ===

@dataclass(frozen=True)
class Summary:
    inputs: int
    bad_lines: int
    seconds: float

    def __str__(self):
        rate = self.inputs / self.seconds if self.seconds > 0 else 0.0
        return (f"predicted {self.inputs} inputs, skipped {self.bad_lines} bad lines, "
                f"{self.seconds:.1f} s, {rate:.0f} inputs/s")


class _Progress:
    """A bar of the bytes read (no pass to count lines first), redrawn when `stream` is a terminal."""

    def __init__(self, total_bytes, stream):
        self.total_bytes, self.stream = total_bytes, stream
        self.shown = stream.isatty()
        self.start = time.monotonic()

    def update(self, bytes_read, inputs):
        if not self.shown:
            return
        fraction = min(bytes_read / self.total_bytes, 1.0) if self.total_bytes else 1.0
        seconds = time.monotonic() - self.start
        filled = int(fraction * _BAR_WIDTH)
        rate = inputs / seconds if seconds > 0 else 0.0
        left = seconds * (1 - fraction) / fraction if fraction > 0 else 0.0
        self.stream.write(f"\r[{'=' * filled}{'.' * (_BAR_WIDTH - filled)}] {fraction:4.0%} "
                          f"{inputs} inputs, {rate:.0f}/s, {left:.0f} s left ")
        self.stream.flush()

    def close(self):
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()


@contextlib.contextmanager
def _replaced_on_success(path):
    """A text file that becomes `path` only when the block ends without an exception."""
    directory, name = os.path.split(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=directory)
    try:
        with open(handle, "w", encoding="utf-8", newline="\n") as out:
            yield out
        os.chmod(temporary, _new_file_mode())  # mkstemp's 0600 would outlive the rename
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def _new_file_mode():
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def predict_file(job, predictor, chunk_inputs=CHUNK_INPUTS, stderr=None):
    """Predict every input of `job.input` into `job.output`, `chunk_inputs` at a time; a Summary."""
    stderr = stderr or sys.stderr
    start = time.monotonic()
    bad_lines = _BadLines(job.input, job.skip_bad_lines, stderr)
    progress = _Progress(os.path.getsize(job.input), stderr)
    inputs = 0
    try:
        with open(job.input, "rb") as handle, _replaced_on_success(job.output) as out:
            lines, items = read_records(job, handle)
            for chunk in _chunks(bad_lines.good(items), chunk_inputs):
                pair_texts = [r.text_b for r in chunk] if job.pair_column else None
                results = predictor.predict([r.text for r in chunk], pair_texts)
                for record, result in zip(chunk, results):
                    out.write(json.dumps({"line": record.line, **result}, ensure_ascii=False) + "\n")
                inputs += len(chunk)
                progress.update(lines.bytes_read, inputs)
    finally:
        progress.close()
    return Summary(inputs, bad_lines.count, time.monotonic() - start)
