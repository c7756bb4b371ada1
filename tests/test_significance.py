"""`significance_scores` against a loop-by-loop NumPy reading of METHOD.md and hand values."""

import numpy as np
import pytest

from powerbert_tf.elimination.significance import significance_scores


def reference_significance(probs, mask):
    """Sig(w) = sum_h sum_{q != w, q real} A[b, h, q, w]; 0 for padded w."""
    batch, heads, length, _ = probs.shape
    out = np.zeros((batch, length))
    for b in range(batch):
        for w in range(length):
            if not mask[b, w]:
                continue
            for q in range(length):
                if q != w and mask[b, q]:
                    out[b, w] += probs[b, :, q, w].sum()
    return out


def masked_softmax_probs(rng, batch, heads, mask):
    length = mask.shape[1]
    logits = rng.normal(size=(batch, heads, length, length))
    logits = np.where(mask[:, None, None, :] > 0, logits, -1e9)
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return (e / e.sum(-1, keepdims=True)).astype(np.float32)


def test_hand_computed_example():
    # One head, three positions, the last one padding. Query rows are attention distributions.
    probs = np.array([[[[0.5, 0.5, 0.0],
                        [0.2, 0.8, 0.0],
                        [0.3, 0.3, 0.4]]]], np.float32)
    mask = np.array([[1, 1, 0]])
    # w=0 receives from q=1 only: 0.2. w=1 from q=0 only: 0.5. Padded query row 2 never counts.
    np.testing.assert_allclose(significance_scores(probs, mask).numpy(), [[0.2, 0.5, 0.0]], atol=1e-7)


@pytest.mark.parametrize("padding", ["right", "left"])
def test_matches_reference_with_padding(padding):
    rng = np.random.default_rng(1)
    mask = np.zeros((5, 9), np.int32)
    for b, n in enumerate([9, 1, 4, 7, 2]):
        mask[b, :n] = 1
    if padding == "left":
        mask = mask[:, ::-1].copy()
    probs = masked_softmax_probs(rng, 5, 3, mask)
    np.testing.assert_allclose(significance_scores(probs, mask).numpy(),
                               reference_significance(probs, mask), atol=1e-5)


def test_sum_and_mean_over_heads_rank_alike():
    rng = np.random.default_rng(2)
    mask = np.ones((2, 6), np.int32)
    probs = masked_softmax_probs(rng, 2, 4, mask)
    summed = significance_scores(probs, mask).numpy()
    np.testing.assert_array_equal(np.argsort(-summed, axis=1),
                                  np.argsort(-(reference_significance(probs, mask) / 4), axis=1))
