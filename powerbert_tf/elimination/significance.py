"""Significance of word vectors (PoWER-BERT, supplementary section 1.1) as pure TF functions.

Letters: B batch, H heads, T sequence length (queries and keys).
Written with TFLite builtin ops only (no einsum, no `x[:, None]` on dynamic shapes) so a hard
extract model converts with TFLITE_BUILTINS.
"""

import tensorflow as tf


def _identity_matrix(length, dtype):
    positions = tf.range(length)
    same = tf.equal(tf.expand_dims(positions, 1), tf.expand_dims(positions, 0))
    return tf.cast(same, dtype)


def significance_scores(attention_probs, attention_mask):
    """Attention each word vector receives from the *other* real words.

    `Sig(w) = sum_h sum_{q != w, q real} A[b, h, q, w]`; padded positions score 0.

    Args:
        attention_probs: float (B, H, T, T), softmax probabilities indexed [b, h, query, key].
        attention_mask: (B, T), 1 for real tokens and 0 for padding (any numeric dtype).

    Returns:
        float (B, T) scores, same dtype as `attention_probs`.
    """
    probs = tf.reduce_sum(attention_probs, axis=1)  # (B, T, T): summed over heads
    mask = tf.cast(attention_mask, probs.dtype)
    from_real_queries = tf.squeeze(tf.matmul(tf.expand_dims(mask, 1), probs), axis=1)
    self_attention = tf.reduce_sum(probs * _identity_matrix(tf.shape(probs)[-1], probs.dtype), axis=2)
    return (from_real_queries - mask * self_attention) * mask
