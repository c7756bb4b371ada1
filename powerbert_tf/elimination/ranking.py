"""Which word vectors to keep: ranking rules shared by hard and soft extraction (pure functions).

Rule (documented in README "Elimination rules"): the first real token ([CLS]; position 0 with
right padding) always ranks first; real tokens follow by descending significance; padding ranks
last. Ties go to the lower position (this is what `tf.math.top_k` does), so word order decides
between equal scores. Ranking padding last, rather than giving it score 0, keeps the rule correct
for left-padded batches too.

Letters: B batch, T sequence length, K kept positions.
"""

import tensorflow as tf

# Scores are sums of attention probabilities, so at most heads * T (< 1e5 for any BERT); keys at
# +-_OUTSIDE can never tie with a real score.
_OUTSIDE = 1e9


def ranking_keys(scores, attention_mask):
    """Keys whose descending order is the keep order.

    Args:
        scores: float (B, T) significance scores.
        attention_mask: (B, T), 1 for real tokens.

    Returns:
        float32 (B, T): `+_OUTSIDE` at the first real token, the score at other real tokens,
        `-_OUTSIDE` at padding.
    """
    scores = tf.cast(scores, tf.float32)
    mask = tf.cast(attention_mask, tf.int32)
    is_real = tf.equal(mask, 1)
    is_first_real = tf.logical_and(is_real, tf.equal(tf.cumsum(mask, axis=1), 1))
    outside = tf.fill(tf.shape(scores), _OUTSIDE)
    return tf.where(is_first_real, outside, tf.where(is_real, scores, -outside))


def kept_positions(keys, k):
    """Positions of the `k` highest keys, in ascending (word) order.

    Args:
        keys: float (B, T) from `ranking_keys`.
        k: Python int (static, for TFLite/TensorRT) or scalar int tensor, `k <= T`.

    Returns:
        int32 (B, K) positions, increasing along axis 1.
    """
    _, top = tf.math.top_k(keys, k=k, sorted=True)
    return tf.sort(top, axis=1)


def retention_ranks(keys):
    """Rank of each position in the keep order (0 = kept first).

    Args:
        keys: float (B, T) from `ranking_keys`.

    Returns:
        int32 (B, T): `ranks[b, t]` is the rank of position t.
    """
    order = tf.argsort(keys, axis=1, direction="DESCENDING", stable=True)
    return tf.argsort(order, axis=1, stable=True)
