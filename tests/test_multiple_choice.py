"""`PowerBertMultipleChoice`: per-option scores equal a one-output classifier's on each option
alone (in every elimination mode), and the Keras conventions (config, `.keras` files, fit)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from powerbert_tf import PowerBertClassifier, PowerBertMultipleChoice
from powerbert_tf.checkpoints import save_google_checkpoint
from powerbert_tf.loading import build_encoder
from tests.conftest import random_inputs
from tests.layer_harness import check_config_round_trip

MODES = [dict(elimination="none"), dict(elimination="soft", sequence_length=12),
         dict(elimination="hard", retention=[10, 6, 3], sequence_length=12)]


def option_inputs(batch, options, length, seed=0):
    """int32 (B, C, T) inputs whose C options of an example all have different real lengths
    (so hard elimination sees differently padded rows within an example), the second half of
    each option's real tokens of token type 1."""
    inputs = random_inputs(batch * options, length, seed=seed)
    lengths = [[length - (2 * b + c) % (length - 1) for c in range(options)] for b in range(batch)]
    assert all(len(set(row)) == options for row in lengths)
    mask = (np.arange(length) < np.reshape(lengths, (-1, 1))).astype(np.int32)
    ids = np.where(mask > 0, np.maximum(inputs["input_ids"], 5), 0)
    ids[:, 0] = 1
    types = ((np.arange(length) >= np.reshape(lengths, (-1, 1)) // 2) * mask).astype(np.int32)
    return {name: value.reshape(batch, options, length)
            for name, value in (("input_ids", ids), ("attention_mask", mask), ("token_type_ids", types))}


def one_output_classifier(model):
    """A `PowerBertClassifier(num_classes=1)` with the model's encoder and head weights."""
    classifier = PowerBertClassifier(model.encoder, num_classes=1, dropout=model.dropout)
    classifier.build()
    classifier.head.set_weights(model.head.get_weights())
    return classifier


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m["elimination"])
def test_each_option_scores_as_a_sequence_alone(tiny_config, mode):
    model = PowerBertMultipleChoice(build_encoder(tiny_config, **mode))
    x = option_inputs(3, 4, 12)
    logits = model(x)
    assert logits.shape == (3, 4)
    classifier = one_output_classifier(model)
    expected = np.stack([classifier({name: value[:, c] for name, value in x.items()}).numpy()[:, 0]
                         for c in range(4)], axis=1)
    np.testing.assert_allclose(logits.numpy(), expected, atol=1e-5)


def test_forward_keeps_the_encoder_outputs_per_option(tiny_config):
    model = PowerBertMultipleChoice(build_encoder(tiny_config, elimination="hard", retention=[10, 6, 3],
                                                  sequence_length=12))
    x = option_inputs(2, 3, 12)
    expected = model(x).numpy()
    logits, outputs = model.forward(x, return_hidden_states=True)
    np.testing.assert_allclose(logits.numpy(), expected, atol=1e-6)
    assert outputs["sequence_output"].shape == (6, 3, tiny_config.hidden_size)
    assert len(outputs["hidden_states"]) == tiny_config.num_hidden_layers


@pytest.mark.parametrize("mode", MODES[::2], ids=lambda m: m["elimination"])
def test_options_and_length_vary_between_calls(tiny_config, mode):
    model = PowerBertMultipleChoice(build_encoder(tiny_config, **mode))
    traced = tf.function(lambda x: model(x), reduce_retracing=True, input_signature=[
        {name: tf.TensorSpec([None, None, None], tf.int32)
         for name in ("input_ids", "attention_mask", "token_type_ids")}])
    for batch, options, length in ((2, 3, 12), (1, 5, 8), (3, 2, 12)):
        x = option_inputs(batch, options, length, seed=options)
        eager = model(x)
        assert eager.shape == (batch, options)
        np.testing.assert_allclose(traced(x).numpy(), eager.numpy(), atol=1e-5)


def test_config_round_trip(tiny_config):
    model = PowerBertMultipleChoice(build_encoder(tiny_config, elimination="hard", retention=[10, 6, 3],
                                                  sequence_length=12), dropout=0.2)
    config = check_config_round_trip(model, {"dropout": 0.2})
    assert config["num_classes"] == 1
    assert PowerBertMultipleChoice.from_config(config).encoder.retention.lengths == (10, 6, 3)


def test_rejects_other_head_widths(tiny_config):
    with pytest.raises(ValueError, match="num_classes must be 1, got 2"):
        PowerBertMultipleChoice(build_encoder(tiny_config), num_classes=2)


@pytest.mark.parametrize("mode", MODES[::2], ids=lambda m: m["elimination"])
def test_keras_file_round_trip(tiny_config, tmp_path, mode):
    model = PowerBertMultipleChoice(build_encoder(tiny_config, **mode))
    x = option_inputs(2, 4, 12)
    expected = model(x).numpy()
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is PowerBertMultipleChoice and loaded.encoder.elimination == mode["elimination"]
    np.testing.assert_allclose(loaded(x).numpy(), expected, atol=1e-6)


def test_with_elimination_keeps_the_class_and_weights(tiny_config):
    model = PowerBertMultipleChoice(build_encoder(tiny_config), dropout=0.2)
    model.build()
    x = option_inputs(2, 4, 12)
    same = model.with_elimination(elimination="none")
    assert type(same) is PowerBertMultipleChoice and same.dropout == 0.2
    np.testing.assert_allclose(same(x).numpy(), model(x).numpy(), atol=1e-6)
    # Hard extract keeping all N word vectors is no elimination.
    hard = model.with_elimination(elimination="hard", retention=[12, 12, 12], sequence_length=12)
    assert type(hard) is PowerBertMultipleChoice and hard.encoder.elimination == "hard"
    np.testing.assert_allclose(hard(x).numpy(), model(x).numpy(), atol=1e-5)


def test_constructors_return_the_subclass(tiny_config, tmp_path):
    model = PowerBertMultipleChoice(build_encoder(tiny_config))
    model.build()
    x = option_inputs(2, 3, 12)
    imported = PowerBertMultipleChoice.from_bert_weights(model.bert_weights())
    assert type(imported) is PowerBertMultipleChoice
    np.testing.assert_allclose(imported(x).numpy(), model(x).numpy(), atol=1e-5)
    three_classes = PowerBertClassifier(build_encoder(tiny_config), num_classes=3)
    three_classes.build()
    with pytest.raises(ValueError, match="num_classes must be 1, got 3"):
        PowerBertMultipleChoice.from_bert_weights(three_classes.bert_weights())

    directory = str(tmp_path / "tiny")
    save_google_checkpoint(model.encoder, directory)
    pretrained = PowerBertMultipleChoice.from_pretrained(directory, dropout=0.3)
    assert type(pretrained) is PowerBertMultipleChoice
    assert (pretrained.num_classes, pretrained.dropout) == (1, 0.3)
    assert type(PowerBertClassifier.from_pretrained(directory)) is PowerBertClassifier


def test_fit_reduces_loss(tiny_config):
    # The right option is the one holding token 7: learnable from the embeddings in a few epochs.
    batch, options = 48, 4
    x = option_inputs(batch, options, 12, seed=5)
    rng = np.random.default_rng(5)
    x["input_ids"] = np.where(x["input_ids"] == 7, 8, x["input_ids"])
    y = rng.integers(0, options, size=batch).astype(np.int32)
    for b, c in enumerate(y):
        x["input_ids"][b, c, rng.integers(1, x["attention_mask"][b, c].sum())] = 7
    model = PowerBertMultipleChoice(build_encoder(tiny_config), dropout=0.0)
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(x, y, batch_size=16, epochs=8, verbose=0)
    assert history.history["loss"][-1] < 0.7 * history.history["loss"][0]
