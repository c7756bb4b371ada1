"""One transformer encoder layer with an optional word-vector elimination step."""

import keras
import tensorflow as tf

from powerbert_tf.elimination import WORD_SELECTIONS, HardExtract, SoftExtract, significance_scores
from powerbert_tf.layers.self_attention import SelfAttention
from powerbert_tf.serialization import register

ELIMINATION_MODES = ("none", "soft", "hard")


def _activation(name):
    if name == "gelu":  # BERT's exact (erf) GELU; Keras' default string "gelu" is the same.
        return keras.activations.gelu
    if name == "gelu_approximate":
        return lambda x: keras.activations.gelu(x, approximate=True)
    return keras.activations.get(name)


@register
class EncoderLayer(keras.layers.Layer):
    """Self-attention sub-block, then elimination, then the feed-forward sub-block.

    Elimination sits between the two sub-blocks, as in PoWER-BERT: the attention of this layer
    decides which word vectors the feed-forward network (and every later layer) still sees.
    Hard mode selects the rows earlier, right after the attention probabilities, which gives the
    same vectors (everything up to the norm is per position) while skipping the output
    projection of dropped rows; a layer keeping one vector keeps [CLS] whatever the scores, so
    it computes only [CLS]'s query.

    Args:
        elimination: "none", "soft" (`SoftExtract` over `sequence_length` ranks) or "hard"
            (`HardExtract` keeping `keep` word vectors).
        relative: soft mode: retention weights over fractions of each input (`SoftExtract`).
        word_selection: hard mode: which word vectors to keep, "significance" (PoWER-BERT),
            "head" or "random" (`HardExtract`); other modes accept only "significance".
        selection_seed, layer_index: "random" only: the layer's priority table is drawn from
            `(selection_seed, layer_index)`.
        head_size: size of each attention head (default hidden_size / num_heads); a layer whose
            heads were pruned keeps its head size with fewer heads.

    Call args:
        hidden: float (B, T, D).
        attention_mask: (B, T), 1 for real tokens.
        return_scores: also return `attention_probs` (B, H, T, T) and `significance` (B, T), both
            float32 whatever the dtype policy (they decide the ranking).
        keep: hard mode: override `keep` for this call (length-aware retention).
        budget: hard mode: int (B,) word vectors each input keeps, each <= keep (relative
            retention); the others are masked out.
        head_mask: optional float (H,) multiplied into each head's context (`SelfAttention`).

    Returns:
        dict with `hidden` (B, T', D) and `attention_mask` (B, T'), T' = min(keep, T) in hard
        mode, else T; plus the scores when asked for.
    """

    def __init__(self, hidden_size, num_heads, intermediate_size, activation="gelu", dropout=0.1,
                 attention_dropout=0.1, layer_norm_eps=1e-12, initializer_range=0.02,
                 elimination="none", keep=None, sequence_length=None, relative=False,
                 word_selection="significance", selection_seed=0, layer_index=0, head_size=None, **kwargs):
        super().__init__(**kwargs)
        if elimination not in ELIMINATION_MODES:
            raise ValueError(f"elimination must be one of {ELIMINATION_MODES}, got {elimination!r}")
        if elimination == "hard" and keep is None:
            raise ValueError("elimination='hard' needs keep (word vectors to keep)")
        if elimination == "soft" and sequence_length is None:
            raise ValueError("elimination='soft' needs sequence_length (N, the retention size)")
        if word_selection not in WORD_SELECTIONS:
            raise ValueError(f"word_selection must be one of {WORD_SELECTIONS}, got {word_selection!r}")
        if word_selection != "significance" and elimination != "hard":
            raise ValueError(f"word_selection={word_selection!r} chooses what hard extract keeps; it "
                             f"needs elimination='hard', not {elimination!r}")
        self.hidden_size = hidden_size
        self.num_heads = num_heads
        self.intermediate_size = intermediate_size
        self.activation = activation
        self.dropout = dropout
        self.attention_dropout = attention_dropout
        self.layer_norm_eps = layer_norm_eps
        self.initializer_range = initializer_range
        self.elimination = elimination
        self.keep = keep
        self.sequence_length = sequence_length
        self.relative = bool(relative)
        self.word_selection = word_selection
        self.selection_seed = selection_seed
        self.layer_index = layer_index
        self.head_size = head_size

        # === Layers === (in this layer's dtype policy, see `BertEmbeddings`)
        def init():
            return keras.initializers.TruncatedNormal(stddev=initializer_range)

        policy = self.dtype_policy
        self.attention = SelfAttention(hidden_size, num_heads, dropout=attention_dropout,
                                       initializer_range=initializer_range, head_size=head_size,
                                       name="attention", dtype=policy)
        self.attention_dropout_layer = keras.layers.Dropout(dropout, dtype=policy)
        self.attention_norm = keras.layers.LayerNormalization(epsilon=layer_norm_eps, name="attention_norm",
                                                              dtype=policy)
        if elimination == "hard":
            self.extract = HardExtract(keep, word_selection=word_selection, seed=selection_seed,
                                       layer_index=layer_index, name="hard_extract", dtype=policy)
        elif elimination == "soft":
            self.extract = SoftExtract(sequence_length, relative=relative, name="soft_extract", dtype=policy)
        else:
            self.extract = None
        self.intermediate = keras.layers.Dense(intermediate_size, activation=_activation(activation),
                                               kernel_initializer=init(), name="intermediate", dtype=policy)
        self.output_dense = keras.layers.Dense(hidden_size, kernel_initializer=init(), name="output",
                                               dtype=policy)
        self.output_dropout_layer = keras.layers.Dropout(dropout, dtype=policy)
        self.output_norm = keras.layers.LayerNormalization(epsilon=layer_norm_eps, name="output_norm",
                                                           dtype=policy)

    def build(self, input_shape=None):
        shape = (None, None, self.hidden_size)
        self.attention.build(shape)
        self.attention_norm.build(shape)
        if self.extract is not None:
            self.extract.build(shape)
        self.intermediate.build(shape)
        self.output_dense.build((None, None, self.intermediate_size))
        self.output_norm.build(shape)
        self.built = True

    def call(self, hidden, attention_mask, training=None, return_scores=False, keep=None, budget=None,
             head_mask=None):
        if self._keeps_one(hidden, keep) and not return_scores:
            return self._call_keeping_cls(hidden, attention_mask, training, head_mask)
        context, probs = self.attention.context(hidden, attention_mask, training=training, head_mask=head_mask)
        outputs = {}
        if self.extract is not None or return_scores:
            scores = significance_scores(probs, attention_mask)
            if return_scores:
                outputs.update(attention_probs=probs, significance=scores)
        if self.elimination == "hard":
            extract_args = {"keep": keep} if keep is not None else {}
            hidden, attention_mask, positions = self.extract(hidden, attention_mask, scores, budget=budget,
                                                             **extract_args)
            context = tf.gather(context, positions, batch_dims=1)
        hidden = self._attention_output(hidden, context, training)
        if self.elimination == "soft":
            hidden, attention_mask = self.extract(hidden, attention_mask, scores)
        outputs.update(hidden=self._feed_forward(hidden, training), attention_mask=attention_mask)
        return outputs

    def _keeps_one(self, hidden, keep):
        keep = self.keep if keep is None else keep
        return self.elimination == "hard" and isinstance(keep, int) and (keep == 1 or hidden.shape[1] == 1)

    def _call_keeping_cls(self, hidden, attention_mask, training, head_mask):
        # [CLS] ranks first whatever the scores, in every word selection, so none are needed and
        # of all the queries only [CLS]'s (keys and values still come from every position).
        unscored = tf.zeros(tf.shape(attention_mask), tf.float32)
        kept, kept_mask, positions = self.extract(hidden, attention_mask, unscored, keep=1)
        context, _ = self.attention.context(hidden, attention_mask, training=training, query_positions=positions,
                                            head_mask=head_mask)
        hidden = self._attention_output(kept, context, training)
        return {"hidden": self._feed_forward(hidden, training), "attention_mask": kept_mask}

    def _attention_output(self, hidden, context, training):
        attended = self.attention.project(context)
        return self.attention_norm(hidden + self.attention_dropout_layer(attended, training=training))

    def _feed_forward(self, hidden, training):
        ffn = self.output_dense(self.intermediate(hidden))
        return self.output_norm(hidden + self.output_dropout_layer(ffn, training=training))

    def get_config(self):
        config = super().get_config()
        config.update(hidden_size=self.hidden_size, num_heads=self.num_heads,
                      intermediate_size=self.intermediate_size, activation=self.activation,
                      dropout=self.dropout, attention_dropout=self.attention_dropout,
                      layer_norm_eps=self.layer_norm_eps, initializer_range=self.initializer_range,
                      elimination=self.elimination, keep=self.keep,
                      sequence_length=self.sequence_length, relative=self.relative,
                      word_selection=self.word_selection, selection_seed=self.selection_seed,
                      layer_index=self.layer_index, head_size=self.head_size)
        return config
