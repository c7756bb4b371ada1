"""Word + position + token-type embeddings, layer norm and dropout (BERT's input block)."""

import keras
import tensorflow as tf

from powerbert_tf.serialization import register


@register
class BertEmbeddings(keras.layers.Layer):
    """Embeds token ids.

    Call args:
        input_ids: int (B, T).
        token_type_ids: int (B, T).

    Returns:
        float (B, T, hidden_size).
    """

    def __init__(self, vocab_size, hidden_size, max_position_embeddings, type_vocab_size,
                 layer_norm_eps=1e-12, dropout=0.1, initializer_range=0.02, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.max_position_embeddings = max_position_embeddings
        self.type_vocab_size = type_vocab_size
        self.layer_norm_eps = layer_norm_eps
        self.dropout = dropout
        self.initializer_range = initializer_range

        # === Layers ===
        # Sublayers follow this layer's dtype policy (not the global one in force when they are
        # made), so a mixed-precision model reloaded under float32 stays mixed throughout.
        def embedding(size, name):
            return keras.layers.Embedding(
                size, hidden_size, name=name, dtype=self.dtype_policy,
                embeddings_initializer=keras.initializers.TruncatedNormal(stddev=initializer_range))

        self.word_embeddings = embedding(vocab_size, "word_embeddings")
        self.position_embeddings = embedding(max_position_embeddings, "position_embeddings")
        self.token_type_embeddings = embedding(type_vocab_size, "token_type_embeddings")
        self.layer_norm = keras.layers.LayerNormalization(epsilon=layer_norm_eps, name="layer_norm",
                                                          dtype=self.dtype_policy)
        self.dropout_layer = keras.layers.Dropout(dropout, dtype=self.dtype_policy)

    def build(self, input_shape=None):
        self.word_embeddings.build((None, None))
        self.position_embeddings.build((None,))
        self.token_type_embeddings.build((None, None))
        self.layer_norm.build((None, None, self.hidden_size))
        self.built = True

    def call(self, input_ids, token_type_ids, training=None):
        positions = tf.range(tf.shape(input_ids)[1])
        embedded = (self.word_embeddings(input_ids)
                    + tf.expand_dims(self.position_embeddings(positions), 0)
                    + self.token_type_embeddings(token_type_ids))
        return self.dropout_layer(self.layer_norm(embedded), training=training)

    def get_config(self):
        config = super().get_config()
        config.update(vocab_size=self.vocab_size, hidden_size=self.hidden_size,
                      max_position_embeddings=self.max_position_embeddings,
                      type_vocab_size=self.type_vocab_size, layer_norm_eps=self.layer_norm_eps,
                      dropout=self.dropout, initializer_range=self.initializer_range)
        return config
