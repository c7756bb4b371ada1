"""`HardExtract` against a NumPy reading of METHOD.md's hard extract."""

import numpy as np
import pytest

from powerbert_tf.elimination import HardExtract


def reference_kept(scores, mask, k):
    """[CLS] (first real token), then the highest-scoring other real tokens (lower position first
    on ties), then padding in position order; the first k, sorted into word order."""
    real = [t for t in range(len(mask)) if mask[t]]
    others = sorted(real[1:], key=lambda t: (-scores[t], t))
    padding = [t for t in range(len(mask)) if not mask[t]]
    return sorted(([real[0]] + others + padding)[:k])


def make_batch(padding, seed=0, batch=6, length=10, ties=False):
    rng = np.random.default_rng(seed)
    lengths = [10, 1, 3, 6, 8, 2][:batch]
    mask = np.zeros((batch, length), np.int32)
    for b, n in enumerate(lengths):
        if padding == "right":
            mask[b, :n] = 1
        else:
            mask[b, length - n:] = 1
    scores = rng.integers(0, 3, size=(batch, length)) if ties else rng.random((batch, length))
    scores = (scores * mask).astype(np.float32)
    hidden = rng.normal(size=(batch, length, 4)).astype(np.float32)
    return hidden, mask, scores


@pytest.mark.parametrize("padding", ["right", "left"])
@pytest.mark.parametrize("keep", [1, 3, 5, 9])
@pytest.mark.parametrize("ties", [False, True])
def test_matches_reference(padding, keep, ties):
    hidden, mask, scores = make_batch(padding, ties=ties)
    out_hidden, out_mask, positions = [t.numpy() for t in HardExtract(keep)(hidden, mask, scores)]
    for b in range(hidden.shape[0]):
        expected = reference_kept(scores[b], mask[b], keep)
        np.testing.assert_array_equal(positions[b], expected)
        np.testing.assert_array_equal(out_hidden[b], hidden[b, expected])
        np.testing.assert_array_equal(out_mask[b], mask[b, expected])


@pytest.mark.parametrize("padding", ["right", "left"])
def test_cls_kept_and_word_order(padding):
    hidden, mask, scores = make_batch(padding, seed=3)
    first_real = mask.argmax(axis=1)
    scores[np.arange(len(scores)), first_real] = 0.0  # [CLS] least significant: still kept
    positions = HardExtract(4)(hidden, mask, scores)[2].numpy()
    assert all(first_real[b] in positions[b] for b in range(len(positions)))
    assert (np.diff(positions, axis=1) > 0).all()


def test_keep_larger_than_real_length_keeps_all_real_then_padding():
    hidden, mask, scores = make_batch("right")
    positions = HardExtract(5)(hidden, mask, scores)[2].numpy()
    np.testing.assert_array_equal(positions[1], [0, 1, 2, 3, 4])  # 1 real token + 4 padding
    out_mask = HardExtract(5)(hidden, mask, scores)[1].numpy()
    np.testing.assert_array_equal(out_mask[1], [1, 0, 0, 0, 0])


def test_keep_equal_to_length_is_identity():
    hidden, mask, scores = make_batch("right")
    out_hidden, out_mask, positions = HardExtract(10)(hidden, mask, scores)
    np.testing.assert_array_equal(positions.numpy(), np.tile(np.arange(10), (6, 1)))
    np.testing.assert_array_equal(out_hidden.numpy(), hidden)
    np.testing.assert_array_equal(out_mask.numpy(), mask)


def test_keep_larger_than_sequence_is_clipped_statically():
    hidden, mask, scores = make_batch("right")
    out_hidden = HardExtract(50)(hidden, mask, scores)[0]
    assert out_hidden.shape == (6, 10, 4)


def test_rejects_bad_keep():
    with pytest.raises(ValueError, match="positive int"):
        HardExtract(0)
