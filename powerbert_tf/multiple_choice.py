"""`PowerBertMultipleChoice`: one score per option (RACE), on `PowerBertClassifier`'s head."""

import tensorflow as tf

from powerbert_tf.classifier import PowerBertClassifier
from powerbert_tf.encoder import INPUT_NAMES
from powerbert_tf.serialization import register


@register
class PowerBertMultipleChoice(PowerBertClassifier):
    """Multiple-choice model: each option is its own sequence, scored by pooled output + dropout +
    Dense(1); the softmax over options is the loss's (`SparseCategoricalCrossentropy(from_logits=True)`
    with int (B,) labels).

    The encoder sees the B * C option sequences as one batch, so any elimination mode applies to
    each option sequence on its own: hard extract keeps each option's most significant word vectors.

    Args:
        encoder: a `PowerBertEncoder` in any elimination mode.
        dropout: applied to the pooled output.
        num_classes: keyword, accepted only as 1, since `PowerBertClassifier.get_config` stores it.

    Call args:
        inputs: dict of int (B, C, T) `input_ids`, `attention_mask`, `token_type_ids`: C options per
            example, each `[CLS] article [SEP] question + option [SEP]`. C and T may change between
            calls.

    Returns:
        float32 (B, C) logits.
    """

    def __init__(self, encoder, dropout=0.1, **kwargs):
        _check_num_classes(kwargs.pop("num_classes", None))
        super().__init__(encoder, num_classes=1, dropout=dropout, **kwargs)

    @classmethod
    def head_arguments(cls, num_classes=None, dropout=0.1):
        _check_num_classes(num_classes)
        return {"dropout": dropout}

    def forward(self, inputs, training=None, **encoder_args):
        """`(logits (B, C), encoder outputs)`; the encoder's outputs are those of the B * C option
        sequences, option c of example b in row `b * C + c`."""
        shape = tf.shape(inputs["input_ids"])
        flat = {name: tf.reshape(inputs[name], [-1, shape[2]]) for name in INPUT_NAMES if name in inputs}
        logits, outputs = super().forward(flat, training=training, **encoder_args)
        return tf.reshape(logits, shape[:2]), outputs

    def option_scorer(self):
        """This model as a `PowerBertClassifier` with one output that scores (B * C, T) option
        sequences themselves: what a benchmark or converter of single sequences runs. The encoder
        is shared, the head's weights copied."""
        scorer = PowerBertClassifier(self.encoder, num_classes=1, dropout=self.dropout)
        scorer.build()
        scorer.head.set_weights(self.head.get_weights())
        return scorer


def _check_num_classes(num_classes):
    if num_classes not in (None, 1):
        raise ValueError(f"PowerBertMultipleChoice scores each option with one output: num_classes "
                         f"must be 1, got {num_classes}")
