"""`PowerBertClassifier`: encoder + pooled output + dropout + dense head."""

import keras

from powerbert_tf.serialization import register


@register
class PowerBertClassifier(keras.Model):
    """Sequence classifier (or regressor, `num_classes=1`) on a `PowerBertEncoder`.

    Args:
        encoder: a `PowerBertEncoder` in any elimination mode.
        num_classes: output width; 1 for regression (STS-B).
        dropout: applied to the pooled output.

    Call args:
        inputs: dict of int (B, T) `input_ids`, `attention_mask`, `token_type_ids`.

    Returns:
        float (B, num_classes) logits (scores for regression).
    """

    def __init__(self, encoder, num_classes=2, dropout=0.1, **kwargs):
        super().__init__(**kwargs)
        if isinstance(encoder, dict):
            encoder = keras.saving.deserialize_keras_object(encoder)
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.dropout = dropout

        # === Layers ===
        self.encoder = encoder
        self.dropout_layer = keras.layers.Dropout(dropout, dtype=self.dtype_policy)
        self.head = keras.layers.Dense(
            num_classes, name="logits", dtype=self.dtype_policy,
            kernel_initializer=keras.initializers.TruncatedNormal(
                stddev=encoder.bert_config.initializer_range))

    def build(self, input_shape=None):
        if not self.encoder.built:
            self.encoder.build()
        self.head.build((None, self.encoder.bert_config.hidden_size))
        self.built = True

    def call(self, inputs, training=None):
        pooled = self.encoder(inputs, training=training)["pooled_output"]
        return self.head(self.dropout_layer(pooled, training=training))

    def get_config(self):
        config = super().get_config()
        config.update(encoder=keras.saving.serialize_keras_object(self.encoder),
                      num_classes=self.num_classes, dropout=self.dropout)
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def with_elimination(self, **mode):
        """A new classifier with this one's weights and another elimination mode.

        `mode`: `PowerBertEncoder` arguments (`elimination`, `retention`, `sequence_length`,
        `length_aware`). Soft-extract retention weights are not carried over. This is how
        fine-tuned weights enter the search, searched weights enter re-training, and re-trained
        weights become a length-aware model.
        """
        from powerbert_tf.checkpoints.variable_names import copy_encoder_weights
        from powerbert_tf.loading import build_encoder

        encoder = build_encoder(self.encoder.bert_config, **mode)
        copy_encoder_weights(self.encoder, encoder)
        model = PowerBertClassifier(encoder, num_classes=self.num_classes, dropout=self.dropout)
        model.build()
        model.head.set_weights(self.head.get_weights())
        return model

    @classmethod
    def from_pretrained(cls, name_or_path, num_classes=2, dropout=0.1, **encoder_kwargs):
        """Classifier on a pretrained encoder (`load_encoder` arguments), with a new random head."""
        from powerbert_tf.loading import load_encoder

        model = cls(load_encoder(name_or_path, **encoder_kwargs), num_classes=num_classes, dropout=dropout)
        model.build()
        return model
