"""`load_examples`: a task split read from one of two sources, as `training.data.Examples`.

* `source="local"` (works offline): the built-in tasks go through the registered tfds builder
  `powerbert_glue_local/<task>` (`training.tfds_glue_local`), prepared from the data directory
  into `cache_dir` and read back; user tasks are read by `training.data.read_split`, as they have
  no builder. The result equals `read_split` on the same files, lines included.
* `source="tfds"` (needs the internet the first time): the GLUE tasks through tensorflow-datasets'
  own `glue/<task>` builders. Offline it fails within seconds with `OfflineError`, naming the
  local route, instead of letting tfds retry its download for minutes.

    from training.task_source import load_examples

    dev = load_examples("mrpc", "dev", data_dir="shared/data", cache_dir="runs/mrpc/tfds")
    dev = load_examples("mrpc", "dev", source="tfds")  # prepared in ~/tensorflow_datasets
"""

import http.client
import os
import pathlib
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
from typing import Dict, Optional, Tuple, Union

import numpy as np
import tensorflow_datasets as tfds

from training import data
from training.tasks import TASKS, TaskSpec, get_task
from training.tfds_glue_local import TFDS_SPLITS

SOURCES = ("local", "tfds")
LOCAL_BUILDER = "powerbert_glue_local"

# The (text, text_b) feature names of tfds's `glue/<task>` builders (`text_features` of each
# GlueConfig in tensorflow_datasets/text/glue.py). Their ClassLabel names are, in order:
# sst2 negative, positive; cola unacceptable, acceptable; mrpc not_equivalent, equivalent;
# rte and qnli entailment, not_entailment; qqp not_duplicate, duplicate; mnli entailment, neutral,
# contradiction; stsb is a float32 score. tfds turns the files' "0"/"1"
# into ids 0/1 and the NLI strings into their position, so a tfds label id is the position in our
# `TaskSpec.label_values`, as in `read_split`. `_check_label_names` re-checks this at load time.
GLUE_TEXT_FEATURES: Dict[str, Tuple[str, Optional[str]]] = {
    "sst2": ("sentence", None),
    "cola": ("sentence", None),
    "mrpc": ("sentence1", "sentence2"),
    "rte": ("sentence1", "sentence2"),
    "stsb": ("sentence1", "sentence2"),
    "qnli": ("question", "sentence"),
    "qqp": ("question1", "question2"),
    "mnli": ("premise", "hypothesis"),
}
# tfds's glue/mnli has matched and mismatched dev and test splits.
_GLUE_SPLITS = {"mnli": {"dev": "validation_matched", "dev_mismatched": "validation_mismatched",
                         "test": "test_matched"}}

# A file tfds's GLUE builders download (sst2's GlueConfig.data_url in
# tensorflow_datasets/text/glue.py; every GLUE zip and MRPC's train/test files are on this host,
# MRPC's dev ids on firebasestorage.googleapis.com). An answer to a request for it within
# PROBE_TIMEOUT_SECONDS is the test for being online. Module constants, so tests can point the
# probe at an address that never answers.
GLUE_PROBE_URL = "https://dl.fbaipublicfiles.com/glue/data/SST-2.zip"
PROBE_TIMEOUT_SECONDS = 3.0

OFFLINE_ROUTE = f"--data local --data-dir DIR (or set {data.ENV_VAR}=DIR)"

# The file in a local cache directory that records the data directory it was prepared from.
_CACHE_OWNER_FILE = f"{LOCAL_BUILDER}.data_dir"
# Rows per batch when reading a prepared split back: row by row is ~8x slower.
_READ_BATCH = 8192


class OfflineError(data.DataError):
    """`source="tfds"` needs a download, and the download host cannot be reached."""


def load_examples(task: Union[str, TaskSpec], split: str, *, source: str = "local",
                  data_dir: Optional[data.PathLike] = None,
                  cache_dir: Optional[data.PathLike] = None) -> data.Examples:
    """Read one split ("train", "dev" or "test") of `task` from `source`.

    Args:
        task: A task name or `TaskSpec`.
        split: "train", "dev" or "test".
        source: "local" or "tfds" (see the module docstring).
        data_dir: The local data directory (`glue/`, `imdb/`); else `$POWERBERT_DATA_DIR`.
            Used by "local" only.
        cache_dir: Where tfds keeps prepared data. "local": give each data directory its own
            cache (the pipeline passes `<run dir>/tfds`), since tfds reuses a prepared dataset
            without reading the files again; a cache prepared from another data directory is
            refused. None: a temporary directory, removed afterwards. "tfds": the tfds data
            directory; None is tfds's default (`~/tensorflow_datasets`), shared by all runs.

    Returns:
        The examples in file order, equal to `read_split` for "local". For "tfds", texts are
        stripped as `read_split` strips them, `path` names the tfds split
        (`tfds:glue/sst2/validation`) and `lines` are the GLUE row numbers (tfds `idx` + 1).

    Raises:
        ValueError: unknown source, or a split the task does not have.
        DataError: as `read_split` for "local" (bad rows name file:line); for "tfds", a task
            without a GLUE builder (imdb, user tasks).
        OfflineError: "tfds", the data is not prepared and the machine is offline.
    """
    if not isinstance(task, TaskSpec):
        task = data.task_for_data(task, data_dir) if source == "local" else get_task(task)
    task.file_for(split)  # Rejects a split the task does not have, before any work.
    if source == "local":
        return _load_local(task, split, data_dir, cache_dir)
    if source == "tfds":
        return _load_tfds_glue(task, split, cache_dir)
    raise ValueError(f"unknown data source {source!r}; choose one of {list(SOURCES)}")


def glue_examples(columns: Dict[str, np.ndarray], task: TaskSpec, split: str) -> data.Examples:
    """`Examples` from the columns of a tfds `glue/<task>` split (as `tfds.as_numpy` gives them),
    in GLUE file order: tfds stores its GLUE splits shuffled, `idx` is the row in the file."""
    order = np.argsort(columns["idx"], kind="stable")
    columns = {name: values[order] for name, values in columns.items()}
    text_key, pair_key = GLUE_TEXT_FEATURES[task.name]
    return _examples(columns, task, split, text_key, pair_key,
                     lines=columns["idx"].astype(np.int64) + 1,
                     path=f"tfds:glue/{task.name}/{_glue_split(task, split)}")


def glue_host_reachable() -> bool:
    """Whether the GLUE download host answers a request within PROBE_TIMEOUT_SECONDS, sent as
    tfds's download would go: over HTTPS, through the proxy the environment sets."""
    return _answers(GLUE_PROBE_URL, PROBE_TIMEOUT_SECONDS)


def _load_local(task: TaskSpec, split: str, data_dir, cache_dir) -> data.Examples:
    # The builder has configs for the official layouts of the built-in non-multiple-choice tasks.
    if TASKS.get(task.name) != task or task.is_multiple_choice:
        return data.read_split(task, split, data_dir)
    root = data.resolve_data_dir(data_dir)
    path = data.split_path(task, split, root)
    if not path.is_file():
        # The builder would just leave the split out; say which file is missing instead.
        raise data.MissingDataError("file does not exist", path)
    if cache_dir is not None:
        return _read_local_builder(task, split, root, pathlib.Path(cache_dir), path)
    with tempfile.TemporaryDirectory(prefix="powerbert-tfds-") as temporary:
        return _read_local_builder(task, split, root, pathlib.Path(temporary), path)


def _read_local_builder(task: TaskSpec, split: str, root: pathlib.Path,
                        cache_dir: pathlib.Path, path: pathlib.Path) -> data.Examples:
    """Prepare `powerbert_glue_local/<task>` from `root` into `cache_dir` and read `split`."""
    _claim_cache_dir(cache_dir, root)
    builder = tfds.builder(f"{LOCAL_BUILDER}/{task.name}", data_dir=os.fspath(cache_dir))
    config = tfds.download.DownloadConfig(manual_dir=os.fspath(root))
    # A bad row raises the reader's DataError (file:line) out of here unchanged: tfds wraps
    # only errors of its own encoding step. Its progress bars would bury that message; preparing
    # SST-2's 67k rows takes seconds.
    tfds.display_progress_bar(False)
    try:
        builder.download_and_prepare(download_config=config)
    finally:
        tfds.display_progress_bar(True)
    columns = _read_columns(builder, TFDS_SPLITS[split])
    return _examples(columns, task, split, "text", "text_b" if task.is_pair else None,
                     lines=columns["line"], path=str(path))


def _claim_cache_dir(cache_dir: pathlib.Path, root: pathlib.Path) -> None:
    """Record the data directory `cache_dir` is prepared from; refuse a different one, whose
    prepared examples tfds would otherwise hand out as if they came from `root`."""
    owner_file = cache_dir / _CACHE_OWNER_FILE
    source = str(root.resolve())
    if owner_file.is_file():
        owner = owner_file.read_text(encoding="utf-8")
        if owner != source:
            raise data.DataError(
                f"{cache_dir} holds tfds data prepared from the data directory {owner}, not "
                f"{source}; use another cache directory or delete this one")
        return
    cache_dir.mkdir(parents=True, exist_ok=True)
    owner_file.write_text(source, encoding="utf-8")


def _load_tfds_glue(task: TaskSpec, split: str, tfds_data_dir) -> data.Examples:
    is_user_task = TASKS.get(task.name) != task
    if is_user_task or task.name not in GLUE_TEXT_FEATURES:
        raise data.DataError(
            f"--data tfds reads the GLUE tasks {', '.join(GLUE_TEXT_FEATURES)} from "
            f"tensorflow-datasets' glue/<task> builders; {task.name!r} is "
            f"{'your own task' if is_user_task else 'not one of them'}: read its files with "
            f"--data local")
    builder = tfds.builder(f"glue/{task.name}",
                           data_dir=None if tfds_data_dir is None else os.fspath(tfds_data_dir))
    _check_label_names(builder, task)
    if not builder.is_prepared():
        _require_glue_host(builder)
        builder.download_and_prepare()
    return glue_examples(_read_columns(builder, _glue_split(task, split)), task, split)


def _glue_split(task: TaskSpec, split: str) -> str:
    """tfds's glue/<task> name of `split`."""
    return _GLUE_SPLITS.get(task.name, {}).get(split, TFDS_SPLITS[split])


def _check_label_names(builder, task: TaskSpec) -> None:
    """Fail if tfds's label ids ever stop meaning what `task.label_values` says they mean."""
    label = builder.info.features["label"]
    names = list(getattr(label, "names", []))
    if names != list(task.label_names):
        raise data.DataError(
            f"tfds {builder.name}/{task.name} labels are {names}, the task's are "
            f"{list(task.label_names)}: the label ids would not match; use --data local")


def _require_glue_host(builder) -> None:
    """Raise OfflineError unless the GLUE download host answers (the download is next)."""
    if glue_host_reachable():
        return
    host = urllib.parse.urlsplit(GLUE_PROBE_URL).netloc
    raise OfflineError(
        f"{builder.name}/{builder.builder_config.name} is not prepared in "
        f"{builder.data_dir_root} and its download host {host} did not answer within "
        f"{PROBE_TIMEOUT_SECONDS:g} s: this machine looks offline (tfds would retry the download "
        f"for minutes). Offline, read the local GLUE-format files: {OFFLINE_ROUTE}, "
        f"DIR holding glue/<TASK>/{{train,dev,test}}.tsv")


def _answers(url: str, timeout: float) -> bool:
    """Whether `url` answers a HEAD request, with any HTTP status, within `timeout` seconds in all.

    A plain TCP connect is not enough: sandboxes and firewalls may accept any connection and then
    fail TLS. The request runs in a daemon thread because urlopen's timeout does not cover the
    name lookup, which can hang much longer on a machine without DNS.
    """
    answered = []

    def request():
        try:
            # A new opener reads the proxy settings now; urlopen's keeps the first ones it saw.
            with urllib.request.build_opener().open(urllib.request.Request(url, method="HEAD"),
                                                    timeout=timeout):
                pass
        except urllib.error.HTTPError:
            pass  # An error status is still an answer from the host.
        except (OSError, http.client.HTTPException):  # No route, refused, timeout, TLS, DNS.
            return
        answered.append(True)

    thread = threading.Thread(target=request, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(answered)


def _read_columns(builder, tfds_split: str) -> Dict[str, np.ndarray]:
    """Every feature of the prepared `tfds_split` as one NumPy array per feature, in stored order."""
    batches = list(tfds.as_numpy(builder.as_dataset(split=tfds_split)
                                 .batch(_READ_BATCH)))
    return {name: np.concatenate([batch[name] for batch in batches]) for name in batches[0]}


def _examples(columns: Dict[str, np.ndarray], task: TaskSpec, split: str, text_key: str,
              pair_key: Optional[str], *, lines: np.ndarray, path: str) -> data.Examples:
    """`Examples` from tfds columns; labels are None for unlabelled splits (tfds stores -1)."""
    if split in task.labelled_splits:
        labels = columns["label"].astype(np.float32 if task.is_regression else np.int64)
    else:
        labels = None
    return data.Examples(
        text=_texts(columns[text_key]),
        text_b=None if pair_key is None else _texts(columns[pair_key]),
        labels=labels,
        lines=np.asarray(lines, np.int64),
        path=path)


def _texts(values: np.ndarray) -> list:
    # Stripped as `read_split` strips them: tfds's GLUE keeps SST-2's space before the tab.
    return [value.decode("utf-8").strip() for value in values]
