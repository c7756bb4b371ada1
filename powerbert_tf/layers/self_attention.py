"""Multi-head self-attention that also returns its probabilities (needed for significance)."""

import math

import keras
import tensorflow as tf

from powerbert_tf.serialization import register


@register
class SelfAttention(keras.layers.Layer):
    """BERT self-attention: query/key/value projections, masked softmax, output projection.

    Letters: B batch, T sequence length, D hidden size, H heads, d head size (D / H unless
    `head_size` says otherwise: a layer with pruned heads keeps d and has fewer heads).
    Only TFLite builtin ops (reshape/transpose/matmul/expand_dims; no einsum, no `x[:, None]`).

    Call args:
        hidden: float (B, T, D).
        attention_mask: (B, T), 1 for real tokens, 0 for padding (masked as keys).

    Returns:
        `(output, probs)`: float (B, T, D) after the output projection (before the residual), and
        the float32 softmax probabilities (B, H, T, T) indexed [b, h, query, key], before dropout.

    `context` and `project` are the two halves of `call`, so a caller can drop query rows in
    between (each output row depends only on its own query's row of `probs`).
    """

    def __init__(self, hidden_size, num_heads, dropout=0.1, initializer_range=0.02, head_size=None, **kwargs):
        super().__init__(**kwargs)
        if num_heads < 1:
            raise ValueError(f"num_heads must be >= 1, got {num_heads}")
        if head_size is None and hidden_size % num_heads:
            raise ValueError(f"hidden_size={hidden_size} is not divisible by num_heads={num_heads}")
        self.hidden_size = hidden_size
        self.num_heads = num_heads
        self.dropout = dropout
        self.initializer_range = initializer_range
        self.head_size = head_size or hidden_size // num_heads
        self.inner_size = self.num_heads * self.head_size

        # === Layers ===
        def dense(name, units):
            return keras.layers.Dense(
                units, name=name, dtype=self.dtype_policy,
                kernel_initializer=keras.initializers.TruncatedNormal(stddev=initializer_range))

        self.query = dense("query", self.inner_size)
        self.key = dense("key", self.inner_size)
        self.value = dense("value", self.inner_size)
        self.output_dense = dense("output", hidden_size)
        self.dropout_layer = keras.layers.Dropout(dropout, dtype=self.dtype_policy)

    def build(self, input_shape=None):
        for layer in (self.query, self.key, self.value):
            layer.build((None, None, self.hidden_size))
        self.output_dense.build((None, None, self.inner_size))
        self.built = True

    def _split_heads(self, x, batch, length):
        x = tf.reshape(x, [batch, length, self.num_heads, self.head_size])
        return tf.transpose(x, [0, 2, 1, 3])  # (B, H, T, d)

    def call(self, hidden, attention_mask, training=None, head_mask=None):
        context, probs = self.context(hidden, attention_mask, training=training, head_mask=head_mask)
        return self.project(context), probs

    def context(self, hidden, attention_mask, training=None, query_positions=None, head_mask=None):
        """The attention-weighted values before the output projection.

        Args:
            query_positions: optional int32 (B, Q): compute only these query rows (keys and
                values still come from all T positions). Default: all T.
            head_mask: optional float (H,): each head's context is multiplied by its entry (0
                silences a head; the gradient of the loss with respect to it is Michel et al.'s
                head importance).

        Returns:
            `(context, probs)`: float (B, Q, H * d), one row per query, and the float32
            probabilities (B, H, Q, T) before dropout.
        """
        batch, length = tf.shape(hidden)[0], tf.shape(hidden)[1]
        queries, num_queries = hidden, length
        if query_positions is not None:
            queries = tf.gather(hidden, query_positions, batch_dims=1)
            num_queries = tf.shape(query_positions)[1]
        q = self._split_heads(self.query(queries), batch, num_queries)
        k = self._split_heads(self.key(hidden), batch, length)
        v = self._split_heads(self.value(hidden), batch, length)

        # Softmax in float32 whatever the compute dtype: the probabilities feed the significance
        # scores, whose ranking decides which word vectors survive, and float16/bfloat16 sums of
        # near-uniform probabilities tie or swap ranks (hard extract then keeps other tokens).
        logits = tf.cast(tf.matmul(q, k, transpose_b=True), tf.float32) * (1.0 / math.sqrt(self.head_size))
        key_mask = tf.cast(attention_mask, tf.float32)
        bias = tf.expand_dims(tf.expand_dims((1.0 - key_mask) * -10000.0, 1), 1)  # (B, 1, 1, T)
        probs = tf.nn.softmax(logits + bias, axis=-1)

        dropped = tf.cast(self.dropout_layer(probs, training=training), v.dtype)
        context = tf.matmul(dropped, v)  # (B, H, Q, d)
        if head_mask is not None:
            context = context * tf.reshape(tf.cast(head_mask, context.dtype), [1, self.num_heads, 1, 1])
        context = tf.reshape(tf.transpose(context, [0, 2, 1, 3]), [batch, num_queries, self.inner_size])
        return context, probs

    def project(self, context):
        """Output projection of `context` rows: float (B, Q, H * d) -> (B, Q, D), Q any number of rows."""
        return self.output_dense(context)

    def get_config(self):
        config = super().get_config()
        config.update(hidden_size=self.hidden_size, num_heads=self.num_heads, dropout=self.dropout,
                      initializer_range=self.initializer_range, head_size=self.head_size)
        return config
