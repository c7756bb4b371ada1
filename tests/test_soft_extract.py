"""`SoftExtract`: identity at init, rank-wise scaling, gradients, clipping."""

import keras
import numpy as np
import tensorflow as tf

from powerbert_tf.checkpoints.variable_names import copy_encoder_weights
from powerbert_tf.elimination import ClipToUnitInterval, SoftExtract
from powerbert_tf.loading import build_encoder
from tests.conftest import random_inputs


def test_scales_by_rank_against_reference():
    layer = SoftExtract(5)
    layer.build()
    layer.retention.assign([1.0, 0.8, 0.6, 0.4, 0.2])
    hidden = np.ones((1, 5, 2), np.float32)
    mask = np.array([[1, 1, 1, 1, 0]])
    scores = np.array([[0.1, 0.3, 0.9, 0.5, 0.0]], np.float32)
    # Ranks: [CLS] (pos 0) first, then pos 2 (0.9), pos 3 (0.5), pos 1 (0.3), padding (pos 4) last.
    expected = np.array([1.0, 0.4, 0.8, 0.6, 0.2])
    out, out_mask = layer(hidden, mask, scores)
    np.testing.assert_allclose(out.numpy()[0, :, 0], expected, atol=1e-7)
    np.testing.assert_array_equal(out_mask, mask)


def test_all_ones_retention_is_identity(tiny_config):
    plain = build_encoder(tiny_config)
    soft = build_encoder(tiny_config, elimination="soft", sequence_length=12)
    copy_encoder_weights(plain, soft)
    x = random_inputs(4, 12)
    np.testing.assert_allclose(soft(x)["sequence_output"].numpy(),
                               plain(x)["sequence_output"].numpy(), atol=1e-6)


def test_gradients_reach_retention_and_clip_keeps_unit_interval(tiny_config):
    soft = build_encoder(tiny_config, elimination="soft", sequence_length=12)
    x = random_inputs(4, 12)
    retention = [layer.retention for layer in soft.soft_extract_layers]
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(soft(x)["pooled_output"] ** 2)
    grads = tape.gradient(loss, retention)
    assert all(g is not None and float(tf.reduce_max(tf.abs(g))) > 0 for g in grads)

    optimizer = keras.optimizers.SGD(learning_rate=100.0)
    optimizer.apply_gradients(zip([tf.ones_like(r) for r in retention], retention))
    values = np.concatenate([r.numpy() for r in retention])
    assert values.min() >= 0.0 and values.max() <= 1.0
    np.testing.assert_array_equal(values, 0.0)  # 1 - 100 clipped to 0


def test_clip_constraint():
    np.testing.assert_array_equal(ClipToUnitInterval()(tf.constant([-0.5, 0.3, 1.7])).numpy(),
                                  np.array([0.0, 0.3, 1.0], np.float32))
