"""Readers of the tasks added for the paper's table (QQP, MNLI, QNLI, RACE) on small fixture files in
every layout they come in: GLUE's own files, and the substitutes of the shared data (3-column
MNLI dev files, a headerless QQP train subset with a malformed first line, dev-only QNLI)."""

import json

import numpy as np
import pytest

from training import data, tasks
from training.data import LabelError, MalformedRowError, MissingDataError, read_split, task_for_data


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def tsv(*rows):
    return "".join("\t".join(map(str, row)) + "\n" for row in rows)


# === MNLI ===

_MNLI_PARSES = ["(a)", "(b)", "( (a) )", "( (b) )"]
_MNLI_TRAIN_HEADER = (["index", "promptID", "pairID", "genre", "sentence1_binary_parse",
                       "sentence2_binary_parse", "sentence1_parse", "sentence2_parse", "sentence1",
                       "sentence2", "label1", "gold_label"])
_MNLI_DEV_HEADER = _MNLI_TRAIN_HEADER[:-1] + ["label2", "label3", "label4", "label5", "gold_label"]


def mnli_glue(root, train_rows, matched_rows, mismatched_rows):
    """GLUE's MNLI layout: train with 12 columns, dev files with 16, a test file with 10."""
    def row(i, premise, hypothesis, label, votes):
        return [i, 100 + i, f"{i}n", "fiction", *_MNLI_PARSES, premise, hypothesis, *votes, label]
    write(root / "glue/MNLI/train.tsv", tsv(_MNLI_TRAIN_HEADER, *(
        row(i, p, h, y, [y]) for i, (p, h, y) in enumerate(train_rows))))
    for name, rows in (("dev_matched.tsv", matched_rows), ("dev_mismatched.tsv", mismatched_rows)):
        write(root / "glue/MNLI" / name, tsv(_MNLI_DEV_HEADER, *(
            row(i, p, h, y, [y] * 5) for i, (p, h, y) in enumerate(rows))))
    write(root / "glue/MNLI/test_matched.tsv", tsv(_MNLI_TRAIN_HEADER[:10], [0, 1, "0n", "x", *_MNLI_PARSES, "p", "h"]))


def test_mnli_glue_layout_reads_every_file_by_its_header(tmp_path):
    mnli_glue(tmp_path, [("A man sleeps .", "Nobody sleeps .", "contradiction"),
                         ("It rains .", "It is wet .", "entailment")],
              [("The new rights are nice enough ", "Everyone likes them ", "neutral")],
              [("Your gift helped .", "It did not help .", "contradiction")])
    task = task_for_data("mnli", tmp_path)
    assert task == tasks.get_task("mnli") and task.splits == ("train", "dev", "test", "dev_mismatched")
    train = read_split("mnli", "train", tmp_path)
    assert train.text == ["A man sleeps .", "It rains ."] and train.labels.tolist() == [2, 0]
    dev = read_split("mnli", "dev", tmp_path)
    assert (dev.text, dev.text_b, dev.labels.tolist()) == (
        ["The new rights are nice enough"], ["Everyone likes them"], [1])
    assert read_split("mnli", "dev_mismatched", tmp_path).labels.tolist() == [2]
    assert read_split("mnli", "test", tmp_path).labels is None


def mnli_3col(root, matched, mismatched):
    write(root / "glue/MNLI/dev_matched_3col.tsv", tsv(*matched))
    write(root / "glue/MNLI/dev_mismatched_3col.tsv", tsv(*mismatched))


def test_mnli_3col_layout_trains_on_70_percent_of_dev_matched(tmp_path):
    matched = [(f"premise {i}", f"hypothesis {i}", i % 3) for i in range(20)]
    mnli_3col(tmp_path, matched, [("other premise", "other hypothesis", 1)])
    task = task_for_data("mnli", tmp_path)
    assert task.carved_split == ("dev", "train", 0.7, 2020) and task.label_values == ("0", "1", "2")
    assert task.label_names == ("entailment", "neutral", "contradiction")  # ids mean what GLUE's mean
    train, dev = read_split("mnli", "train", tmp_path), read_split("mnli", "dev", tmp_path)
    assert (len(train), len(dev)) == (14, 6)
    # The two parts cover the file once, and each label id is the file's id.
    assert sorted(train.lines.tolist() + dev.lines.tolist()) == list(range(1, 21))
    for part in (train, dev):
        assert [int(t.split()[1]) % 3 for t in part.text] == part.labels.tolist()
    # The carve is the seeded holdout rule, so a re-run (or another machine) gets the same split.
    rest, chosen = data.holdout_indices(20, 0.7, 2020)
    assert train.lines.tolist() == (chosen + 1).tolist() and dev.lines.tolist() == (rest + 1).tolist()
    assert read_split("mnli", "dev_mismatched", tmp_path).text_b == ["other hypothesis"]


def test_official_mnli_files_win_over_the_3col_ones(tmp_path):
    mnli_3col(tmp_path, [("p", "h", 0)], [("p", "h", 0)])
    mnli_glue(tmp_path, [("p", "h", "entailment")], [("p", "h", "neutral")], [("p", "h", "neutral")])
    assert task_for_data("mnli", tmp_path) is tasks.get_task("mnli")


def test_mnli_3col_label_outside_0_1_2_names_the_line(tmp_path):
    mnli_3col(tmp_path, [("p", "h", 0), ("p", "h", "entailment")], [("p", "h", 0)])
    with pytest.raises(LabelError, match=r"dev_matched_3col.tsv:2: label 'entailment' is not one of "
                                         r"the mnli labels \['0', '1', '2'\]"):
        read_split("mnli", "dev", tmp_path)


def test_no_complete_layout_lists_what_each_lacks(tmp_path):
    write(tmp_path / "glue/MNLI/dev_matched_3col.tsv", tsv(("p", "h", 0)))
    with pytest.raises(MissingDataError, match=r"task 'mnli' has no complete set of files.*layout 1 "
                                               r"lacks glue/MNLI/train.tsv.*layout 2 lacks "
                                               r"glue/MNLI/dev_mismatched_3col.tsv"):
        read_split("mnli", "dev", tmp_path)


# === QQP ===

_QQP_HEADER = ("id", "qid1", "qid2", "question1", "question2", "is_duplicate")


def test_qqp_subset_repairs_the_space_joined_first_line(tmp_path):
    # The shared file's first line, as it is: the label is joined to question2 by a space.
    first = "133273\t213221\t213222\tHow is the life of a math student?\tWhich level is enough for the exam jlpt5? 0"
    rows = [first] + ["\t".join([str(i), "1", "2", f'Is "q{i}" legit?', f"q{i} b", str(i % 2)]) for i in range(9)]
    write(tmp_path / "glue/QQP/train_subset_23497.tsv", "\n".join(rows) + "\n")
    task = task_for_data("qqp", tmp_path)
    assert task.carved_split == ("train", "dev", 0.2, 2020)
    train, dev = read_split("qqp", "train", tmp_path), read_split("qqp", "dev", tmp_path)
    assert (len(train), len(dev)) == (8, 2)
    both = {line: (a, b, y) for part in (train, dev)
            for line, a, b, y in zip(part.lines, part.text, part.text_b, part.labels)}
    assert both[1] == ("How is the life of a math student?", "Which level is enough for the exam jlpt5?", 0)
    assert both[2] == ('Is "q0" legit?', "q0 b", 0)  # quoting off: the quotes are text


def test_qqp_other_short_rows_are_still_errors(tmp_path):
    write(tmp_path / "glue/QQP/train.tsv", tsv(_QQP_HEADER, (1, 1, 2, "a?", "b? maybe"),))
    write(tmp_path / "glue/QQP/dev.tsv", tsv(_QQP_HEADER, (1, 1, 2, "a?", "b?", 1)))
    write(tmp_path / "glue/QQP/test.tsv", tsv(("id", "question1", "question2"), (1, "a?", "b?")))
    assert task_for_data("qqp", tmp_path) is tasks.get_task("qqp")
    with pytest.raises(MalformedRowError, match=r"train.tsv:2: expected 6 fields"):
        read_split("qqp", "train", tmp_path)
    assert read_split("qqp", "dev", tmp_path).labels.tolist() == [1]
    assert read_split("qqp", "test", tmp_path).text_b == ["b?"]


def test_split_joined_label():
    assert data.split_joined_label(["1", "a", "b 1"], 4, ("0", "1")) == ["1", "a", "b", "1"]
    assert data.split_joined_label(["1", "a", "b 7"], 4, ("0", "1")) is None  # not a label
    assert data.split_joined_label(["1", "a", "b1"], 4, ("0", "1")) is None  # no space
    assert data.split_joined_label(["a", "b 1"], 4, ("0", "1")) is None  # two fields short
    assert data.split_joined_label(["1", "a", " 1"], 4, ("0", "1")) is None  # no text left


# === QNLI ===

def test_qnli_dev_only_trains_on_part_of_dev(tmp_path):
    rows = [(i, f"q{i}?", f"s{i}.", "entailment" if i % 2 else "not_entailment") for i in range(10)]
    write(tmp_path / "glue/QNLI/dev.tsv", tsv(("index", "question", "sentence", "label"), *rows))
    task = task_for_data("qnli", tmp_path)
    assert task.splits == ("train", "dev") and task.carved_split[:3] == ("dev", "train", 0.7)
    train, dev = read_split("qnli", "train", tmp_path), read_split("qnli", "dev", tmp_path)
    assert (len(train), len(dev)) == (7, 3) and not set(train.text) & set(dev.text)
    with pytest.raises(ValueError, match="no split 'test'"):
        read_split("qnli", "test", tmp_path)


def test_qnli_official_layout(tmp_path):
    for name in ("train", "dev"):
        write(tmp_path / f"glue/QNLI/{name}.tsv", tsv(("index", "question", "sentence", "label"),
                                                       (0, "q?", "s.", "entailment")))
    write(tmp_path / "glue/QNLI/test.tsv", tsv(("index", "question", "sentence"), (0, "q?", "s.")))
    assert task_for_data("qnli", tmp_path) is tasks.get_task("qnli")
    assert len(read_split("qnli", "dev", tmp_path)) == 1


# === RACE ===

def race_file(path, article, questions, options, answers, **extra):
    write(path, json.dumps({"answers": answers, "options": options, "questions": questions,
                            "article": article, "id": path.parent.name + path.name, **extra},
                           ensure_ascii=False))


def test_race_reads_every_question_with_its_options(tmp_path):
    root = tmp_path / "race/RACE"
    for split in ("train_subset", "dev", "test"):
        race_file(root / split / "high/10.txt", "Caf\u00e9 \u201cna\u00efve\u201d \u2013 a story.",
                  ["Why _ ?", "Who wrote it?"],
                  [["a", "b", "c", "d"], ["Zo\u00eb", "Bj\u00f6rk", "\u738b", "none"]], ["B", "C"])
        race_file(root / split / "middle/2.txt", "Short one.", ["What?"], [["w", "x", "y", "z"]], ["D"])
    task = task_for_data("race", tmp_path)
    assert task.files[0] == ("train", "train_subset") and task.is_multiple_choice
    dev = read_split("race", "dev", tmp_path)
    # Sorted by path: high/ before middle/; each question an example.
    assert dev.text == ["Caf\u00e9 \u201cna\u00efve\u201d \u2013 a story."] * 2 + ["Short one."]
    assert dev.text_b == ["Why _ ?", "Who wrote it?", "What?"]
    assert dev.options[1] == ("Zo\u00eb", "Bj\u00f6rk", "\u738b", "none")
    assert dev.labels.tolist() == [1, 2, 3] and dev.lines.tolist() == [1, 2, 1]
    picked = dev.take([2, 0])
    assert picked.options == [("w", "x", "y", "z"), ("a", "b", "c", "d")]
    assert read_split("race", "test", tmp_path).labels is not None  # RACE's test set is labelled


@pytest.mark.parametrize("article,match", [
    (dict(options=[["a", "b", "c"]]), r"question 1 has options \[\"a\", \"b\", \"c\"\]; expected a list of 4"),
    (dict(answers=["E"]), r"question 1: answer 'E' is not one of \['A', 'B', 'C', 'D'\]"),
    (dict(answers=[]), r"expected questions, options, answers to be lists of one length"),
    (dict(questions=[""]), r"question 1 is ''; expected a non-empty text"),
    (dict(options=[["a", "b", 3, "d"]]), r"question 1, option C is 3; expected a non-empty text"),
])
def test_race_bad_files_name_the_file_and_question(tmp_path, article, match):
    fields = dict(questions=["Q?"], options=[["a", "b", "c", "d"]], answers=["A"]) | article
    race_file(tmp_path / "dev/high/7.txt", "Text.", **fields)
    with pytest.raises(data.DataError, match=r"dev/high/7.txt: " + match):
        data.read_race_folder(tmp_path / "dev", tasks.get_task("race"))


def test_race_missing_key_and_bad_json(tmp_path):
    write(tmp_path / "a/high/1.txt", json.dumps({"article": "x", "questions": [], "options": []}))
    with pytest.raises(MalformedRowError, match=r"the article object has no column 'answers'"):
        data.read_race_folder(tmp_path / "a", tasks.get_task("race"))
    write(tmp_path / "b/high/1.txt", '{"article": "x",')
    with pytest.raises(MalformedRowError, match=r"high/1.txt: not valid JSON"):
        data.read_race_folder(tmp_path / "b", tasks.get_task("race"))
    (tmp_path / "c").mkdir()
    with pytest.raises(MissingDataError, match=r"holds no article files"):
        data.read_race_folder(tmp_path / "c", tasks.get_task("race"))


# === Task specs ===

def test_layouts_share_every_setting_but_the_files():
    file_fields = {"files", "headerless_splits", "headerless_columns", "label_values",
                   "labelled_splits", "carved_split"}
    for name, layouts in tasks.TASK_LAYOUTS.items():
        official = layouts[0].to_dict()
        assert layouts[0] is tasks.get_task(name)
        for layout in layouts[1:]:
            changed = {k for k, v in layout.to_dict().items() if v != official[k]}
            assert changed <= file_fields, (name, changed)


def test_old_task_json_with_dev_holdout_still_reads():
    old = tasks.get_task("imdb").to_dict()
    old.pop("carved_split")
    for field in ("other_dev_splits", "repair_space_joined_label", "num_choices", "options_column"):
        old.pop(field)
    old["dev_holdout"] = [0.2, 2020]
    assert tasks.TaskSpec.from_dict(json.loads(json.dumps(old))) == tasks.get_task("imdb")


def test_carved_split_is_checked():
    with pytest.raises(ValueError, match=r"carved_split .* needs a 'train' file and no 'dev' file"):
        tasks.TaskSpec(name="x", directory="", files=(("train", "/a.tsv"), ("dev", "/b.tsv")),
                       file_format="tsv", text_column="t", label_column="l", label_values=("a", "b"),
                       label_names=("a", "b"), carved_split=("train", "dev", 0.2, 1))
    with pytest.raises(ValueError, match=r"fraction 1.5 must be between 0 and 1"):
        tasks.TaskSpec(name="x", directory="", files=(("train", "/a.tsv"),),
                       file_format="tsv", text_column="t", label_column="l", label_values=("a", "b"),
                       label_names=("a", "b"), carved_split=("train", "dev", 1.5, 1))


def test_shared_mnli_split_is_recorded_in_the_task(data_dir):
    # The substitute layout itself says how its train split was made, and the run directory
    # stores the TaskSpec (task.json), so the split is recorded with every run.
    task = task_for_data("mnli", data_dir)
    assert task.to_dict()["carved_split"] == ("dev", "train", 0.7, 2020)
    train = read_split(task, "train", data_dir)
    assert np.bincount(train.labels).tolist() == [2414, 2225, 2231]


def test_train_command_records_the_layout_it_found(tmp_path):
    from powerbert_cli.main import build_parser
    from powerbert_cli.task_args import task_from_args

    mnli_3col(tmp_path, [("p", "h", 0)], [("p", "h", 1)])
    args = build_parser().parse_args(["train", "--task", "mnli", "--out", str(tmp_path / "run"),
                                      "--data-dir", str(tmp_path)])
    assert task_from_args(args, run_dir=args.out).carved_split == ("dev", "train", 0.7, 2020)
    # tensorflow-datasets' glue/mnli has GLUE's own splits: the official layout.
    args = build_parser().parse_args(["train", "--task", "mnli", "--out", str(tmp_path / "run"), "--data", "tfds"])
    assert task_from_args(args, run_dir=args.out) is tasks.get_task("mnli")
