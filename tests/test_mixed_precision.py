"""`--mixed-precision`: the pipeline's steps train under Keras' mixed policies with float32 where
the method needs it, the saved models predict like float32 copies of themselves, and the float16
search scales its loss."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from powerbert_tf import PowerBertClassifier
from powerbert_tf.loading import build_encoder
from tests.conftest import random_inputs
from tests.multi_worker_run import SGD_FOR_ADAM
from tests.test_pipeline import N, make_config, tiny  # noqa: F401  (the module's tiny task fixture)
from tests.test_search import N as SEARCH_N, NO_DROPOUT, batches
from training.config import resolve_config
from training.pipeline import Pipeline
from training.search import ConfigurationSearch

# bfloat16 keeps 8 bits of mantissa: the tiny model's logits (up to about 1) moved by 0.006.
BFLOAT16_LOGITS_TOLERANCE = 0.03


def float32_copy(model):
    """`model` rebuilt under the float32 policy with its weights (mixed policies keep float32
    variables): every layer records the policy it was given in its config."""
    def to_float32(config):
        if isinstance(config, dict):
            if config.get("class_name") == "DTypePolicy":
                return "float32"
            return {key: to_float32(value) for key, value in config.items()}
        if isinstance(config, list):
            return [to_float32(value) for value in config]
        return config

    copy = keras.saving.deserialize_keras_object(to_float32(keras.saving.serialize_keras_object(model)))
    copy.set_weights(model.get_weights())
    return copy


def test_bfloat16_steps_train_keep_float32_where_needed_and_reload(tiny, tmp_path):  # noqa: F811
    keras.utils.set_random_seed(0)
    config = make_config(tiny, mixed_precision="bfloat16", epochs=6, search_epochs=1, checkpoint_every=24)
    Pipeline(config, str(tmp_path), task=tiny[1], verbose=0).run(("finetune", "search"))
    assert keras.mixed_precision.dtype_policy().name == "float32"  # the run's policy was only lent

    with open(tmp_path / "finetune" / "progress.json") as f:
        losses = [entry["loss"] for entry in json.load(f)["history"]]
    assert len(losses) == 3 and losses[-1] < 0.5 * losses[0], losses

    searched = keras.saving.load_model(tmp_path / "search" / "model.keras")
    assert searched.dtype_policy.name == "mixed_bfloat16"
    assert all(layer.retention.dtype == "float32" for layer in searched.encoder.soft_extract_layers)
    with open(tmp_path / "search" / "masses.json") as f:
        assert max(json.load(f)) < N  # the float32 retention weights did move

    finetuned = keras.saving.load_model(tmp_path / "finetune" / "model.keras")  # under float32
    x = random_inputs(8, N, vocab_size=NO_DROPOUT.vocab_size, seed=3)
    mixed, full = finetuned(x, training=False), float32_copy(finetuned)(x, training=False)
    assert mixed.dtype == full.dtype == tf.float32
    np.testing.assert_allclose(mixed.numpy(), full.numpy(), rtol=0, atol=BFLOAT16_LOGITS_TOLERANCE)
    assert (mixed.numpy().argmax(-1) == full.numpy().argmax(-1)).all()


def make_search(policy, monkeypatch):
    """A search on the tiny soft-extract classifier under `policy`, with SGD for Adam so that an
    update is proportional to its gradient (Adam's first step is lr * sign(g) whatever its scale)."""
    for name, make in SGD_FOR_ADAM.items():
        monkeypatch.setattr(keras.optimizers, name, make)
    keras.mixed_precision.set_dtype_policy(policy)
    try:
        keras.utils.set_random_seed(0)
        model = PowerBertClassifier(build_encoder(NO_DROPOUT, elimination="soft", sequence_length=SEARCH_N),
                                    num_classes=2, dropout=0.0)
        model.build()
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="none")
        return ConfigurationSearch(model, loss, lam=0.01, lr_bert=1e-3, lr_soft=0.05, total_steps=8,
                                   global_batch=8, warmup_fraction=0.0)
    finally:
        keras.mixed_precision.set_dtype_policy("float32")


def retention_update(search):
    before = np.stack([v.numpy() for v in search.retention_variables])
    x, y = batches(1)[0]
    task_loss, penalty = search.train_step(x, y)
    assert np.isfinite(task_loss) and np.isfinite(penalty)
    return np.stack([v.numpy() for v in search.retention_variables]) - before


def test_float16_search_scales_the_loss_and_unscales_both_optimizers(monkeypatch):
    search = make_search("mixed_float16", monkeypatch)
    assert isinstance(search.bert_optimizer, keras.optimizers.LossScaleOptimizer)
    assert isinstance(search.soft_optimizer, keras.optimizers.LossScaleOptimizer)
    # Scales apart, as after the BERT gradients once overflowed: the retention weights' gradients
    # must still arrive unscaled.
    search.bert_optimizer.dynamic_scale.assign(2.0 ** 10)
    update = retention_update(search)
    assert all(v.dtype == "float32" for v in search.retention_variables)
    reference = retention_update(make_search("float32", monkeypatch))
    assert np.abs(reference).max() > 1e-3
    np.testing.assert_allclose(update, reference, rtol=0, atol=2e-2 * np.abs(reference).max())


def test_an_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="mixed_precision must be one of"):
        resolve_config("sst2", "quick", mixed_precision="float8")
