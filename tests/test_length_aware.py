"""Length-aware retention: keep ceil(l_j * T / N) word vectors for a batch of length T."""

import numpy as np
import pytest
import tensorflow as tf

from powerbert_tf.checkpoints.variable_names import copy_encoder_weights
from powerbert_tf.loading import build_encoder
from powerbert_tf.elimination.retention import RetentionConfig
from tests.conftest import TINY, random_inputs

N = 16
RETENTION = RetentionConfig((12, 8, 3), N)


@pytest.fixture(scope="module")
def length_aware():
    return build_encoder(TINY, elimination="hard", retention=RETENTION, length_aware=True)


def _hard_copy(config, source, lengths, n):
    encoder = build_encoder(config, elimination="hard", retention=RetentionConfig(tuple(lengths), n))
    copy_encoder_weights(source, encoder)
    return encoder


@pytest.mark.parametrize("length", [16, 10, 5])
def test_equals_hard_encoder_at_the_scaled_configuration(length_aware, length):
    # Independent reference: a plain hard encoder whose l_j are the hand-scaled lengths.
    by_hand = {16: [12, 8, 3], 10: [8, 5, 2], 5: [4, 3, 1]}[length]
    reference = _hard_copy(TINY, length_aware, by_hand, length)
    x = random_inputs(5, length, seed=length)
    got = length_aware(x)
    want = reference(x)
    assert got["sequence_output"].shape == (5, by_hand[-1], TINY.hidden_size)
    np.testing.assert_allclose(got["sequence_output"].numpy(), want["sequence_output"].numpy(), atol=1e-6)
    np.testing.assert_array_equal(got["attention_mask"].numpy(), want["attention_mask"].numpy())


def test_dynamic_length_in_tf_function(length_aware):
    spec = tf.TensorSpec((None, None), tf.int32)
    fn = tf.function(lambda i, m, t: length_aware({"input_ids": i, "attention_mask": m, "token_type_ids": t}),
                     input_signature=[spec] * 3)
    for length, kept in [(16, 3), (7, 2)]:
        x = random_inputs(3, length, seed=1)
        out = fn(x["input_ids"], x["attention_mask"], x["token_type_ids"])
        assert out["sequence_output"].shape[1] == kept
        np.testing.assert_allclose(out["pooled_output"].numpy(), length_aware(x)["pooled_output"].numpy(),
                                   atol=1e-6)


def test_config_round_trip_and_mode_check(length_aware):
    assert length_aware.get_config()["length_aware"] is True
    with pytest.raises(ValueError, match="length_aware needs elimination='hard'"):
        build_encoder(TINY, length_aware=True)
