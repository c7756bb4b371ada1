"""Hard extract: keep `keep` word vectors (the most significant, or by a static rule), drop the rest."""

import keras
import tensorflow as tf

from powerbert_tf.elimination import ranking
from powerbert_tf.elimination.word_selection import check_word_selection, selection_scores
from powerbert_tf.serialization import register


@register
class HardExtract(keras.layers.Layer):
    """Keeps `[CLS]` and `keep - 1` other positions (the most significant by default), in word order.

    `k = min(keep, T)` is a Python int whenever T is static (always the case in exported models),
    so output shapes stay static for TFLite and TensorRT.

    Args:
        keep: word vectors to keep.
        word_selection: which ones (`elimination/word_selection.py`): "significance" (PoWER-BERT,
            the default), "head" (the first real tokens) or "random" (seeded priorities per
            real-token index); [CLS] first and padding last in every rule.
        seed, layer_index: "random" only: the priority table is drawn from `(seed, layer_index)`.

    Call args:
        hidden: float (B, T, D).
        attention_mask: (B, T), 1 for real tokens.
        scores: float (B, T) significance scores (`significance_scores`), ranked in float32;
            unused by the static rules.
        keep: optional override of the layer's `keep` for this call (int or scalar int tensor),
            used by length-aware retention.
        budget: optional int (B,) word vectors each input keeps, each <= keep (relative
            retention); the kept positions beyond an input's budget are masked out.

    Returns:
        `(hidden, attention_mask, positions)`: (B, K, D), (B, K) gathered with the same positions
        (0 outside an input's budget), and the int32 (B, K) kept positions, increasing along axis 1.
    """

    def __init__(self, keep, word_selection="significance", seed=0, layer_index=0, **kwargs):
        # No autocast: under mixed precision Keras would cast the float32 `scores` to float16 on
        # the way in, and float16 scores tie or swap ranks, so other word vectors would be kept.
        super().__init__(autocast=False, **kwargs)
        if int(keep) != keep or keep < 1:
            raise ValueError(f"HardExtract keep must be a positive int, got {keep!r}")
        check_word_selection(word_selection, seed)
        self.keep = int(keep)
        self.word_selection = word_selection
        self.seed = int(seed)
        self.layer_index = int(layer_index)

    def call(self, hidden, attention_mask, scores, keep=None, budget=None):
        keep = self.keep if keep is None else keep
        static_length = hidden.shape[1]
        if static_length is not None and isinstance(keep, int):
            k = min(keep, static_length)
        else:
            k = tf.minimum(keep, tf.shape(hidden)[1])
        scores = selection_scores(self.word_selection, scores, attention_mask, self.seed, self.layer_index)
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
        config.update(keep=self.keep, word_selection=self.word_selection, seed=self.seed,
                      layer_index=self.layer_index)
        return config
