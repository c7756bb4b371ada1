"""Shared fixtures: a tiny random-weight BERT for fast tests, random inputs with padding, and the
one rule for tests that need the shared data directory."""

import os
import pathlib

import numpy as np
import pytest

from powerbert_tf.bert_config import BertConfig

TINY = BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                  intermediate_size=64, max_position_embeddings=64, type_vocab_size=2)


def running_in_ci():
    return os.environ.get("CI", "").strip().lower() in ("true", "1")


def require_data_dir():
    """The shared data directory from POWERBERT_DATA_DIR, for tests that read the real files.

    Without it the test is skipped on a developer's machine, but fails under `CI=true`: a CI run
    that silently skipped every real-data test would look green while testing none of it.
    A path that is set but is not a directory always fails: that is a broken setup, not a choice.
    """
    from training.data import ENV_VAR  # here, not at the top: collecting a test needs no training code

    path = os.environ.get(ENV_VAR)
    if not path:
        message = f"{ENV_VAR} is not set; point it at shared/data (the Makefile sets it)"
        if running_in_ci():
            pytest.fail(f"{message}. CI=true: tests that need the data must run in CI, not skip",
                        pytrace=False)
        pytest.skip(message)
    if not os.path.isdir(path):
        pytest.fail(f"{ENV_VAR}={path!r} is not a directory; point it at shared/data", pytrace=False)
    return pathlib.Path(path)


@pytest.fixture(scope="session")
def data_dir():
    """See `require_data_dir`; test modules use this fixture instead of reading the variable."""
    return require_data_dir()


@pytest.fixture
def tiny_config():
    return TINY


def random_inputs(batch, length, vocab_size=TINY.vocab_size, seed=0, padding="right", min_len=2):
    """int32 inputs with a random real length per row; [CLS]=1 at the first real position."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, vocab_size, size=(batch, length)).astype(np.int32)
    mask = np.zeros((batch, length), np.int32)
    for b in range(batch):
        n = int(rng.integers(min_len, length + 1))
        real = slice(0, n) if padding == "right" else slice(length - n, length)
        mask[b, real] = 1
        ids[b, real.start] = 1
    ids = ids * mask
    types = np.zeros_like(ids)
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


MODELGARDEN_PYTHON_VAR = "POWERBERT_MODELGARDEN_PYTHON"


@pytest.fixture(scope="session")
def modelgarden_python():
    """The Python of the Model Garden environment (`make modelgarden-env`), from
    $POWERBERT_MODELGARDEN_PYTHON (the Makefile sets it).

    Skipped when it is missing on a developer's machine; under `CI=true` a missing environment
    fails, as for the data directory: CI builds it and must run these tests.
    """
    path = os.environ.get(MODELGARDEN_PYTHON_VAR)
    if not path or not os.path.isfile(path):
        message = (f"{MODELGARDEN_PYTHON_VAR}={path!r} is not a Python; build the environment with "
                   f"`make modelgarden-env`")
        if running_in_ci():
            pytest.fail(f"{message}. CI=true: the Model Garden tests must run in CI, not skip", pytrace=False)
        pytest.skip(message)
    return path
