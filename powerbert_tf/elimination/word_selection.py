"""Which word vectors hard extract keeps: by significance, or by a static rule (pure functions).

The static rules are the baselines of the paper's "does the score matter?" question; they keep
the same number of word vectors as PoWER-BERT but choose them without attention:
- "significance" (PoWER-BERT): the attention-based significance scores, unchanged.
- "head" (Head-WS): the first `l_j` real tokens still present, in word order.
- "random" (Rand-WS): a seeded random `l_j` of the real tokens still present. Each layer has a
  fixed priority per *real-token index* (0 for [CLS], 1 for the next real token, ...) drawn
  once from `(seed, layer_index)`, so a given input keeps the same positions in every batch
  and call, whatever its padding (amount or side), in training and evaluation alike, and the
  rule needs no random op: a constant table and a gather (exportable as is).

Each rule gives scores that `ranking.ranking_keys` turns into the keep order, so the first real
token ([CLS]) is always kept and padding is kept only after every real token, as with
significance. Ties (float32 random priorities may collide) go to the lower position, as in
`tf.math.top_k`.

Letters: B batch, T sequence length.
"""

import functools

import numpy as np
import tensorflow as tf

WORD_SELECTIONS = ("significance", "head", "random")
# Random priorities are drawn for at least this many real-token indices (BERT's 512 positions);
# inputs of a longer static length draw as many as they need. Draws are sequential, so every
# table is a prefix of the longer ones: the same index always gets the same priority.
PRIORITY_POSITIONS = 512


def check_word_selection(word_selection, seed):
    """Raise `ValueError` unless `word_selection` is a known rule and `seed` a non-negative int."""
    if word_selection not in WORD_SELECTIONS:
        raise ValueError(f"word_selection must be one of {WORD_SELECTIONS}, got {word_selection!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"the word-selection seed must be a non-negative int, got {seed!r}")


def real_token_index(attention_mask):
    """int32 (B, T): i at the i-th real token of its row (0 at [CLS]); padding: clipped to [0, n-1]."""
    mask = tf.cast(attention_mask, tf.int32)
    return tf.maximum(tf.cumsum(mask, axis=1) - 1, 0)


def head_scores(attention_mask):
    """float32 (B, T): `-i` at the i-th real token, so the earliest real tokens rank first."""
    return -tf.cast(real_token_index(attention_mask), tf.float32)


@functools.lru_cache(maxsize=None)
def random_priorities(seed, layer_index, length):
    """float32 (length,) NumPy priorities of real-token indices 0..length-1 for one layer.

    `np.random.default_rng([seed, layer_index]).random(length)`: independent streams for every
    (seed, layer) pair, and a longer `length` extends a shorter one. Read-only (cached).
    """
    priorities = np.random.default_rng([seed, layer_index]).random(length).astype(np.float32)
    priorities.flags.writeable = False
    return priorities


def random_scores(attention_mask, seed, layer_index):
    """float32 (B, T): the layer's priority of each real token's index (padding: any value,
    `ranking_keys` ranks it last)."""
    length = max(PRIORITY_POSITIONS, attention_mask.shape[1] or 0)
    table = tf.constant(random_priorities(seed, layer_index, length))
    return tf.gather(table, real_token_index(attention_mask))


def selection_scores(word_selection, significance, attention_mask, seed=0, layer_index=0):
    """Scores whose ranking (`ranking.ranking_keys`) is the keep order of `word_selection`.

    Args:
        word_selection: one of `WORD_SELECTIONS`.
        significance: float (B, T) significance scores, returned as they are for "significance"
            (ignored by the static rules).
        attention_mask: (B, T), 1 for real tokens.
        seed, layer_index: "random" only: which priority table.

    Returns:
        float (B, T) scores.
    """
    if word_selection == "significance":
        return significance
    if word_selection == "head":
        return head_scores(attention_mask)
    return random_scores(attention_mask, seed, layer_index)
