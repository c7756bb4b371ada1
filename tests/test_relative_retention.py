"""Length-relative retention: input i keeps ceil(l_j * n_i / N) word vectors in layer j, per input."""

import itertools

import numpy as np
import pytest
import tensorflow as tf

from powerbert_tf.checkpoints.variable_names import copy_encoder_weights
from powerbert_tf.elimination import ranking
from powerbert_tf.elimination.retention import RetentionConfig, RetentionError
from powerbert_tf.elimination.soft_extract import SoftExtract
from powerbert_tf.encoder import PowerBertEncoder
from powerbert_tf.loading import build_encoder
from tests.conftest import TINY, random_inputs

N = 16
RELATIVE = RetentionConfig((12, 8, 3), N, relative=True)


# === Ratio -> count rules (pure) ===

@pytest.mark.parametrize("n, by_hand", [(16, [12, 8, 3]), (5, [4, 3, 1]), (1, [1, 1, 1]), (8, [6, 4, 2])])
def test_counts_by_hand(n, by_hand):
    # 12*5/16 = 3.75 -> 4, 8*5/16 = 2.5 -> 3, 3*5/16 = 0.94 -> 1; 3*8/16 = 1.5 -> 2.
    assert RELATIVE.per_input_counts(n) == by_hand


def test_counts_follow_the_rules_for_every_config_and_length():
    n_max = 12
    for lengths in itertools.combinations_with_replacement(range(n_max, 0, -1), 3):
        config = RetentionConfig(lengths, n_max, relative=True)
        for n in range(1, n_max + 1):
            counts = config.per_input_counts(n)
            assert all(1 <= c <= n for c in counts), (lengths, n, counts)
            assert list(counts) == sorted(counts, reverse=True), (lengths, n, counts)
            # Never fewer than the fraction rho_j of the input, and less than one word more.
            for c, rho in zip(counts, config.ratios):
                assert rho * n <= c < rho * n + 1


def test_counts_as_a_tensor_match_python_ints():
    n = tf.constant([1, 5, 8, 16])
    got = [c.numpy().tolist() for c in RELATIVE.per_input_counts(n)]
    assert got == [[RELATIVE.per_input_counts(int(v))[j] for v in n.numpy()] for j in range(3)]


def test_config_records_the_mode_and_ratios():
    data = RELATIVE.to_dict()
    assert data["relative"] is True and data["ratios"] == [0.75, 0.5, 0.1875]
    assert RetentionConfig.from_dict(data) == RELATIVE
    assert "relative" not in RetentionConfig((12, 8, 3), N).to_dict()
    assert RetentionConfig.from_dict({"lengths": [3, 2], "sequence_length": 4}).relative is False
    assert RetentionConfig.from_masses([11.2, 7.9, 2.5], N, relative=True) == RELATIVE
    with pytest.raises(RetentionError, match="relative must be True or False"):
        RetentionConfig((3, 2), 4, relative="yes")


def test_relative_rank_bins_by_hand():
    ranks = tf.constant([[0, 1, 2, 3, 4, 5, 6]])
    # n = 5 real tokens of N = 16 bins: floor(r * 16 / 5) = 0, 3, 6, 9, 12; padding -> last bin.
    got = ranking.relative_rank_bins(ranks, tf.constant([5]), 16).numpy()
    np.testing.assert_array_equal(got, [[0, 3, 6, 9, 12, 15, 15]])


# === SoftExtract(relative=True) ===

@pytest.mark.parametrize("kept", [1, 5, 11, 16])
def test_soft_step_weights_keep_exactly_the_hard_count(kept):
    layer = SoftExtract(N, relative=True)
    layer.build()
    layer.retention.assign([1.0] * kept + [0.0] * (N - kept))
    x = random_inputs(6, N, seed=kept)
    mask = tf.constant(x["attention_mask"])
    scores = tf.random.stateless_uniform((6, N), seed=(kept, 0))
    hidden = tf.ones((6, N, 2))
    scaled, _ = layer(hidden, mask, scores)
    ones_per_input = tf.reduce_sum(scaled[:, :, 0] * tf.cast(mask, tf.float32), axis=1).numpy()
    config = RetentionConfig((kept,), N, relative=True)
    want = [config.per_input_counts(int(n))[0] for n in x["attention_mask"].sum(axis=1)]
    np.testing.assert_array_equal(ones_per_input, want)


# === Hard mode: each input gets its single-input answer ===

@pytest.fixture(scope="module")
def relative_encoder():
    return build_encoder(TINY, elimination="hard", retention=RELATIVE)


def _single(x, b):
    n = int(x["attention_mask"][b].sum())
    return {k: v[b:b + 1, :n] for k, v in x.items()}


def test_a_mixed_length_batch_gives_each_input_its_single_answer(relative_encoder):
    x = random_inputs(6, N, seed=3, min_len=1)
    batch = relative_encoder(x)
    for b in range(6):
        alone = relative_encoder(_single(x, b))
        np.testing.assert_allclose(batch["pooled_output"][b].numpy(), alone["pooled_output"][0].numpy(),
                                   atol=2e-5)


def test_a_single_input_equals_a_fixed_hard_encoder_at_its_own_counts(relative_encoder):
    # Independent reference: the paper's fixed-count encoder with the hand-computed counts.
    x = random_inputs(1, 5, seed=4, min_len=5)
    fixed = build_encoder(TINY, elimination="hard", retention=RetentionConfig((4, 3, 1), 5))
    copy_encoder_weights(relative_encoder, fixed)
    got, want = relative_encoder(x), fixed(x)
    assert got["sequence_output"].shape == want["sequence_output"].shape == (1, 1, TINY.hidden_size)
    np.testing.assert_allclose(got["pooled_output"].numpy(), want["pooled_output"].numpy(), atol=1e-6)


def test_masks_in_a_mixed_length_batch_hold_each_inputs_count(relative_encoder):
    x = random_inputs(8, N, seed=5, min_len=1)
    out = relative_encoder(x, return_details=True)
    masks = out["attention_masks"][1:] + [out["attention_mask"]]
    n = x["attention_mask"].sum(axis=1)
    for j, mask in enumerate(masks):
        want = [RELATIVE.per_input_counts(int(v))[j] for v in n]
        np.testing.assert_array_equal(mask.numpy().sum(axis=1), want)
        # Slots: ceil(l_j * T / N) at T = N, i.e. l_j.
        assert mask.shape[1] == RELATIVE.lengths[j]


def test_cls_is_kept_in_every_layer_and_alone_at_the_end(relative_encoder):
    encoder = build_encoder(TINY, elimination="hard", retention=RetentionConfig((12, 8, 1), N, relative=True))
    copy_encoder_weights(relative_encoder, encoder)
    x = random_inputs(8, N, seed=6, min_len=1)
    x["input_ids"][:, 0] = 1
    out = encoder(x, return_details=True)
    for mask in out["attention_masks"] + [out["attention_mask"]]:
        np.testing.assert_array_equal(mask.numpy()[:, 0], 1)  # position 0 is [CLS], kept first
    assert out["attention_mask"].shape[1] == 1


def test_dynamic_padding_gives_the_same_answers(relative_encoder):
    spec = tf.TensorSpec((None, None), tf.int32)
    fn = tf.function(lambda i, m, t: relative_encoder({"input_ids": i, "attention_mask": m, "token_type_ids": t}),
                     input_signature=[spec] * 3)
    x = random_inputs(5, N, seed=7, min_len=1)
    longest = int(x["attention_mask"].sum(axis=1).max())
    trimmed = {k: v[:, :longest] for k, v in x.items()}
    got = fn(trimmed["input_ids"], trimmed["attention_mask"], trimmed["token_type_ids"])
    np.testing.assert_allclose(got["pooled_output"].numpy(), relative_encoder(x)["pooled_output"].numpy(),
                               atol=2e-5)


def test_mode_round_trips_through_get_config(relative_encoder):
    config = relative_encoder.get_config()
    assert config["relative_retention"] is True
    clone = PowerBertEncoder.from_config(config)
    assert clone.retention == RELATIVE
    soft = build_encoder(TINY, elimination="soft", sequence_length=N, relative_retention=True)
    assert all(layer.relative for layer in soft.soft_extract_layers)


def test_mode_errors_name_the_conflict():
    with pytest.raises(ValueError, match="relative_retention needs elimination"):
        build_encoder(TINY, relative_retention=True)
    with pytest.raises(ValueError, match="choose one"):
        build_encoder(TINY, elimination="hard", retention=RELATIVE, length_aware=True)
    with pytest.raises(ValueError, match="disagrees with a RetentionConfig"):
        build_encoder(TINY, elimination="hard", retention=RetentionConfig((3, 2, 1), 4), relative_retention=True)
