"""Distillation objectives as pure functions of logits and hidden states.

Letters: B batch, C classes, D hidden size. Regression tasks (C = 1, STS-B) have no class
distribution to soften: their soft term is the squared error to the teacher's score.
"""

import keras
import tensorflow as tf


def softened_kl(teacher_logits, student_logits, temperature):
    """Hinton et al.'s soft-label loss as DistilBERT uses it: T^2 * KL(p_t || p_s), p = softmax(z / T),
    averaged over the batch (T^2 keeps its gradient on the scale of a hard-label loss).

    Args:
        teacher_logits, student_logits: float (B, C).
    Returns: float scalar.
    """
    t = tf.nn.log_softmax(teacher_logits / temperature, axis=-1)
    s = tf.nn.log_softmax(student_logits / temperature, axis=-1)
    kl = tf.reduce_sum(tf.exp(t) * (t - s), axis=-1)
    return temperature ** 2 * tf.reduce_mean(kl)


def soft_cross_entropy(teacher_logits, student_logits, temperature):
    """BERT-PKD's L_DS: -sum_c p_t(c) log p_s(c) with both softened by T, averaged over the batch.

    Args:
        teacher_logits, student_logits: float (B, C).
    Returns: float scalar.
    """
    p_t = tf.nn.softmax(teacher_logits / temperature, axis=-1)
    log_p_s = tf.nn.log_softmax(student_logits / temperature, axis=-1)
    return -tf.reduce_mean(tf.reduce_sum(p_t * log_p_s, axis=-1))


def patient_loss(student_states, teacher_states):
    """BERT-PKD's L_PT: sum over matched layer pairs of the squared distance between the
    L2-normalised [CLS] states, averaged over the batch.

    Args:
        student_states, teacher_states: equal-length lists of float (B, D) [CLS] vectors.
    Returns: float scalar (0 for no pairs).
    """
    if len(student_states) != len(teacher_states):
        raise ValueError(f"{len(student_states)} student states for {len(teacher_states)} teacher states")
    total = tf.constant(0.0)
    for s, t in zip(student_states, teacher_states):
        diff = tf.math.l2_normalize(s, axis=-1) - tf.math.l2_normalize(t, axis=-1)
        total += tf.reduce_mean(tf.reduce_sum(tf.square(diff), axis=-1))
    return total


def hard_loss(labels, student_logits, is_regression):
    """Cross-entropy with the labels (int (B,)), or squared error for regression (labels (B, 1))."""
    if is_regression:
        return tf.reduce_mean(tf.square(tf.cast(labels, student_logits.dtype) - student_logits))
    return tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(labels, student_logits, from_logits=True))


def soft_loss(kind, teacher_logits, student_logits, temperature, is_regression):
    """The soft term of `kind` ("kl": DistilBERT, "cross_entropy": BERT-PKD); regression: squared
    error to the teacher's scores whatever the kind."""
    if is_regression:
        return tf.reduce_mean(tf.square(teacher_logits - student_logits))
    if kind == "kl":
        return softened_kl(teacher_logits, student_logits, temperature)
    if kind == "cross_entropy":
        return soft_cross_entropy(teacher_logits, student_logits, temperature)
    raise ValueError(f"soft loss kind must be 'kl' or 'cross_entropy', got {kind!r}")
