"""Tests for training.task_source.load_examples: the local route reads the built-in tasks through
the powerbert_glue_local builder and gives exactly what training.data.read_split reads; the tfds
route fails fast offline and turns the rows of tfds's own glue/* builders into the same Examples."""

import http.server
import socket
import tempfile
import threading
import time

import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")
tf = pytest.importorskip("tensorflow")

from training import data, task_source  # noqa: E402
from training.task_source import load_examples  # noqa: E402
from training.user_task import user_task  # noqa: E402

# Real files the local route is checked on: dev splits, the smallest train (RTE), the unlabelled
# STS-B test and the IMDB train file, whose held-out part is IMDB's dev.
REAL_FILES = ("glue/SST-2/dev.tsv", "glue/MRPC/dev.tsv", "glue/STS-B/dev.tsv",
              "glue/STS-B/test.tsv", "glue/RTE/train.tsv", "imdb/train_subset_5000.csv")
# (task, split, number of examples from shared/data/README.md and the 20% IMDB hold-out).
LOCAL_CASES = [("sst2", "dev", 872), ("mrpc", "dev", 408), ("stsb", "dev", 1500),
               ("stsb", "test", 1379), ("rte", "train", 2490), ("imdb", "dev", 1000),
               ("imdb", "train", 4000)]
# The text features of tfds's glue/<task> builders, as tensorflow_datasets/text/glue.py names them.
GLUE_TEXTS = {"sst2": ("sentence",), "cola": ("sentence",), "mrpc": ("sentence1", "sentence2"),
              "rte": ("sentence1", "sentence2"), "stsb": ("sentence1", "sentence2"),
              "qnli": ("question", "sentence")}
# Unroutable on a real network (times out); refused or failing TLS in sandboxes.
UNROUTABLE_URL = "https://10.255.255.1/SST-2.zip"


def assert_same_rows(got, expected):
    """Same texts and labels (dtype included), in the same order."""
    assert got.text == expected.text
    assert got.text_b == expected.text_b
    if expected.labels is None:
        assert got.labels is None
    else:
        assert got.labels.dtype == expected.labels.dtype
        assert got.labels.tolist() == expected.labels.tolist()


def assert_same_examples(got, expected):
    assert_same_rows(got, expected)
    assert got.path == expected.path
    assert got.lines.dtype == np.int64 and got.lines.tolist() == expected.lines.tolist()


@pytest.fixture(scope="module")
def real_subset(data_dir, tmp_path_factory):
    """A data directory holding only REAL_FILES (links to the shared files), so preparing a task
    does not also prepare its large train split."""
    root = tmp_path_factory.mktemp("data")
    for name in REAL_FILES:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).symlink_to(data_dir / name)
    return root


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """One tfds cache for all tasks, as a run directory's `tfds/` is."""
    return tmp_path_factory.mktemp("tfds")


@pytest.fixture
def closed_url():
    """A local URL nothing listens on: the connection is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        host, port = sock.getsockname()
    return f"https://{host}:{port}/SST-2.zip"


class NotFound(http.server.BaseHTTPRequestHandler):
    def do_HEAD(self):
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def answering_server():
    """A local HTTP server that answers every HEAD request with 404 (any answer means online)."""
    server = http.server.HTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield "http://{}:{}".format(*server.server_address)
    server.shutdown()
    server.server_close()


@pytest.fixture
def no_proxy(monkeypatch):
    for scheme in ("http", "https", "all", "no"):
        for name in (f"{scheme}_proxy", f"{scheme.upper()}_PROXY"):
            monkeypatch.delenv(name, raising=False)


@pytest.fixture
def loopback_only(monkeypatch, no_proxy):
    """Any network use other than connecting to 127.0.0.1 fails the test."""
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if host != "127.0.0.1":
            raise AssertionError(f"network use: {host}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def refuse_download(*args, **kwargs):
    raise AssertionError("download_and_prepare was called")


# --- source="local" ---------------------------------------------------------------------------

@pytest.mark.parametrize("task,split,size", LOCAL_CASES)
def test_local_builder_equals_read_split(real_subset, cache_dir, task, split, size):
    got = load_examples(task, split, data_dir=real_subset, cache_dir=cache_dir)
    expected = data.read_split(task, split, real_subset)
    assert len(expected) == size
    assert_same_examples(got, expected)
    # The examples came through the builder, prepared into the cache.
    assert (cache_dir / "powerbert_glue_local" / task / "1.1.0").is_dir()


def test_user_task_is_read_directly(tmp_path, monkeypatch):
    # A user task may share a built-in's name; it still has no builder config of its own.
    path = tmp_path / "mine.tsv"
    path.write_text("sentence\tlabel\nfine .\tyes\n\nnot fine .\tno\n")
    task = user_task("sst2", train=str(path), text_column="sentence", label_column="label",
                     label_values=["no", "yes"])
    monkeypatch.setattr(tfds, "builder", refuse_download)
    got = load_examples(task, "train", cache_dir=tmp_path / "tfds")
    assert_same_examples(got, data.read_split(task, "train"))
    assert got.lines.tolist() == [2, 4] and got.labels.tolist() == [1, 0]
    assert not (tmp_path / "tfds").exists()


def test_bad_row_raises_the_readers_error(tmp_path):
    bad = tmp_path / "data/glue/SST-2/dev.tsv"
    bad.parent.mkdir(parents=True)
    bad.write_text("sentence\tlabel\ngood .\t1\nbad .\tpositive\n")
    with pytest.raises(data.LabelError) as caught:
        load_examples("sst2", "dev", data_dir=tmp_path / "data", cache_dir=tmp_path / "tfds")
    # Exactly the reader's message: nothing of tfds's preparation wrapped around it.
    assert str(caught.value) == (
        f"{bad}:3: label 'positive' is not one of the sst2 labels ['0', '1']")
    assert (caught.value.path, caught.value.line) == (str(bad), 3)


def test_missing_split_file_names_the_file(real_subset, tmp_path):
    with pytest.raises(data.MissingDataError, match=r"glue/SST-2/train.tsv: file does not exist"):
        load_examples("sst2", "train", data_dir=real_subset, cache_dir=tmp_path)


def test_cache_dir_belongs_to_one_data_dir(tmp_path):
    for name in ("a", "b"):
        path = tmp_path / name / "glue/SST-2/dev.tsv"
        path.parent.mkdir(parents=True)
        path.write_text(f"sentence\tlabel\nfrom {name} .\t1\n")
    first = load_examples("sst2", "dev", data_dir=tmp_path / "a", cache_dir=tmp_path / "tfds")
    assert first.text == ["from a ."]
    with pytest.raises(data.DataError, match=r"prepared from the data directory .*a, not .*b"):
        load_examples("sst2", "dev", data_dir=tmp_path / "b", cache_dir=tmp_path / "tfds")


def test_without_cache_dir_a_temporary_one_is_removed(tmp_path, monkeypatch):
    path = tmp_path / "data/glue/SST-2/dev.tsv"
    path.parent.mkdir(parents=True)
    path.write_text("sentence\tlabel\ngood .\t1\n")
    (tmp_path / "temp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "temp"))
    got = load_examples("sst2", "dev", data_dir=tmp_path / "data")
    assert got.text == ["good ."] and got.lines.tolist() == [2]
    # No prepared data is left behind (tfds itself leaves an empty tmp*tfds folder per builder).
    assert list((tmp_path / "temp").rglob("powerbert_glue_local")) == []


def test_unknown_source_and_split():
    with pytest.raises(ValueError,
                       match=r"unknown data source 'hub'; choose one of \['local', 'tfds'\]"):
        load_examples("sst2", "dev", source="hub")
    with pytest.raises(ValueError, match=r"task 'qnli' has no split 'val'"):
        load_examples("qnli", "val", source="tfds")


# --- source="tfds": offline ---------------------------------------------------------------------

@pytest.mark.parametrize("address", ["closed port", "unroutable"])
def test_tfds_offline_fails_fast_naming_the_local_route(address, closed_url, tmp_path, monkeypatch,
                                                        no_proxy):
    url = closed_url if address == "closed port" else UNROUTABLE_URL
    monkeypatch.setattr(task_source, "GLUE_PROBE_URL", url)
    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", refuse_download)
    start = time.monotonic()
    with pytest.raises(task_source.OfflineError) as caught:
        load_examples("sst2", "dev", source="tfds", cache_dir=tmp_path)
    assert time.monotonic() - start < 10
    message = str(caught.value)
    assert f"glue/sst2 is not prepared in {tmp_path}" in message and "looks offline" in message
    assert "--data local --data-dir DIR (or set POWERBERT_DATA_DIR=DIR)" in message
    assert isinstance(caught.value, data.DataError)


def test_tfds_has_no_imdb_or_user_task(tmp_path):
    with pytest.raises(data.DataError, match=r"'imdb' is not one of them: read its files with "
                                             r"--data local"):
        load_examples("imdb", "dev", source="tfds")
    path = tmp_path / "mine.tsv"
    path.write_text("sentence\tlabel\nfine .\t1\nbad .\t0\n")
    task = user_task("mine", train=str(path), text_column="sentence", label_column="label")
    with pytest.raises(data.DataError, match=r"'mine' is your own task: read its files with "
                                             r"--data local"):
        load_examples(task, "train", source="tfds")


def test_probe_follows_the_proxy_settings(monkeypatch, answering_server, no_proxy):
    # A name that never resolves: only a proxy can answer for it.
    monkeypatch.setattr(task_source, "GLUE_PROBE_URL", "http://glue.invalid/SST-2.zip")
    assert not task_source.glue_host_reachable()
    monkeypatch.setenv("HTTP_PROXY", answering_server)
    assert task_source.glue_host_reachable()
    monkeypatch.setenv("NO_PROXY", "glue.invalid")
    assert not task_source.glue_host_reachable()


# --- source="tfds": tfds's own glue/* builders, without network ----------------------------------

@pytest.mark.parametrize("task,split", [("rte", "dev"), ("rte", "test"), ("stsb", "dev"),
                                        ("cola", "dev")])
def test_prepared_glue_equals_read_split(task, split, data_dir, tmp_path, monkeypatch, closed_url,
                                         loopback_only):
    """tfds's real glue/<task> builder, prepared from the shared GLUE files instead of its
    download, is read without any network (the probe would fail) and matches read_split."""
    monkeypatch.setattr(tfds.download.DownloadManager, "download_and_extract",
                        lambda self, url: str(data_dir / "glue"))
    tfds.builder(f"glue/{task}", data_dir=str(tmp_path)).download_and_prepare()
    monkeypatch.setattr(task_source, "GLUE_PROBE_URL", closed_url)
    got = load_examples(task, split, source="tfds", cache_dir=tmp_path)
    expected = data.read_split(task, split, data_dir)
    assert_same_rows(got, expected)
    # GLUE row numbers, not file lines: tfds has no file to point into.
    assert got.lines.tolist() == list(range(1, len(expected) + 1))
    assert got.path == f"tfds:glue/{task}/{'validation' if split == 'dev' else split}"


# Three fake GLUE rows in the order tfds stores them (shuffled; `idx` is the row in the file),
# and the label and score of the rows with idx 0, 1 and 2.
FAKE_ORDER = [2, 0, 1]
FAKE_LABELS = [1, 0, 1]
FAKE_SCORES = [4.5, 0.0, 2.25]


def fake_glue_rows(self, split, decoders=None, read_config=None, shuffle_files=False):
    """The FAKE_ORDER rows with the real builder's features: text `"<feature> <idx> "` (GLUE
    keeps SST-2's trailing space), label from FAKE_LABELS/FAKE_SCORES, -1 in the test split."""
    columns = {name: tf.constant([f"{name} {i} " for i in FAKE_ORDER])
               for name, feature in self.info.features.items()
               if isinstance(feature, tfds.features.Text)}
    columns["idx"] = tf.constant(FAKE_ORDER, tf.int32)
    is_score = self.info.features["label"].dtype == np.float32
    by_idx = FAKE_SCORES if is_score else FAKE_LABELS
    labels = [-1] * 3 if split == "test" else [by_idx[i] for i in FAKE_ORDER]
    columns["label"] = tf.constant(labels, tf.float32 if is_score else tf.int64)
    return tf.data.Dataset.from_tensor_slices(columns)


@pytest.mark.parametrize("task", sorted(GLUE_TEXTS))
def test_glue_builders_through_the_online_path(task, tmp_path, monkeypatch, answering_server,
                                               loopback_only):
    """The whole online path with tfds mocked: not prepared, the probe reaches the (local) host,
    download_and_prepare is tfds's mock no-op, and the real builder's features are converted."""
    monkeypatch.setattr(task_source, "GLUE_PROBE_URL", answering_server + "/SST-2.zip")
    with tfds.testing.mock_data(as_dataset_fn=fake_glue_rows):
        dev = load_examples(task, "dev", source="tfds", cache_dir=tmp_path)
        test = load_examples(task, "test", source="tfds", cache_dir=tmp_path)
    first, *second = GLUE_TEXTS[task]
    assert dev.text == [f"{first} 0", f"{first} 1", f"{first} 2"]
    assert dev.text_b == ([f"{second[0]} 0", f"{second[0]} 1", f"{second[0]} 2"] if second
                          else None)
    if task == "stsb":
        assert dev.labels.dtype == np.float32 and dev.labels.tolist() == FAKE_SCORES
    else:
        assert dev.labels.dtype == np.int64 and dev.labels.tolist() == FAKE_LABELS
    assert dev.lines.tolist() == [1, 2, 3] and dev.path == f"tfds:glue/{task}/validation"
    assert test.labels is None and test.path == f"tfds:glue/{task}/test"
