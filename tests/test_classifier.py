"""`PowerBertClassifier`: Keras conventions (config, `.keras` files, fit) on a tiny random BERT."""

import keras
import numpy as np
import pytest

from powerbert_tf import PowerBertClassifier, PowerBertEncoder
from powerbert_tf.loading import build_encoder
from tests.conftest import random_inputs

MODES = [dict(elimination="none"), dict(elimination="soft", sequence_length=12),
         dict(elimination="hard", retention=[10, 6, 3])]


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
    model = PowerBertClassifier(build_encoder(tiny_config, elimination="hard", retention=[10, 6, 3]),
                                num_classes=1, dropout=0.2)
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
