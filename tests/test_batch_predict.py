"""`powerbert predict`: every input format gives the model's own prediction for each text, on its
line, in input order, though batches are length-sorted; bad lines stop the run (or are skipped)
with their line numbers; a failed run leaves no output; memory stays flat from 10k to 100k lines."""

import csv
import io
import json
import os
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np
import pytest
import tensorflow as tf

import serving.batch_predict as batch_predict
from powerbert_cli.main import build_parser, main
from powerbert_tf import BertTokenizer
from serving.export import export_saved_model, read_metadata
from serving.servable import Servable
from tests.serving_fixtures import TINY_N, TINY_RETENTION, WORDS, tiny_classifier, tiny_tokenizer, tiny_vocab

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_rng = np.random.default_rng(0)
# Distinct texts of 1 to 23 words: some longer than N=16 tokens (truncated), mixed case, punctuation.
TEXTS = ["The MOVIE was GREAT !", 'a "quoted" , comma story', "dull"] + [
    " ".join(_rng.choice(WORDS, size=n)) for n in _rng.integers(1, 24, size=20)]
PAIRS = [" ".join(_rng.choice(WORDS, size=n)) for n in _rng.integers(1, 12, size=len(TEXTS))]
ATOL = 5e-5  # batch vs single-text float32 noise; distinct texts differ by more than 1e-3


# === Exported models and the reference ===

def export_spread(base, retention=TINY_RETENTION, num_classes=2, pair=False, dynamic_length=False,
                  tokenizer=None):
    """(model, tokenizer) of a tiny classifier exported under `base`.

    A random tiny model gives every text nearly the same probabilities; its head is scaled up
    and centred on TEXTS so texts differ visibly and a prediction written on the wrong line
    cannot pass for the right one.
    """
    model, tokenizer = tiny_classifier(retention, num_classes), tokenizer or tiny_tokenizer()
    kernel, bias = model.head.get_weights()
    model.head.set_weights([kernel * 1000, bias])
    logits = model(tokenizer(TEXTS, max_length=TINY_N), training=False).numpy()
    model.head.set_weights([kernel * 1000, bias - logits.mean(axis=0)])
    labels = [f"class_{i}" for i in range(num_classes)] if num_classes > 1 else []
    export_saved_model(model, tokenizer, base=str(base), max_length=TINY_N, label_names=labels,
                       task_name="tiny", pair=pair, dynamic_length=dynamic_length)
    return model, tokenizer


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    base = tmp_path_factory.mktemp("models") / "single"
    return (base, *export_spread(base))


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    base = tmp_path_factory.mktemp("models") / "pair"
    return (base, *export_spread(base, pair=True))


_references = {}  # the formats' tests share texts and models


def reference_logits(model, tokenizer, text, text_b=None, dynamic=False):
    """The Keras model's logits for one text (pair) alone: padded to N, or for a dynamic-length
    export to its own length."""
    key = (id(model), id(tokenizer), text, text_b, dynamic)
    if key not in _references:
        inputs = tokenizer([text], None if text_b is None else [text_b], max_length=TINY_N)
        if dynamic:
            length = int(inputs["attention_mask"].numpy().sum())
            inputs = {name: value[:, :length] for name, value in inputs.items()}
        _references[key] = model(inputs, training=False).numpy()[0]
    return _references[key]


def assert_reference_predictions(rows, expected, model, tokenizer, dynamic=False):
    """`rows` are one per (line, text, text_b) of `expected`, in that order, with the model's output."""
    assert [row["line"] for row in rows] == [line for line, _, _ in expected]
    for row, (line, text, text_b) in zip(rows, expected):
        logits = reference_logits(model, tokenizer, text, text_b, dynamic)
        np.testing.assert_allclose(row["probabilities"], tf.nn.softmax(logits).numpy(), atol=ATOL,
                                   err_msg=f"line {line}: {text!r}")
        assert row["label"] == int(logits.argmax()) and row["label_name"] == f"class_{logits.argmax()}"
        assert sorted(row) == ["label", "label_name", "line", "probabilities"]


# === Input files: (content, [(line, text, text_b)]) ===

def as_text(texts):
    return "".join(t + "\n" for t in texts), [(i, t, None) for i, t in enumerate(texts, start=1)]


def as_jsonl(texts, pairs=None):
    rows = [{"id": i, "sentence": t} | ({"second": pairs[i]} if pairs else {}) for i, t in enumerate(texts)]
    return ("".join(json.dumps(r) + "\n" for r in rows),
            [(i, t, pairs[i - 1] if pairs else None) for i, t in enumerate(texts, start=1)])


def as_csv(texts, pairs=None):
    """CSV with an id column first; a quoted field may span lines, so line numbers are counted."""
    buffer, expected = io.StringIO(), []
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["id", "sentence"] + (["second"] if pairs else []))
    for i, text in enumerate(texts):
        expected.append((buffer.getvalue().count("\n") + 1, text, pairs[i] if pairs else None))
        writer.writerow([i, text] + ([pairs[i]] if pairs else []))
    return buffer.getvalue(), expected


def as_tsv(texts):
    """TSV as GLUE writes it: no quoting, so a quote is part of the text."""
    lines = ["sentence\tlabel"] + [f"{t}\t0" for t in texts]
    return "".join(line + "\n" for line in lines), [(i, t, None) for i, t in enumerate(texts, start=2)]


def run_predict(capsys, tmp_path, base, name, content, *flags):
    """`powerbert predict` on a file `name` holding `content`: exit code, output rows (None when
    no output file), stdout, stderr and the paths."""
    source, output = tmp_path / name, tmp_path / "predictions.jsonl"
    source.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    code = main(["predict", "--model", str(base), "--input", str(source), "--output", str(output), *flags])
    captured = capsys.readouterr()
    rows = [json.loads(line) for line in output.read_text().splitlines()] if output.exists() else None
    return SimpleNamespace(code=code, rows=rows, out=captured.out, err=captured.err, input=source,
                           output=output)


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of 7 inputs (batches of 3 are passed as a flag): every file spans several chunks."""
    monkeypatch.setattr(batch_predict, "CHUNK_INPUTS", 7)


# === Predictions ===

@pytest.mark.parametrize("name, write, flags", [
    ("in.txt", as_text, []),
    ("in.csv", as_csv, ["--text-column", "sentence"]),
    ("in.tsv", as_tsv, ["--text-column", "sentence"]),
    ("in.jsonl", as_jsonl, ["--text-column", "sentence"]),
    ("in.data", as_jsonl, ["--format", "jsonl", "--text-column", "sentence"]),
])
def test_predictions_equal_the_model_on_each_text_alone_in_input_order(
        single, small_chunks, capsys, tmp_path, name, write, flags):
    base, model, tokenizer = single
    texts = TEXTS + (["good\nmovie , two lines"] if write is as_csv else [])
    content, expected = write(texts)
    result = run_predict(capsys, tmp_path, base, name, content, "--batch-size", "3", *flags)
    assert result.code == 0, result.err
    assert_reference_predictions(result.rows, expected, model, tokenizer)
    assert f"predicted {len(texts)} inputs, skipped 0 bad lines" in result.out
    assert sorted(os.listdir(tmp_path)) == sorted([name, "predictions.jsonl"])  # no temporary left


def test_dynamic_length_batches_are_length_sorted_and_padded_to_their_longest(
        tmp_path, small_chunks, capsys, monkeypatch):
    base = tmp_path / "dynamic"
    model, tokenizer = export_spread(base, retention=None, dynamic_length=True)
    calls, run = [], Servable.run

    def recording_run(self, signature, arrays):
        calls.append(arrays["attention_mask"])
        return run(self, signature, arrays)

    monkeypatch.setattr(Servable, "run", recording_run)
    content, expected = as_text(TEXTS)
    result = run_predict(capsys, tmp_path, base, "in.txt", content, "--batch-size", "3")
    assert result.code == 0, result.err
    assert_reference_predictions(result.rows, expected, model, tokenizer, dynamic=True)

    lengths = [mask.sum(axis=1) for mask in calls]
    # Each batch is as wide as its longest input: no column of padding only.
    assert [mask.shape[1] for mask in calls] == [int(n.max()) for n in lengths]
    # Within each chunk of 7 (batches of 3, 3, 1), batches follow increasing length.
    for chunk in range(0, len(calls), 3):
        in_chunk = np.concatenate(lengths[chunk:chunk + 3])
        assert (np.diff(in_chunk) >= 0).all()
    real = [len(tokenizer.wordpiece_ids([t]).flat_values) + 2 for t in TEXTS]
    assert sum(map(int, np.concatenate(lengths))) == sum(min(n, TINY_N) for n in real)
    assert [r["line"] for r in result.rows] == list(range(1, len(TEXTS) + 1))


def test_length_sorted_batches_cover_every_input_once_by_increasing_length():
    lengths = np.array([5, 2, 9, 2, 7, 3, 3])
    batches = batch_predict.length_sorted_batches(lengths, 3)
    assert [len(b) for b in batches] == [3, 3, 1]
    order = np.concatenate(batches)
    assert sorted(order) == list(range(len(lengths)))
    assert list(lengths[order]) == sorted(lengths)
    assert list(order[:2]) == [1, 3]  # ties keep input order


@pytest.mark.parametrize("name, write", [("in.csv", as_csv), ("in.jsonl", as_jsonl)])
def test_pair_model_reads_both_columns(pair, small_chunks, capsys, tmp_path, name, write):
    base, model, tokenizer = pair
    content, expected = write(TEXTS, PAIRS)
    result = run_predict(capsys, tmp_path, base, name, content, "--batch-size", "3",
                         "--text-column", "sentence", "--text-pair-column", "second")
    assert result.code == 0, result.err
    assert_reference_predictions(result.rows, expected, model, tokenizer)
    # The second text matters: the same first texts alone predict otherwise.
    alone = [reference_logits(model, tokenizer, t) for t in TEXTS]
    assert not np.allclose([tf.nn.softmax(a).numpy() for a in alone],
                           [r["probabilities"] for r in result.rows], atol=1e-3)


def test_regression_model_writes_one_score_per_line(tmp_path, capsys):
    base = tmp_path / "regression"
    model, tokenizer = export_spread(base, retention=None, num_classes=1)
    content, expected = as_text(TEXTS)
    result = run_predict(capsys, tmp_path, base, "in.txt", content)
    assert result.code == 0, result.err
    assert [sorted(r) for r in result.rows] == [["line", "score"]] * len(TEXTS)
    scores = [reference_logits(model, tokenizer, text)[0] for _, text, _ in expected]
    np.testing.assert_allclose([r["score"] for r in result.rows], scores, atol=ATOL)


def test_a_cased_export_is_tokenized_cased(tmp_path, capsys, single):
    # powerbert.json records lower-casing; for older exports without that field, the
    # classify_text graph shows it.
    base = tmp_path / "cased"
    cased = BertTokenizer(tiny_vocab(), lower_case=False)
    model, _ = export_spread(base, tokenizer=cased)
    assert read_metadata(str(base / "1"))["lower_case"] is False
    assert read_metadata(str(single[0] / "1"))["lower_case"] is True
    assert not batch_predict.export_lower_cases(str(base / "1"), {})
    assert batch_predict.export_lower_cases(str(single[0] / "1"), {})
    texts = ["GOOD MOVIE", "The Plot WAS awful", "Dull Actors"]
    result = run_predict(capsys, tmp_path, base, "in.txt", as_text(texts)[0])
    assert result.code == 0, result.err
    assert_reference_predictions(result.rows, as_text(texts)[1], model, cased)
    lowered = [tf.nn.softmax(reference_logits(model, tiny_tokenizer(), t)).numpy() for t in texts]
    assert not np.allclose(lowered, [r["probabilities"] for r in result.rows], atol=1e-3)


def test_progress_bar_follows_the_bytes_read(single, tmp_path):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    base, _, _ = single
    content, _ = as_text(TEXTS)
    (tmp_path / "in.txt").write_text(content)
    args = build_parser().parse_args(["predict", "--model", str(base), "--input", str(tmp_path / "in.txt"),
                                      "--output", str(tmp_path / "out.jsonl")])
    job = batch_predict.check_job(args)
    terminal = Terminal()
    summary = batch_predict.predict_file(job, batch_predict.Predictor(job.version_dir, job.metadata), 5,
                                         stderr=terminal)
    bars = terminal.getvalue().rstrip("\n").split("\r")[1:]
    assert len(bars) == 5  # one per chunk of 5 of the 23 inputs
    percents = [int(bar.split("]")[1].split("%")[0]) for bar in bars]
    assert percents == sorted(percents) and percents[-1] == 100 and 0 < percents[0] < 50
    assert f"{len(TEXTS)} inputs" in bars[-1]
    assert (summary.inputs, summary.bad_lines) == (len(TEXTS), 0)


# === Bad lines ===

BAD_LINES = [
    # (file name, content, flags, bad line, problem)
    ("in.txt", "good movie\n   \nfun story\n", [], 2, "empty text ('   ')"),
    ("in.txt", b"good movie\nbad \xff plot\nfun story\n", [], 2, "text is not UTF-8 (b'bad \\xff plot')"),
    ("in.csv", "text,label\ngood movie,1\nbad plot,0,extra\nfun,1\n", [], 3,
     "expected 2 fields, got 3 ('bad plot,0,extra')"),
    ("in.csv", "text,label\ngood movie,1\nbad plot\nfun,1\n", [], 3, "expected 2 fields, got 1 ('bad plot')"),
    ("in.csv", 'text,label\ngood movie,1\n"",0\nfun,1\n', [], 3, "empty column 'text' ('')"),
    ("in.csv", 'text,label\ngood movie,1\n"bad" plot,0\nfun,1\n', [], 3,
     "not valid CSV: ',' expected after '\"'"),
    ("in.jsonl", '{"text": "good movie"}\n{"text": "bad plot"\n{"text": "fun"}\n', [], 2,
     "invalid JSON: Expecting ',' delimiter"),
    ("in.jsonl", '{"text": "good movie"}\n{"sentence": "bad plot"}\n{"text": "fun"}\n', [], 2,
     "no field 'text' ('{\"sentence\": \"bad plot\"}')"),
    ("in.jsonl", '{"text": "good movie"}\n{"text": 42}\n{"text": "fun"}\n', [], 2,
     "field 'text' is not a string (42)"),
    ("in.jsonl", '{"text": "good movie"}\n["bad plot"]\n{"text": "fun"}\n', [], 2,
     "not a JSON object ('[\"bad plot\"]')"),
    ("in.jsonl", '{"text": "good movie"}\n\n{"text": "fun"}\n', [], 2, "invalid JSON: Expecting value"),
]


@pytest.mark.parametrize("name, content, flags, line, problem", BAD_LINES)
def test_a_bad_line_stops_the_run_and_leaves_no_output(single, capsys, tmp_path, name, content, flags,
                                                       line, problem):
    result = run_predict(capsys, tmp_path, single[0], name, content, *flags)
    assert result.code == 2
    assert f"powerbert: error: {result.input}:{line}: {problem}" in result.err
    assert result.rows is None and os.listdir(tmp_path) == [name]  # no output, no temporary


@pytest.mark.parametrize("name, content, flags, line, problem", BAD_LINES)
def test_skip_bad_lines_reports_each_and_predicts_the_rest(single, capsys, tmp_path, name, content,
                                                          flags, line, problem):
    result = run_predict(capsys, tmp_path, single[0], name, content, "--skip-bad-lines", *flags)
    assert result.code == 0, result.err
    assert f"{result.input}:{line}: {problem}" in result.err
    first = 2 if name.endswith(".csv") else 1
    assert [r["line"] for r in result.rows] == [n for n in (first, first + 1, first + 2) if n != line]
    assert "predicted 2 inputs, skipped 1 bad lines" in result.out


def test_every_bad_line_is_reported_with_its_own_number(single, capsys, tmp_path):
    content = "good\n\nbad plot\n  \nfun\n\n"
    result = run_predict(capsys, tmp_path, single[0], "in.txt", content, "--skip-bad-lines")
    assert [line.split(":")[1] for line in result.err.splitlines()] == ["2", "4", "6"]
    assert [r["line"] for r in result.rows] == [1, 3, 5]
    assert "predicted 3 inputs, skipped 3 bad lines" in result.out


def test_a_failure_after_written_chunks_keeps_the_previous_output(single, capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(batch_predict, "CHUNK_INPUTS", 4)
    calls, run = [], Servable.run
    monkeypatch.setattr(Servable, "run", lambda self, *a: calls.append(1) or run(self, *a))
    (tmp_path / "predictions.jsonl").write_text('{"previous": true}\n')
    content = "".join(f"{text}\n" for text in TEXTS[:20]) + "\n" + "good movie\n"
    result = run_predict(capsys, tmp_path, single[0], "in.txt", content)
    assert result.code == 2 and f"{result.input}:21: empty text" in result.err
    assert len(calls) >= 5  # the 20 inputs before the bad line were predicted and written...
    assert result.rows == [{"previous": True}]  # ...to a temporary only
    assert sorted(os.listdir(tmp_path)) == ["in.txt", "predictions.jsonl"]


# === Bad flags: all refused before the model loads ===

@pytest.fixture
def no_model_load(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the flags were checked")

    monkeypatch.setattr("serving.servable.Servable", refuse)


@pytest.mark.parametrize("model, name, content, flags, message", [
    ("missing", "in.txt", "good\n", [], "--model {tmp}/missing: no such model directory"),
    ("empty", "in.txt", "good\n", [], "holds no versions (numeric directories such as"),
    ("single/1", "in.txt", "good\n", [], "is a version directory; pass its parent"),
    ("single", "in.txt", "good\n", ["--version", "9"], "has no version 9; it has [1]"),
    ("pair", "in.csv", "text,other\na,b\n", [], "the model classifies text pairs; pass --text-pair-column"),
    ("pair", "in.txt", "good\n", [], "the model classifies text pairs; give them as csv, tsv or jsonl"),
    ("single", "in.csv", "text,other\na,b\n", ["--text-pair-column", "other"],
     "the model classifies single texts; --text-pair-column is for pair models"),
    ("single", "in.txt", "good\n", ["--text-column", "text"], "a text file holds one input per line"),
    ("single", "in.csv", "sentence,label\na,1\n", [], "in.csv:1: the header has no column 'text'; "
                                                     "its columns are ['sentence', 'label']"),
    ("single", "in.csv", "", [], "in.csv is empty; a CSV file starts with a header line"),
    ("single", "in.json", "{}\n", [], "cannot tell the format of"),
    ("single", "in.txt", "good\n", ["--batch-size", "0"], "--batch-size must be at least 1, got 0"),
    ("single", "in.txt", "good\n", ["--output", "{tmp}/in.txt"], "is the input file"),
    ("single", "in.txt", "good\n", ["--output", "{tmp}/nowhere/out.jsonl"], "does not exist"),
])
def test_bad_flags_are_refused_before_the_model_loads(single, pair, no_model_load, capsys, tmp_path,
                                                      model, name, content, flags, message):
    models = tmp_path / "models"
    models.mkdir()
    (models / "empty").mkdir()
    os.symlink(single[0], models / "single")
    os.symlink(pair[0], models / "pair")
    (tmp_path / name).write_text(content)
    output = tmp_path / "out.jsonl"
    argv = ["predict", "--model", str(models / model), "--input", str(tmp_path / name),
            "--output", str(output)] + [flag.format(tmp=tmp_path) for flag in flags]
    assert main(argv) == 2
    assert message.format(tmp=models) in capsys.readouterr().err
    assert not output.exists()


# === Memory: streaming, whatever the file size ===

# Runs a command and prints the peak RSS (kB) of it and its children: a fresh process, so no
# earlier child of the test run counts.
_PEAK_RSS = ("import resource, subprocess, sys\n"
             "code = subprocess.call(sys.argv[1:])\n"
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
             "sys.exit(code)\n")


def _measured_predict(base, source, output):
    """(peak RSS in MB, seconds, summary line) of `python -m powerbert_cli predict` on `source`."""
    command = [sys.executable, "-c", _PEAK_RSS, sys.executable, "-m", "powerbert_cli", "predict",
               "--model", str(base), "--input", str(source), "--output", str(output)]
    start = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=600)
    seconds = time.monotonic() - start
    assert done.returncode == 0, done.stderr[-2000:]
    summary, peak_kb = done.stdout.strip().splitlines()[-2:]
    return int(peak_kb) / 1024, seconds, summary


def _write_sentences(path, count, seed):
    rng = np.random.default_rng(seed)
    with open(path, "w") as f:
        for length in rng.integers(1, 20, size=count):
            f.write(" ".join(rng.choice(WORDS, size=length)) + "\n")


def test_memory_stays_flat_from_10k_to_100k_lines(single, tmp_path):
    # Holding the whole file and its outputs (one chunk of 100k) measured 151 MB above 10k lines;
    # streaming chunks of CHUNK_INPUTS measured under 1 MB above.
    figures = {}
    for count in (10_000, 100_000):
        source, output = tmp_path / f"in-{count}.txt", tmp_path / f"out-{count}.jsonl"
        _write_sentences(source, count, seed=count)
        figures[count] = _measured_predict(single[0], source, output)
        with open(output) as f:
            assert sum(1 for _ in f) == count
        print(f"{count} lines: peak RSS {figures[count][0]:.1f} MB, {figures[count][1]:.1f} s in all; "
              f"{figures[count][2]}")
    growth = figures[100_000][0] - figures[10_000][0]
    print(f"peak RSS growth from 10k to 100k lines: {growth:.1f} MB")
    assert growth < 25
