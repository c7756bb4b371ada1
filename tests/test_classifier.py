"""`PowerBertClassifier`: Keras conventions (config, `.keras` files, fit) on a tiny random BERT."""

import keras
import numpy as np
import pytest

from powerbert_tf import PowerBertClassifier, PowerBertEncoder, RetentionConfig, RetentionError, load_encoder
from powerbert_tf.checkpoints import save_google_checkpoint
from powerbert_tf.loading import build_encoder
from tests.conftest import random_inputs

MODES = [dict(elimination="none"), dict(elimination="soft", sequence_length=12),
         dict(elimination="hard", retention=[10, 6, 3], sequence_length=12)]


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m["elimination"])
def test_keras_file_round_trip(tiny_config, tmp_path, mode):
    model = PowerBertClassifier(build_encoder(tiny_config, **mode), num_classes=3)
    x = random_inputs(4, 12)
    expected = model(x).numpy()
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.encoder, PowerBertEncoder)
    assert loaded.encoder.elimination == mode["elimination"]
    np.testing.assert_allclose(loaded(x).numpy(), expected, atol=1e-6)


def test_config_round_trip(tiny_config):
    model = PowerBertClassifier(build_encoder(tiny_config, elimination="hard", retention=[10, 6, 3],
                                             sequence_length=12), num_classes=1, dropout=0.2)
    clone = PowerBertClassifier.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    assert clone.encoder.retention.lengths == (10, 6, 3)


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m["elimination"])
def test_fit_reduces_loss(tiny_config, mode):
    # Label: does token 7 occur? Learnable from the embeddings in a few epochs.
    x = random_inputs(64, 12, seed=3)
    y = (x["input_ids"] == 7).any(axis=1).astype(np.int32)
    model = PowerBertClassifier(build_encoder(tiny_config, **mode), num_classes=2, dropout=0.0)
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(x, y, batch_size=16, epochs=8, verbose=0)
    assert history.history["loss"][-1] < 0.7 * history.history["loss"][0]


def test_rejects_zero_classes(tiny_config):
    with pytest.raises(ValueError, match="num_classes"):
        PowerBertClassifier(build_encoder(tiny_config), num_classes=0)


def test_with_elimination_keeps_the_weights(tiny_config):
    # Hard extract keeping all N word vectors is no elimination, so a copy in that mode must
    # give the original model's outputs: the weights (encoder and head) came across.
    model = PowerBertClassifier(build_encoder(tiny_config), num_classes=3, dropout=0.2)
    model.build()
    copy = model.with_elimination(elimination="hard", retention=[12, 12, 12], sequence_length=12)
    assert copy.encoder.elimination == "hard" and (copy.num_classes, copy.dropout) == (3, 0.2)
    x = random_inputs(4, 12)
    np.testing.assert_allclose(copy(x).numpy(), model(x).numpy(), atol=1e-5)


@pytest.fixture
def tiny_checkpoint(tiny_config, tmp_path):
    """A Google-format checkpoint directory of a random tiny BERT, as `load_encoder` reads it."""
    directory = str(tmp_path / "tiny")
    save_google_checkpoint(build_encoder(tiny_config), directory)
    return directory


def test_load_encoder_needs_n_with_a_list_of_counts(tiny_checkpoint):
    # N used to default to max(l_j) = 10 here, not the 16 the counts are for: length-aware
    # scaling and the FLOP ratio were then computed against the wrong N.
    with pytest.raises(ValueError, match=r"pass sequence_length=N, or retention=RetentionConfig"):
        load_encoder(tiny_checkpoint, retention=[10, 6, 3])
    encoder = load_encoder(tiny_checkpoint, retention=[10, 6, 3], sequence_length=16)
    assert encoder.retention == RetentionConfig((10, 6, 3), 16)
    assert encoder.get_config()["sequence_length"] == 16


def test_load_encoder_rejects_n_other_than_the_retention_configs(tiny_checkpoint):
    retention = RetentionConfig((10, 6, 3), 16)
    with pytest.raises(ValueError, match="sequence_length=12 disagrees with the RetentionConfig's N=16"):
        load_encoder(tiny_checkpoint, retention=retention, sequence_length=12)
    assert load_encoder(tiny_checkpoint, retention=retention, sequence_length=16).retention == retention
    assert load_encoder(tiny_checkpoint, retention=retention).retention == retention


def test_every_hard_constructor_needs_n(tiny_config):
    with pytest.raises(ValueError, match="sequence_length=N"):
        build_encoder(tiny_config, elimination="hard", retention=[10, 6, 3])
    with pytest.raises(ValueError, match="sequence_length=N"):
        PowerBertClassifier(build_encoder(tiny_config)).with_elimination(elimination="hard", retention=[10, 6, 3])
    # A wrong layer count is reported before the missing N.
    with pytest.raises(RetentionError, match="3 layers"):
        build_encoder(tiny_config, elimination="hard", retention=[10, 6])
