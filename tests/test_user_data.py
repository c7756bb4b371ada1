"""`powerbert train --train FILE --dev FILE ...`: your own CSV, TSV and JSON Lines files through the
CLI, the run's task record (task.json) for resume and export, and one clear message per bad file,
all before any training."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from powerbert_cli.main import main
from serving.export import read_metadata
from tests.test_search import NO_DROPOUT
from tests.tiny_run import WORDS, write_tiny_init
from training import pipeline
from training.run_dir import RunDir
from training.tasks import TaskSpec, get_task

N = 16
# tests/test_pipeline.py's settings, at which the tiny encoder learns the "good" rule and the
# search drops word vectors (fine-tuning: 192 steps at 3e-3 reach dev accuracy 1.0 by step 48);
# fixed-length batches (--no-bucket) trace the training step once.
LEARNING = ["--batch-size", "8", "--epochs", "16", "--search-epochs", "2", "--retrain-epochs", "2",
            "--lr-bert", "3e-3", "--lr-soft-extract", "0.05", "--lambda", "3e-6", "--dropout", "0",
            "--checkpoint-every", "96", "--no-bucket", "--quiet"]
# The dev rows alternate positive/negative: a model that learned nothing scores 0.5.
MIN_ACCURACY = 0.9


@pytest.fixture(scope="module")
def init_flags(tmp_path_factory):
    """The flags that start from a tiny random "pretrained" encoder (the same on every run) at N."""
    keras.utils.set_random_seed(0)
    return ["--init", write_tiny_init(str(tmp_path_factory.mktemp("init")), NO_DROPOUT),
            "--max-length", str(N)]


def good_rule_rows(n, seed):
    """`n` (text, label name) pairs, alternately "positive" (the text contains "good") and
    "negative" (it does not)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        words = list(rng.choice(WORDS[2:], size=rng.integers(3, 10)))
        if i % 2 == 0:
            words.insert(int(rng.integers(0, len(words))), "good")
        rows.append((" ".join(words), "positive" if i % 2 == 0 else "negative"))
    return rows


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return str(path)


def write_jsonl(path, objects):
    return write(path, "".join(json.dumps(o) + "\n" for o in objects))


def own_data(train, dev, text="text", label="label", *extra):
    return ["--train", train, "--dev", dev, "--text-column", text, "--label-column", label, *extra]


def train(out, *flags):
    return main(["train", "--out", str(out), *flags])


def read_json(path):
    with open(path) as f:
        return json.load(f)


# === Learning end to end: JSON Lines, resume and export ===

@pytest.fixture(scope="module")
def jsonl_run(init_flags, tmp_path_factory):
    """(run directory, data folder, flags) of one whole run (all three steps) on JSON Lines files."""
    root = tmp_path_factory.mktemp("jsonl")
    files = {split: write_jsonl(root / f"{split}.jsonl", [{"review": t, "sentiment": s} for t, s in
                                                           good_rule_rows(n, seed)])
             for split, n, seed in (("train", 96, 0), ("dev", 32, 1))}
    flags = [*own_data(files["train"], files["dev"], "review", "sentiment"), "--task-name", "reviews",
             *init_flags, *LEARNING]
    assert train(root / "run", *flags) == 0
    return root / "run", root, flags


def test_jsonl_run_learns_prunes_and_records_its_task(jsonl_run):
    run, root, _ = jsonl_run
    summary = read_json(run / "summary.json")
    assert summary["task"] == "reviews" and summary["metric"] == "accuracy"
    assert summary["baseline"]["accuracy"] >= MIN_ACCURACY, summary["baseline"]
    assert summary["power_bert"]["accuracy"] >= MIN_ACCURACY, summary["power_bert"]
    assert max(summary["retention"]) < N, summary["retention"]
    task = read_json(run / "task.json")
    assert task["label_values"] == task["label_names"] == ["negative", "positive"]  # alphabetical
    assert task["files"] == [["train", str(root / "train.jsonl")], ["dev", str(root / "dev.jsonl")]]
    assert (task["file_format"], task["text_column"], task["label_column"]) == ("jsonl", "review", "sentiment")
    assert RunDir(run).read_task() == TaskSpec.from_dict(task)


def test_export_serves_the_users_label_names(jsonl_run, tmp_path):
    import tensorflow as tf

    run, _, _ = jsonl_run
    assert main(["export", str(run), "--base", str(tmp_path / "models")]) == 0
    version = tmp_path / "models" / "1"
    assert (version / "assets" / "labels.txt").read_text().split() == ["negative", "positive"]
    metadata = read_metadata(str(version))
    assert (metadata["task"], metadata["label_names"]) == ("reviews", ["negative", "positive"])
    classify = tf.saved_model.load(str(version)).signatures["classify_text"]
    names = classify(text=tf.constant(["a very good movie", "a very bad movie"]))["label_name"]
    assert [n.decode() for n in names.numpy()] == ["positive", "negative"]


def test_resume_reads_the_task_back_and_refuses_other_data(init_flags, jsonl_run, tmp_path, capsys):
    run, root, flags = jsonl_run
    data_flags = flags[:flags.index(init_flags[0])]
    others = flags[len(data_flags):]
    # Without the data flags: the recorded task; the finished steps are skipped.
    assert train(run, *others) == 0
    printed = capsys.readouterr().out
    assert all(f"[{step}] already complete" in printed for step in ("finetune", "search", "retrain"))
    assert "reviews" in printed
    # Other data for a run whose fine-tuning has started: refused, naming what changed.
    other_dev = write_jsonl(tmp_path / "dev.jsonl", [{"review": "good", "sentiment": "positive"},
                                                     {"review": "bad", "sentiment": "negative"}])
    changed = [other_dev if flag == str(root / "dev.jsonl") else flag for flag in data_flags]
    assert train(run, *changed, *others) == 2
    err = capsys.readouterr().err
    assert "was started on other data (files: " in err and other_dev in err
    assert "resume without the data flags" in err


def csv_text(rows, delimiter):
    """A header and `rows` in CSV (quoted as RFC 4180 needs) or TSV (no quoting)."""
    import csv
    import io

    out = io.StringIO()
    options = dict(delimiter=",") if delimiter == "," else dict(delimiter="\t", quoting=csv.QUOTE_NONE)
    writer = csv.writer(out, lineterminator="\n", **options)
    writer.writerow(["review", "sentiment"])
    writer.writerows(rows)
    return out.getvalue()


@pytest.mark.parametrize("file_format, delimiter", [("csv", ","), ("tsv", "\t")], ids=["csv", "tsv"])
def test_csv_and_tsv_fine_tuning_learns(init_flags, tmp_path, file_format, delimiter):
    """The fine-tune step on the same rule from CSV and TSV files (JSON Lines runs all three
    steps above)."""
    files = {split: write(tmp_path / f"{split}.{file_format}", csv_text(good_rule_rows(n, seed), delimiter))
             for split, n, seed in (("train", 96, 0), ("dev", 32, 1))}
    assert train(tmp_path / "run", *own_data(files["train"], files["dev"], "review", "sentiment"),
                 *init_flags, *LEARNING, "--step", "finetune") == 0
    dev = read_json(tmp_path / "run" / "finetune" / "metrics.json")
    assert dev["accuracy"] >= MIN_ACCURACY, dev


# === Reading through the CLI in every format (stopped before training) ===

@pytest.fixture
def read_only(monkeypatch):
    """Pipelines made by the CLI; `run` writes the summary without training."""
    made = []

    def run_nothing(self, steps=pipeline.STEPS):
        made.append(self)
        return self.write_summary()

    monkeypatch.setattr(pipeline.Pipeline, "run", run_nothing)
    return made


# Two rows per file, written by hand in each format's own quoting; the texts and labels the
# reader must return. The CSV starts with a BOM (its first column is found only if the BOM is
# dropped) and quotes a text with a comma and one with "".
CSV_TRAIN = ('\ufeffreview,sentiment\n"good, very good",positive\n'
             '"a ""bad"" film",negative\n')
TSV_TRAIN = 'review\tsentiment\n"good" film \tpositive\na bad, bad film\tnegative\n'
EXPECTED = {"csv": ['good, very good', 'a "bad" film'], "tsv": ['"good" film', 'a bad, bad film']}


@pytest.mark.parametrize("file_format, content", [("csv", CSV_TRAIN), ("tsv", TSV_TRAIN)], ids=["csv", "tsv"])
def test_csv_and_tsv_files_are_read_with_their_quoting(init_flags, tmp_path, read_only, file_format, content):
    train_file = write(tmp_path / f"train.{file_format}", content)
    assert train(tmp_path / "run", *own_data(train_file, train_file, "review", "sentiment"),
                 *init_flags) == 0
    (made,) = read_only
    assert made.train.text == EXPECTED[file_format]
    assert made.train.labels.tolist() == [1, 0] and made.train.lines.tolist() == [2, 3]
    task = read_json(tmp_path / "run" / "task.json")
    assert (task["name"], task["file_format"]) == ("train", file_format)  # the train file's stem
    assert task["label_names"] == ["negative", "positive"]


def test_format_flag_overrides_the_extension(init_flags, tmp_path, read_only):
    train_file = write(tmp_path / "train.txt", TSV_TRAIN)
    assert train(tmp_path / "run", *own_data(train_file, train_file, "review", "sentiment"),
                 "--format", "tsv", *init_flags) == 0
    assert read_only[0].train.text == EXPECTED["tsv"]


def test_jsonl_integer_labels_are_ordered_numerically_and_bom_is_dropped(init_flags, tmp_path, read_only):
    rows = [{"t": "one", "y": 10}, {"t": "two", "y": 2}, {"t": "three", "y": 10}]
    path = tmp_path / "train.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + "".join(json.dumps(r) + "\n" for r in rows).encode())
    assert train(tmp_path / "run", *own_data(str(path), str(path), "t", "y"), *init_flags) == 0
    assert read_only[0].train.labels.tolist() == [1, 0, 1]  # "2" < "10" as numbers
    assert read_json(tmp_path / "run" / "task.json")["label_values"] == ["2", "10"]


def test_regression_file(init_flags, tmp_path, read_only):
    train_file = write(tmp_path / "sim.csv", "a,b,score\nx y,x y,4.5\nx,z,0.25\nz,y,-1\n")
    assert train(tmp_path / "run", *own_data(train_file, train_file, "a", "score"),
                 "--text-pair-column", "b", "--regression", "--metric", "pearson", *init_flags) == 0
    made = read_only[0]
    assert made.train.labels.dtype == np.float32 and made.train.labels.tolist() == [4.5, 0.25, -1.0]
    assert made.train.text_b == ["x y", "z", "y"]
    task = read_json(tmp_path / "run" / "task.json")
    assert task["is_regression"] and task["label_values"] == [] and task["pair_column"] == "b"
    assert (task["metrics"], task["primary_metric"]) == (["pearson", "spearman"], "pearson")
    assert read_json(tmp_path / "run" / "summary.json")["metric"] == "pearson"


# === Bad files: one message naming the file, the line and the value, before any training ===

GOOD_CSV = "text,label\ngood film,positive\nbad film,negative\n"
GOOD_JSONL = '{"text": "good film", "label": "positive"}\n{"text": "bad film", "label": "negative"}\n'


@pytest.mark.parametrize("bad_file, content, extra, fragments", [
    ("train.csv", "text,sentiment\ngood film,positive\n", [],
     ["train.csv:1: header has no column 'label'; its columns are ['text', 'sentiment']"]),
    ("train.jsonl", '{"text": "a", "label": "x"}\n{"text": "b", "lable": "y"}\n', [],
     ["train.jsonl:2: the object has no column 'label'; its columns are ['text', 'lable']"]),
    ("dev.csv", "text,label\ngood film,positive\n  ,negative\n", [],
     ["dev.csv:3: column 'text' is empty ('  ')"]),
    ("dev.csv", "text,label\ngood film,positive\nfine film,neutral\n", [],
     ["dev.csv:3: label 'neutral' is not one of the train labels ['negative', 'positive']"]),
    ("train.jsonl", '{"text": "a", "label": 1}\n{"text": "b", "label": "1"}\n', [],
     ["train.jsonl:2: label '1' is a string but the label on line 1 is an integer (1)"]),
    ("train.jsonl", '{"text": "a", "label": 1}\n{"text": "b", "label": 0.5}\n', [],
     ["train.jsonl:2: label 0.5 is a fractional number", "--regression"]),
    ("dev.jsonl", '{"text": "a", "label": "positive"}\n{"text": 5, "label": "negative"}\n', [],
     ["dev.jsonl:2: column 'text' is an integer (5); expected a text (a string)"]),
    ("train.jsonl", '{"text": "a", "label": 0.5}\n{"text": "b", "label": "high"}\n', ["--regression"],
     ["train.jsonl:2: score 'high' is a string; expected a number"]),
    ("train.csv", "text\tlabel\ngood film\tpositive\n", [],
     ["train.csv:1: header has no column 'label'; its columns are ['text\\tlabel']",
      "looks tab-separated: use .tsv or --format tsv"]),
    ("train.tsv", "text,label\ngood film,positive\n", [],
     ["train.tsv:1: header has no column", "['text,label']",
      "looks comma-separated: use .csv or --format csv"]),
    ("train.csv", 'text,label\ngood film,positive\n"bad film,negative\nfine,positive\n', [],
     ["train.csv:3: not valid CSV: the quoted text opened in '\"bad film,negative' is never closed"]),
    ("train.jsonl", '{"text": "a", "label": "x"}\n{"text": "b" "label": "y"}\n', [],
     ["train.jsonl:2: not valid JSON: Expecting ',' delimiter (column 14)", '"label": "y"']),
    ("train.jsonl", '{"text": "a", "label": "x"}\n["b", "y"]\n', [],
     ["train.jsonl:2: '[\"b\", \"y\"]' is a list; expected a JSON object"]),
], ids=["missing-column", "missing-json-key", "empty-text", "unknown-dev-label", "int-and-string-labels", "float-label",
        "text-not-a-string", "score-not-a-number", "tabs-in-csv", "commas-in-tsv",
        "unterminated-quote", "invalid-json", "json-not-an-object"])
def test_bad_file_stops_before_training(tmp_path, capsys, bad_file, content, extra, fragments):
    extension = os.path.splitext(bad_file)[1]
    good = GOOD_JSONL if extension == ".jsonl" else GOOD_CSV.replace(",", "\t" if extension == ".tsv" else ",")
    files = {split: write(tmp_path / f"{split}{extension}", content if f"{split}{extension}" == bad_file else good)
             for split in ("train", "dev")}
    assert train(tmp_path / "run", *own_data(files["train"], files["dev"], "text", "label", *extra)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"powerbert: error: {tmp_path / bad_file}:")
    for fragment in fragments:
        assert fragment in err, err
    assert not os.path.exists(tmp_path / "run" / "finetune")


def test_bad_test_file_stops_before_training(tmp_path, capsys):
    files = [write(tmp_path / f"{split}.csv", GOOD_CSV) for split in ("train", "dev")]
    test_file = write(tmp_path / "test.csv", "text,label\ngood film,great\n")
    assert train(tmp_path / "run", *own_data(*files), "--test", test_file) == 2
    assert f"{test_file}:2: label 'great' is not one of" in capsys.readouterr().err


@pytest.mark.parametrize("flags, message", [
    (["--task", "sst2", "--train", "t.csv"], "give --task or --train, not both"),
    (["--task", "sst2", "--text-column", "t"], "--task sst2 names a built-in task; --text-column"),
    ([], "no task: give --task (one of sst2,"),
    (["--dev", "d.csv"], "--dev describe your own files: give --train FILE too"),
    (["--train", "t.csv", "--text-column", "t"], "--train needs --dev, --label-column too"),
    (["--train", "t.csv", "--dev", "d.csv", "--text-column", "t", "--label-column", "l",
      "--task-name", "SST-2"], "task name 'SST-2' is a built-in task's"),
])
def test_task_flag_errors(tmp_path, capsys, flags, message):
    assert train(tmp_path / "run", *flags) == 2
    assert message in capsys.readouterr().err


# === The record itself ===

def test_task_record_round_trips_and_old_runs_fall_back_to_the_builtin_task(tmp_path):
    stsb = get_task("stsb")
    assert TaskSpec.from_dict(json.loads(json.dumps(stsb.to_dict()))) == stsb
    # A run started before task.json existed: its config names a built-in task.
    with open(tmp_path / "config.json", "w") as f:
        json.dump({"task": "rte"}, f)
    assert RunDir(tmp_path).read_task() == get_task("rte")


def test_help_still_starts_without_tensorflow():
    script = ("import sys\nfrom powerbert_cli.main import main\n"
              "try:\n    main(['train', '--help'])\nexcept SystemExit:\n    pass\n"
              "assert 'tensorflow' not in sys.modules\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "--train FILE" in done.stdout and "--format {tsv,csv,jsonl}" in done.stdout
