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
        float32 (B, num_classes) logits (scores for regression), whatever the dtype policy: the
        loss and the metrics see full-precision outputs under mixed precision.
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
        return self.forward(inputs, training=training)[0]

    def forward(self, inputs, training=None, **encoder_args):
        """`(logits, encoder outputs)`: what `call` computes, with the encoder's outputs kept and
        its call arguments passed on (`return_hidden_states`, `head_mask`, ...)."""
        outputs = self.encoder(inputs, training=training, **encoder_args)
        logits = self.head(self.dropout_layer(outputs["pooled_output"], training=training))
        return keras.ops.cast(logits, "float32"), outputs

    def get_config(self):
        config = super().get_config()
        config.update(encoder=keras.saving.serialize_keras_object(self.encoder),
                      num_classes=self.num_classes, dropout=self.dropout)
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    @classmethod
    def head_arguments(cls, num_classes=None, dropout=0.1):
        """The `__init__` arguments besides the encoder for a head of `num_classes` outputs (None:
        the class's default, 2 here). `with_elimination`, `from_pretrained` and `from_bert_weights`
        build `cls` from them, so a subclass with other head arguments overrides only this."""
        return {"num_classes": 2 if num_classes is None else num_classes, "dropout": dropout}

    def with_elimination(self, **mode):
        """A new model of this class with this one's weights and another elimination mode.

        `mode`: `PowerBertEncoder` arguments (`elimination`, `retention`, `sequence_length`,
        `length_aware`, `relative_retention`, `word_selection`, `selection_seed`). Soft-extract
        retention weights are not carried over. This is how fine-tuned weights enter the search,
        searched weights enter re-training (with PoWER-BERT's significance or a static word
        selection), and re-trained weights become a length-aware model.
        """
        from powerbert_tf.checkpoints.variable_names import copy_encoder_weights
        from powerbert_tf.loading import build_encoder

        encoder = build_encoder(self.encoder.bert_config, attention_heads=self.encoder.attention_heads, **mode)
        copy_encoder_weights(self.encoder, encoder)
        model = type(self)(encoder, **self.head_arguments(self.num_classes, self.dropout))
        model.build()
        model.head.set_weights(self.head.get_weights())
        return model

    @classmethod
    def from_bert_weights(cls, weights, num_classes=None, dropout=0.1, **mode):
        """Classifier from a `BertWeights` (any import format), checked first.

        The head is the weights' head when they have one (then `num_classes`, if given, must
        match it), else a new random head of `num_classes` (default 2, the class's default of
        `head_arguments`). `mode`: the encoder's elimination arguments.

        Raises:
            CheckpointError: a missing, extra or mis-shaped variable (named), or a head of another
                width than `num_classes`.
        """
        from powerbert_tf.checkpoints.errors import CheckpointError
        from powerbert_tf.checkpoints.variable_names import assign_weights
        from powerbert_tf.loading import build_encoder

        weights.check()
        if weights.has_head and num_classes not in (None, weights.num_classes):
            raise CheckpointError(f"{weights.source}: its classifier head has {weights.num_classes} "
                                  f"outputs, the task needs {num_classes}")
        encoder = build_encoder(weights.config, **mode)
        assign_weights(encoder, weights.tensors, source=weights.source)
        model = cls(encoder, **cls.head_arguments(weights.num_classes or num_classes, dropout))
        model.build()
        if weights.has_head:
            model.head.set_weights([weights.head_kernel, weights.head_bias])
        return model

    def bert_weights(self, vocab=None, lower_case=None, label_names=None):
        """This classifier's weights (encoder under Google's names, and the head) as a
        `BertWeights`, what every export format writes."""
        from powerbert_tf.checkpoints.bert_weights import BertWeights
        from powerbert_tf.checkpoints.errors import CheckpointError
        from powerbert_tf.checkpoints.variable_names import google_variable_map

        full = self.encoder.bert_config.num_attention_heads
        if any(h != full for h in self.encoder.attention_heads):
            raise CheckpointError(
                f"this model's heads were pruned (heads per layer {list(self.encoder.attention_heads)} of {full}); "
                f"BERT checkpoint formats have one head count for every layer, so it can only be saved "
                f"as a .keras file or exported as a SavedModel")
        kernel, bias = (w.astype("float32") for w in self.head.get_weights())
        tensors = {n: v.numpy().astype("float32") for n, v in google_variable_map(self.encoder).items()}
        return BertWeights(self.encoder.bert_config, tensors, kernel, bias,
                           vocab=None if vocab is None else tuple(vocab), lower_case=lower_case,
                           label_names=None if label_names is None else tuple(label_names),
                           source=f"classifier {self.name!r}")

    @classmethod
    def from_pretrained(cls, name_or_path, num_classes=None, dropout=0.1, **encoder_kwargs):
        """Classifier on a pretrained encoder (`load_encoder` arguments), with a new random head
        of `num_classes` outputs (default 2, the class's default of `head_arguments`)."""
        from powerbert_tf.loading import load_encoder

        model = cls(load_encoder(name_or_path, **encoder_kwargs), **cls.head_arguments(num_classes, dropout))
        model.build()
        return model
