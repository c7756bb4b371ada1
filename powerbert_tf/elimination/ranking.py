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


def kept_positions_within_budget(keys, k, budget):
    """`kept_positions` for a batch whose inputs keep different numbers of word vectors.

    Every input gets `k` slots (the largest budget of the batch, or an upper bound of it); input b
    fills its first `budget[b]` slots with its most significant positions, and the rest are
    marked outside the budget (they become padding for every later layer).

    Args:
        keys: float (B, T) from `ranking_keys`.
        k: Python int or scalar int tensor, `max(budget) <= k <= T`.
        budget: int (B,) word vectors each input keeps.

    Returns:
        `(positions, within)`: int32 (B, K) positions increasing along axis 1, and bool (B, K),
        True where the position is one of its input's `budget[b]` most significant.
    """
    _, top = tf.math.top_k(keys, k=k, sorted=True)  # (B, K), most significant first
    within = tf.less(tf.expand_dims(tf.range(tf.shape(top)[1]), 0),
                     tf.expand_dims(tf.cast(budget, tf.int32), 1))
    word_order = tf.argsort(top, axis=1)
    return (tf.gather(top, word_order, batch_dims=1),
            tf.gather(within, word_order, batch_dims=1))


def relative_rank_bins(ranks, real_tokens, bins):
    """Relative mode: which of `bins` retention weights the word vector of each rank uses.

    Rank r of an input with n real tokens falls in bin `floor(r * bins / n)`, so the input's ranks
    spread over all bins whatever its length; padding (r >= n) goes to the last bin. A weight
    vector of l ones then n zeros scales exactly `ceil(l * n / bins)` word vectors by one, the count
    `RetentionConfig.per_input_counts` keeps.

    Args:
        ranks: int32 (B, T) from `retention_ranks`.
        real_tokens: int (B,) real tokens per input, at least 1.
        bins: Python int N.

    Returns:
        int32 (B, T) bin indices in [0, bins).
    """
    n = tf.expand_dims(tf.cast(real_tokens, tf.int32), 1)
    return tf.minimum((ranks * bins) // n, bins - 1)


def retention_ranks(keys):
    """Rank of each position in the keep order (0 = kept first).

    Args:
        keys: float (B, T) from `ranking_keys`.

    Returns:
        int32 (B, T): `ranks[b, t]` is the rank of position t.
    """
    order = tf.argsort(keys, axis=1, direction="DESCENDING", stable=True)
    return tf.argsort(order, axis=1, stable=True)
