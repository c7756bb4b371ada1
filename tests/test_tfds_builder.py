"""Tests for the powerbert_glue_local tfds builder: it prepares offline from manual_dir and
yields exactly what training.data.read_split reads."""

import socket

import pytest

tfds = pytest.importorskip("tensorflow_datasets")

from training import data, tasks  # noqa: E402
from training import tfds_glue_local  # noqa: E402,F401  (registers the builder)

NAME = "powerbert_glue_local"


def _refuse_network(*args, **kwargs):
    raise AssertionError("the tfds builder tried to use the network")


def prepare(task, data_dir, tfds_dir):
    """Build `task` into `tfds_dir` with all network calls refused."""
    tfds.disable_progress_bar()
    builder = tfds.builder(f"{NAME}/{task}", data_dir=str(tfds_dir))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", _refuse_network)
        patch.setattr(socket, "getaddrinfo", _refuse_network)
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=str(data_dir)))
    return builder


@pytest.fixture(scope="module")
def rte(data_dir, tmp_path_factory):
    return prepare("rte", data_dir, tmp_path_factory.mktemp("tfds"))


def test_one_config_per_task_but_multiple_choice():
    assert [c.name for c in tfds_glue_local.PowerbertGlueLocal.BUILDER_CONFIGS] == [
        name for name in tasks.task_names() if name != "race"]
    assert NAME in tfds.list_builders() and NAME != "glue"


def test_rte_matches_reader(rte, data_dir):
    assert {name: split.num_examples for name, split in rte.info.splits.items()} == {
        "train": 2490, "validation": 277, "test": 3000}
    assert rte.info.features["label"].names == ["entailment", "not_entailment"]
    rows = list(tfds.as_numpy(rte.as_dataset(split="validation")))
    expected = data.read_split("rte", "dev", data_dir)
    assert len(rows) == len(expected) == 277
    assert [r["text"].decode() for r in rows] == expected.text
    assert [r["text_b"].decode() for r in rows] == expected.text_b
    assert [int(r["label"]) for r in rows] == expected.labels.tolist()
    assert [int(r["idx"]) for r in rows] == list(range(277))
    assert [int(r["line"]) for r in rows] == expected.lines.tolist()


def test_unlabelled_test_split_has_label_minus_one(rte):
    first = next(iter(tfds.as_numpy(rte.as_dataset(split="test"))))
    assert first["label"] == -1 and first["text"].startswith(b"Mangla was summoned")


def test_stsb_scores_and_missing_splits(data_dir, tmp_path):
    # Only the dev file in manual_dir: the builder makes just that split.
    (tmp_path / "manual/glue/STS-B").mkdir(parents=True)
    (tmp_path / "manual/glue/STS-B/dev.tsv").write_bytes(
        (data_dir / "glue/STS-B/dev.tsv").read_bytes())
    builder = prepare("stsb", tmp_path / "manual", tmp_path / "tfds")
    assert list(builder.info.splits) == ["validation"]
    rows = list(tfds.as_numpy(builder.as_dataset(split="validation").take(3)))
    expected = data.read_split("stsb", "dev", data_dir)
    assert [float(r["label"]) for r in rows] == expected.labels[:3].tolist()
    assert rows[0]["text_b"].decode() == expected.text_b[0]


def test_no_task_files_in_manual_dir(tmp_path):
    # Another task's file only: (tfds itself rejects an empty manual_dir with its instructions.)
    (tmp_path / "manual/glue/SST-2").mkdir(parents=True)
    (tmp_path / "manual/glue/SST-2/dev.tsv").write_text("sentence\tlabel\ngood .\t1\n")
    with pytest.raises(data.MissingDataError, match=r"no file of task 'mrpc' under manual_dir.*"
                                                    r"glue/MRPC/train.tsv"):
        prepare("mrpc", tmp_path / "manual", tmp_path / "tfds")


def test_bad_file_fails_preparation_with_reader_error(tmp_path):
    bad = tmp_path / "manual/glue/SST-2/dev.tsv"
    bad.parent.mkdir(parents=True)
    bad.write_text("sentence\tlabel\ngood .\t1\nbad .\tpositive\n")
    with pytest.raises(data.LabelError, match=r"SST-2/dev.tsv:3: label 'positive'"):
        prepare("sst2", tmp_path / "manual", tmp_path / "tfds")
