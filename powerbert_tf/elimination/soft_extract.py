"""Soft extract: learnable retention weights that scale word vectors by significance rank."""

import keras
import tensorflow as tf

from powerbert_tf.elimination import ranking
from powerbert_tf.elimination.clip_constraint import ClipToUnitInterval
from powerbert_tf.serialization import register


@register
class SoftExtract(keras.layers.Layer):
    """Multiplies the word vector of significance rank i by `retention[i]` (configuration search).

    `retention` has shape (N,), starts at 1 and is clipped to [0, 1] after every optimizer update;
    it is a float32 variable under the mixed-precision policies.
    `[CLS]` always has rank 0 and padding the last ranks (`powerbert_tf.elimination.ranking`). Its `mass`
    (sum of the weights) is what the search regularizer penalises and what the retention
    configuration is read from.

    Args:
        sequence_length: N, the number of retention weights (and the longest input).
        relative: False (the paper): rank i uses `retention[i]`. True (length-relative
            retention): rank i of an input with n real tokens uses `retention[floor(i * N / n)]`
            (`ranking.relative_rank_bins`), so the weights describe fractions of each input.

    Call args:
        hidden: float (B, T, D), T <= N.
        attention_mask: (B, T), 1 for real tokens.
        scores: float (B, T) significance scores.

    Returns:
        `(hidden, attention_mask)`: (B, T, D) scaled, in `hidden`'s dtype, and the mask unchanged.
    """

    def __init__(self, sequence_length, relative=False, **kwargs):
        # No autocast: `scores` must reach the ranking in float32 (see `HardExtract`), and the
        # retention weights are read in float32 and cast to `hidden`'s dtype only for the product.
        super().__init__(autocast=False, **kwargs)
        self.sequence_length = int(sequence_length)
        self.relative = bool(relative)

    def build(self, input_shape=None):
        self.retention = self.add_weight(
            name="retention", shape=(self.sequence_length,), initializer="ones",
            constraint=ClipToUnitInterval(), trainable=True)
        self.built = True

    @property
    def mass(self):
        """Scalar float tensor: `sum_i retention[i]`."""
        return tf.reduce_sum(self.retention)

    def call(self, hidden, attention_mask, scores):
        length = tf.shape(hidden)[1]
        tf.debugging.assert_less_equal(
            length, self.sequence_length,
            message=f"SoftExtract was built for sequences of at most {self.sequence_length} tokens")
        ranks = ranking.retention_ranks(ranking.ranking_keys(scores, attention_mask))
        if self.relative:
            real_tokens = tf.reduce_sum(tf.cast(attention_mask, tf.int32), axis=1)
            ranks = ranking.relative_rank_bins(ranks, tf.maximum(real_tokens, 1), self.sequence_length)
            weights = tf.gather(tf.cast(self.retention, hidden.dtype), ranks)  # (B, T)
        else:
            weights = tf.gather(tf.cast(self.retention[:length], hidden.dtype), ranks)  # (B, T)
        return hidden * tf.expand_dims(weights, -1), attention_mask

    def get_config(self):
        config = super().get_config()
        config.update(sequence_length=self.sequence_length, relative=self.relative)
        return config
