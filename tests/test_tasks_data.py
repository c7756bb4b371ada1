"""Tests for training.tasks and training.data: the task table, the real files (counts, label
balances, format quirks), the IMDB hold-out split, user tasks and every documented error."""

import pathlib

import numpy as np
import pytest

from training import data, tasks
from training.data import (DataError, EmptyFileError, LabelError, MalformedRowError,
                           MissingDataError, read_split)
from training.user_task import user_task


def write(path: pathlib.Path, text: str, encoding: str = "utf-8") -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


# === Task table ===

def test_table_1_settings():
    rte = tasks.get_task("rte")
    assert (rte.lr_bert, rte.lr_soft_extract, rte.lambda_, rte.batch_size, rte.max_length) == (
        3e-5, 3e-3, 1e-3, 16, 256)
    cola = tasks.get_task("cola")
    assert (cola.lr_bert, cola.lr_soft_extract, cola.lambda_, cola.batch_size) == (
        2e-5, 1.5e-3, 7e-3, 32)
    assert {n: tasks.get_task(n).max_length for n in tasks.task_names()} == {
        "sst2": 64, "cola": 64, "mrpc": 128, "rte": 256, "stsb": 64, "qnli": 128, "imdb": 512,
        "qqp": 128, "mnli": 128, "race": 512}
    race = tasks.get_task("race")
    assert (race.lr_bert, race.lr_soft_extract, race.lambda_, race.batch_size) == (1e-5, 2e-4, 1e-4, 4)
    qqp, mnli = tasks.get_task("qqp"), tasks.get_task("mnli")
    assert (qqp.lr_bert, qqp.lr_soft_extract, qqp.lambda_, qqp.batch_size) == (3e-5, 1e-4, 3e-4, 64)
    assert (mnli.lr_bert, mnli.lr_soft_extract, mnli.lambda_, mnli.batch_size) == (3e-5, 2e-4, 1e-4, 64)


def test_primary_metrics_and_labels():
    assert {n: tasks.get_task(n).primary_metric for n in tasks.task_names()} == {
        "sst2": "accuracy", "cola": "matthews_corrcoef", "mrpc": "f1", "rte": "accuracy",
        "stsb": "spearman", "qnli": "accuracy", "imdb": "accuracy", "qqp": "f1", "mnli": "accuracy",
        "race": "accuracy"}
    rte = tasks.get_task("rte")
    assert rte.label_values == ("entailment", "not_entailment") and rte.num_labels == 2
    assert tasks.get_task("sst2").label_names == ("negative", "positive")
    stsb = tasks.get_task("stsb")
    assert stsb.is_regression and stsb.num_labels == 1 and stsb.is_pair


def test_get_task_accepts_glue_spellings():
    assert tasks.get_task("SST-2") is tasks.get_task("sst2")
    assert tasks.get_task("STS-B").name == "stsb"


def test_unknown_task_lists_known_tasks():
    with pytest.raises(tasks.UnknownTaskError, match="unknown task 'wnli'.*sst2, cola"):
        tasks.get_task("wnli")
    with pytest.raises(ValueError, match="known tasks"):
        read_split("wnli", "dev", "/nonexistent")


def test_inconsistent_spec_is_rejected():
    with pytest.raises(ValueError, match="primary_metric 'f1' is not in metrics"):
        tasks.TaskSpec(name="x", directory="", files=(("train", "/x.tsv"),), file_format="tsv",
                       text_column="t", label_column="l", label_values=("a", "b"),
                       label_names=("a", "b"), primary_metric="f1")


# === Real files ===

@pytest.mark.parametrize("task,split,count", [
    ("sst2", "train", 67349), ("sst2", "dev", 872), ("sst2", "test", 1821),
    ("cola", "train", 8551), ("cola", "dev", 1043), ("cola", "test", 1063),
    ("mrpc", "train", 3668), ("mrpc", "dev", 408), ("mrpc", "test", 1725),
    ("rte", "train", 2490), ("rte", "dev", 277), ("rte", "test", 3000),
    ("stsb", "train", 5749), ("stsb", "dev", 1500), ("stsb", "test", 1379),
    ("imdb", "train", 4000), ("imdb", "dev", 1000), ("imdb", "test", 5000),
    # Substitute layouts (see the task's TASK_LAYOUTS): 5,463 QNLI dev rows = 3,824 train + 1,639
    # dev; 23,497 QQP train rows (the first repaired) = 18,798 + 4,699; MNLI dev matched 9,815 =
    # 6,870 + 2,945.
    ("qnli", "train", 3824), ("qnli", "dev", 1639), ("qqp", "train", 18798), ("qqp", "dev", 4699),
    ("mnli", "train", 6870), ("mnli", "dev", 2945), ("mnli", "dev_mismatched", 9832),
    ("race", "train", 9995), ("race", "dev", 4887), ("race", "test", 4934),
])
def test_row_counts(data_dir, task, split, count):
    examples = read_split(task, split, data_dir)
    assert len(examples) == count == len(examples.lines)
    assert (examples.text_b is not None) == tasks.get_task(task).is_pair
    if split == "test" and task not in ("imdb", "race"):
        assert examples.labels is None
    else:
        assert len(examples.labels) == count


@pytest.mark.parametrize("task,split,counts", [
    ("sst2", "dev", [428, 444]), ("cola", "dev", [322, 721]), ("mrpc", "dev", [129, 279]),
    ("rte", "dev", [146, 131]), ("imdb", "test", [2500, 2500]),
    ("mnli", "dev_mismatched", [3463, 3129, 3240]), ("race", "dev", [311 + 756, 384 + 907, 386 + 917, 355 + 871]),
])
def test_label_balance(data_dir, task, split, counts):
    assert np.bincount(read_split(task, split, data_dir).labels).tolist() == counts


def test_stsb_scores(data_dir):
    scores = read_split("stsb", "dev", data_dir).labels
    assert scores.dtype == np.float32
    assert scores.min() == 0.0 and scores.max() == 5.0
    assert scores.mean() == pytest.approx(2.364, abs=1e-3)
    assert scores[:2].tolist() == [5.0, 4.75]


def test_format_quirks(data_dir):
    sst2 = read_split("sst2", "dev", data_dir)
    assert sst2.text[0] == "it 's a charming and often affecting journey ."  # trailing space gone
    cola = read_split("cola", "dev", data_dir)  # no header, no final newline
    assert cola.text[0] == "The sailors rode the breeze clear of the rocks."
    assert cola.text[-1] == "John talked to Bill about himself." and cola.lines[-1] == 1043
    mrpc = read_split("mrpc", "dev", data_dir)  # BOM before the header; literal quotes
    assert mrpc.text_b[0].startswith('"The foodservice pie business')
    imdb = read_split("imdb", "test", data_dir)
    assert imdb.text[0].startswith("I went and saw this movie")


def test_env_var_is_the_fallback(data_dir, monkeypatch):
    monkeypatch.setenv(data.ENV_VAR, str(data_dir))
    assert len(read_split("rte", "dev")) == 277


def test_imdb_holdout_is_deterministic_and_disjoint(data_dir):
    train, dev = read_split("imdb", "train", data_dir), read_split("imdb", "dev", data_dir)
    assert np.array_equal(read_split("imdb", "dev", data_dir).lines, dev.lines)
    assert not set(train.lines) & set(dev.lines)
    assert sorted(set(train.lines) | set(dev.lines)) == list(range(2, 5002))  # line 1: header
    # Pinned, so a change of seed or algorithm cannot go unnoticed.
    assert np.bincount(dev.labels).tolist() == [490, 510]
    assert dev.lines[:5].tolist() == [3, 7, 16, 17, 23]


def test_holdout_indices():
    train, dev = data.holdout_indices(10, 0.2, seed=0)
    assert len(dev) == 2 and len(train) == 8
    assert sorted(np.concatenate([train, dev]).tolist()) == list(range(10))


# === Data directory and files ===

def test_no_data_dir(monkeypatch):
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    with pytest.raises(DataError, match="pass --data-dir .* or set POWERBERT_DATA_DIR"):
        read_split("sst2", "dev")


def test_missing_data_dir(tmp_path):
    with pytest.raises(MissingDataError, match="'.*/nope'.*does not exist"):
        read_split("sst2", "dev", tmp_path / "nope")


def test_missing_file(tmp_path):
    write(tmp_path / "glue/RTE/dev.tsv", "index\tsentence1\tsentence2\tlabel\n")
    with pytest.raises(MissingDataError, match=r"glue/RTE/train.tsv: file does not exist "
                                               r"\(the folder holds: dev.tsv\)"):
        read_split("rte", "train", tmp_path)


def test_unknown_split(tmp_path):
    with pytest.raises(ValueError, match=r"no split 'validation'.*\['train', 'dev', 'test'\]"):
        read_split("rte", "validation", tmp_path)


# === Bad rows ===

SST2_DEV = "glue/SST-2/dev.tsv"


@pytest.mark.parametrize("content,error,message", [
    ("", EmptyFileError, r"dev.tsv: file is empty"),
    ("sentence\tlabel\n", EmptyFileError, r"dev.tsv: file has a header but no data rows"),
    ("sentence\tlabel\ngood . \t1\nno tab here\n", MalformedRowError,
     r"dev.tsv:3: expected 2 fields \(sentence, label\), found 1"),
    ("sentence\tlabel\ngood . \t1\textra\n", MalformedRowError,
     r"dev.tsv:2: expected 2 fields \(sentence, label\), found 3"),
    ("sentence\tlabel\ngood . \t1\nbad . \t2\n", LabelError,
     r"dev.tsv:3: label '2' is not one of the sst2 labels \['0', '1'\]"),
    ("sentence\tlabel\n  \t1\n", MalformedRowError, r"dev.tsv:2: column 'sentence' is empty"),
    ("text\tlabel\ngood . \t1\n", MalformedRowError,
     r"dev.tsv:1: header has no column 'sentence'; its columns are \['text', 'label'\]"),
])
def test_bad_sst2_file(tmp_path, content, error, message):
    write(tmp_path / SST2_DEV, content)
    with pytest.raises(error, match=message) as info:
        read_split("sst2", "dev", tmp_path)
    assert info.value.path == str(tmp_path / SST2_DEV)


def test_blank_lines_are_skipped_and_quotes_are_literal(tmp_path):
    write(tmp_path / SST2_DEV, 'sentence\tlabel\n"quoted . \t1\n\nplain " . \t0\n')
    examples = read_split("sst2", "dev", tmp_path)
    assert examples.text == ['"quoted .', 'plain " .']
    assert examples.lines.tolist() == [2, 4]


def test_bad_rte_label(tmp_path):
    write(tmp_path / "glue/RTE/dev.tsv",
          "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\ta\tb\tneutral\n")
    with pytest.raises(LabelError, match=r"RTE/dev.tsv:3: label 'neutral' is not one of the rte "
                                         r"labels \['entailment', 'not_entailment'\]"):
        read_split("rte", "dev", tmp_path)


def test_cola_headerless_row(tmp_path):
    write(tmp_path / "glue/CoLA/dev.tsv", "gj04\t1\t\tFine.\ngj04\t1\tOnly three.")
    with pytest.raises(MalformedRowError, match=r"CoLA/dev.tsv:2: expected 4 fields \(source, "
                                                r"label, original_label, sentence\), found 3"):
        read_split("cola", "dev", tmp_path)


STSB_HEADER = "\t".join(["index", "genre", "filename", "year", "old_index", "source1",
                           "source2", "sentence1", "sentence2", "score"]) + "\n"


@pytest.mark.parametrize("score,message", [
    ("high", r"dev.tsv:3: score 'high' is not a number"),
    ("nan", r"dev.tsv:3: score 'nan' is not finite"),
    ("5.5", r"dev.tsv:3: score '5.5' is outside the stsb range \[0.0, 5.0\]"),
    ("-0.1", r"dev.tsv:3: score '-0.1' is outside the stsb range \[0.0, 5.0\]"),
])
def test_bad_stsb_score(tmp_path, score, message):
    rows = [f"{i}\tg\tf\ty\to\ts1\ts2\tA.\tB.\t{s}\n" for i, s in enumerate(["1.0", score])]
    write(tmp_path / "glue/STS-B/dev.tsv", STSB_HEADER + "".join(rows))
    with pytest.raises(LabelError, match=message):
        read_split("stsb", "dev", tmp_path)


def test_not_utf8(tmp_path):
    path = write(tmp_path / SST2_DEV, "sentence\tlabel\ngood\t1\ncaf\xe9\t0\n", encoding="latin-1")
    with pytest.raises(DataError, match=r"dev.tsv:3: not UTF-8 text"):
        read_split("sst2", "dev", tmp_path)
    assert path.exists()


def test_bad_imdb_csv(tmp_path):
    header = "text,label,rating,review_id,aclimdb_path\n"
    write(tmp_path / "imdb/test_subset_5000.csv",
          header + '"Good, ""really"".",1,9,0,test/pos/0_9.txt\n"Bad"x,0,1,0,test/neg/0_1.txt\n')
    with pytest.raises(MalformedRowError, match=r"test_subset_5000.csv:3: not valid CSV"):
        read_split("imdb", "test", tmp_path)


# === User tasks ===

def test_user_task_tsv_with_inferred_labels(tmp_path):
    train = write(tmp_path / "train.tsv", "id\tq\ta\ty\n1\tWhy?\tBecause.\t10\n2\tHow?\tSo.\t2\n"
                                          "3\tWho?\tMe.\t2\n")
    dev = write(tmp_path / "dev.tsv", "id\tq\ta\ty\n1\tWhen?\tNow.\t10\n")
    task = user_task("qa", train=str(train), dev=str(dev), text_column="q",
                           pair_column="a", label_column="y", max_length=32)
    assert task.label_values == ("2", "10")  # numeric order, not string order
    assert task.file_format == "tsv" and task.splits == ("train", "dev")
    examples = read_split(task, "train")  # absolute paths: no data directory needed
    assert examples.text_b == ["Because.", "So.", "Me."]
    assert examples.labels.tolist() == [1, 0, 0]
    assert read_split(task, "dev").labels.tolist() == [1]


def test_user_task_carved_dev(tmp_path):
    rows = "".join(f"text {i},{i % 2}\n" for i in range(10))
    train = write(tmp_path / "all.csv", "t,l\n" + rows)
    task = user_task("held", train=str(train), text_column="t", label_column="l",
                     carved_split=("train", "dev", 0.3, 7))
    train_part, dev_part = read_split(task, "train"), read_split(task, "dev")
    assert (len(train_part), len(dev_part)) == (7, 3)
    assert len(dev_part.labels) == 3 and not set(train_part.text) & set(dev_part.text)


def test_user_task_csv_with_given_labels(tmp_path):
    test = write(tmp_path / "reviews.csv", 'review,stars\n"Fine, ok",mid\nAwful,low\n')
    task = user_task("stars", test=str(test), text_column="review", label_column="stars",
                           label_values=["low", "mid", "high"])
    assert read_split(task, "test").labels.tolist() == [1, 0]
    write(tmp_path / "reviews.csv", "review,stars\nGreat,top\n")
    with pytest.raises(LabelError, match=r"reviews.csv:2: label 'top' is not one of the stars "
                                         r"labels \['low', 'mid', 'high'\]"):
        read_split(task, "test")


def test_user_task_unlabelled_test_file(tmp_path):
    test = write(tmp_path / "test.tsv", "id\tq\nA\tWhy?\n")
    task = user_task("qa", test=str(test), text_column="q", label_column="y",
                           label_values=["no", "yes"], test_labelled=False)
    examples = read_split(task, "test")
    assert examples.text == ["Why?"] and examples.labels is None


def test_user_task_regression(tmp_path):
    train = write(tmp_path / "s.csv", "a,b,sim\nx,y,0.5\nx,z,-3\n")
    task = user_task("sim", train=str(train), text_column="a", pair_column="b",
                           label_column="sim", is_regression=True)
    assert task.primary_metric == "spearman"
    assert read_split(task, "train").labels.tolist() == [0.5, -3.0]


def test_user_task_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="give at least one of train="):
        user_task("u", text_column="t", label_column="l")
    with pytest.raises(ValueError, match="cannot tell the file format"):
        user_task("u", train="a.txt", text_column="t", label_column="l")
    with pytest.raises(MissingDataError, match="nope.tsv: file does not exist"):
        user_task("u", train=str(tmp_path / "nope.tsv"), text_column="t",
                        label_column="l")
    one_label = write(tmp_path / "one.tsv", "t\tl\na\tx\nb\tx\n")
    with pytest.raises(LabelError, match=r"one.tsv: column 'l' has 1 distinct label"):
        user_task("u", train=str(one_label), text_column="t", label_column="l")
