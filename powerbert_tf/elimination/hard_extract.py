"""Hard extract: keep the `keep` most significant word vectors, drop the rest."""

import keras
import tensorflow as tf

from powerbert_tf.elimination import ranking
from powerbert_tf.serialization import register


@register
class HardExtract(keras.layers.Layer):
    """Keeps `[CLS]` and the `keep - 1` most significant other positions, in word order.

    `k = min(keep, T)` is a Python int whenever T is static (always the case in exported models),
    so output shapes stay static for TFLite and TensorRT.

    Call args:
        hidden: float (B, T, D).
        attention_mask: (B, T), 1 for real tokens.
        scores: float (B, T) significance scores (`significance_scores`), ranked in float32.
        keep: optional override of the layer's `keep` for this call (int or scalar int tensor),
            used by length-aware retention.
        budget: optional int (B,) word vectors each input keeps, each <= keep (relative
            retention); the kept positions beyond an input's budget are masked out.

    Returns:
        `(hidden, attention_mask, positions)`: (B, K, D), (B, K) gathered with the same positions
        (0 outside an input's budget), and the int32 (B, K) kept positions, increasing along axis 1.
    """

    def __init__(self, keep, **kwargs):
        # No autocast: under mixed precision Keras would cast the float32 `scores` to float16 on
        # the way in, and float16 scores tie or swap ranks, so other word vectors would be kept.
        super().__init__(autocast=False, **kwargs)
        if int(keep) != keep or keep < 1:
            raise ValueError(f"HardExtract keep must be a positive int, got {keep!r}")
        self.keep = int(keep)

    def call(self, hidden, attention_mask, scores, keep=None, budget=None):
        keep = self.keep if keep is None else keep
        static_length = hidden.shape[1]
        if static_length is not None and isinstance(keep, int):
            k = min(keep, static_length)
        else:
            k = tf.minimum(keep, tf.shape(hidden)[1])
        keys = ranking.ranking_keys(scores, attention_mask)
        if budget is None:
            positions, within = ranking.kept_positions(keys, k), None
        else:
            positions, within = ranking.kept_positions_within_budget(keys, k, budget)
        kept_mask = tf.gather(attention_mask, positions, batch_dims=1)
        if within is not None:
            kept_mask = tf.where(within, kept_mask, tf.zeros_like(kept_mask))
        return tf.gather(hidden, positions, batch_dims=1), kept_mask, positions

    def get_config(self):
        config = super().get_config()
        config.update(keep=self.keep)
        return config
