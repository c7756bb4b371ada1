"""`PowerBertEncoder`: a BERT encoder of any size with an elimination mode (none / soft / hard)."""

import keras
import tensorflow as tf

from powerbert_tf.bert_config import BertConfig
from powerbert_tf.layers.bert_embeddings import BertEmbeddings
from powerbert_tf.layers.encoder_layer import ELIMINATION_MODES, EncoderLayer
from powerbert_tf.elimination.retention import RetentionConfig, check_num_layers
from powerbert_tf.elimination.word_selection import WORD_SELECTIONS
from powerbert_tf.serialization import register

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")


@register
class PowerBertEncoder(keras.Model):
    """BERT encoder (embeddings, L transformer layers, pooler) with progressive elimination.

    One class for all three PoWER-BERT phases, chosen by `elimination`:
    - "none": plain BERT (fine-tuning, baseline);
    - "soft": a `SoftExtract` in every layer (configuration search), needs `sequence_length`;
    - "hard": a `HardExtract` in layer j keeping `retention[j]` word vectors (re-training,
      inference), needs `retention`.

    Args:
        vocab_size ... layer_norm_eps: the `BertConfig` fields (Google's names).
        elimination: "none", "soft" or "hard".
        retention: list of ints (one per layer) or a `RetentionConfig`; hard mode only.
        sequence_length: N. Soft mode: the size of each retention vector. Hard mode: the input
            length the counts are for (length-aware scaling and the FLOP ratio use it); required
            with a list, optional with a `RetentionConfig` (then it must equal its N).
        length_aware: hard mode only: for inputs of length T keep `ceil(l_j * T / N)` word vectors
            in layer j instead of `l_j` (`RetentionConfig.scaled_lengths`), so batches padded to
            their longest example are pruned in proportion. Identical to plain hard mode at T = N.
        relative_retention: length-relative retention (`RetentionConfig.relative`). Soft mode:
            the retention weights cover fractions of each input. Hard mode: input i with n_i real
            tokens keeps `ceil(l_j * n_i / N)` word vectors in layer j, whatever the batch's
            padding, so a batch gives each input's single-input answer. With a `RetentionConfig`
            it must agree with the config's `relative`.
        word_selection: hard mode with fixed counts only: which `l_j` word vectors layer j keeps.
            "significance" (PoWER-BERT, the default), "head" (Head-WS: the first `l_j` real tokens
            still present) or "random" (Rand-WS: a seeded random `l_j` of them, the same for a
            given input in every batch); `HardExtract` and `elimination/word_selection.py`.
        selection_seed: "random" only: layer j's priorities are drawn from `(selection_seed, j)`.
        attention_heads: optional list of L head counts, 1..num_attention_heads each: layer j has
            that many heads of size hidden_size / num_attention_heads (a model whose heads were
            pruned, `powerbert_tf.compression.prune_heads`). Default: num_attention_heads in
            every layer.

    Call args:
        inputs: dict of int (B, T) tensors `input_ids`, `attention_mask` (default all ones) and
            `token_type_ids` (default zeros).
        return_details: also return per-layer lists `attention_probs` (B, H, T_j, T_j),
            `significance` (B, T_j) and `attention_masks` (B, T_j), T_j the length entering layer j.
        return_hidden_states: also return `hidden_states`, the list of the L layers' outputs
            (B, T_{j+1}, D) (what distillation matches between teacher and student).
        head_mask: optional list of L float (H_j,) vectors multiplied into each layer's heads
            (`SelfAttention.context`).

    Returns:
        dict with `sequence_output` (B, T_L, D), `pooled_output` (B, D) and `attention_mask`
        (B, T_L) of the positions still present after the last layer (T_L = T unless hard).
    """

    def __init__(self, vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                 intermediate_size=3072, hidden_act="gelu", hidden_dropout_prob=0.1,
                 attention_probs_dropout_prob=0.1, max_position_embeddings=512, type_vocab_size=2,
                 initializer_range=0.02, layer_norm_eps=1e-12, elimination="none", retention=None,
                 sequence_length=None, length_aware=False, relative_retention=False,
                 word_selection="significance", selection_seed=0, attention_heads=None, **kwargs):
        super().__init__(**kwargs)
        self.bert_config = BertConfig(
            vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=num_hidden_layers,
            num_attention_heads=num_attention_heads, intermediate_size=intermediate_size,
            hidden_act=hidden_act, hidden_dropout_prob=hidden_dropout_prob,
            attention_probs_dropout_prob=attention_probs_dropout_prob,
            max_position_embeddings=max_position_embeddings, type_vocab_size=type_vocab_size,
            initializer_range=initializer_range, layer_norm_eps=layer_norm_eps)
        self.elimination, self.retention, self.sequence_length = _check_elimination(
            elimination, retention, sequence_length, num_hidden_layers, relative_retention)
        if length_aware and self.elimination != "hard":
            raise ValueError(f"length_aware needs elimination='hard', not {self.elimination!r}")
        if relative_retention and self.elimination == "none":
            raise ValueError("relative_retention needs elimination='soft' or 'hard'")
        self.length_aware = bool(length_aware)
        self.relative_retention = bool(relative_retention) or bool(self.retention and self.retention.relative)
        if self.length_aware and self.relative_retention:
            raise ValueError("length_aware (per batch) and relative_retention (per input) are two "
                             "ways of scaling the counts; choose one")
        _check_word_selection(word_selection, self.elimination, self.length_aware, self.relative_retention)
        self.word_selection = word_selection
        self.selection_seed = selection_seed
        self.attention_heads = _check_attention_heads(attention_heads, num_hidden_layers, num_attention_heads)

        # === Layers === (in this model's dtype policy, see `BertEmbeddings`)
        c, policy = self.bert_config, self.dtype_policy
        self.embeddings = BertEmbeddings(
            c.vocab_size, c.hidden_size, c.max_position_embeddings, c.type_vocab_size,
            layer_norm_eps=c.layer_norm_eps, dropout=c.hidden_dropout_prob,
            initializer_range=c.initializer_range, name="embeddings", dtype=policy)
        self.encoder_layers = [
            EncoderLayer(
                c.hidden_size, self.attention_heads[j], c.intermediate_size, activation=c.keras_activation,
                dropout=c.hidden_dropout_prob, attention_dropout=c.attention_probs_dropout_prob,
                layer_norm_eps=c.layer_norm_eps, initializer_range=c.initializer_range,
                elimination=self.elimination,
                keep=self.retention.lengths[j] if self.elimination == "hard" else None,
                sequence_length=self.sequence_length if self.elimination == "soft" else None,
                relative=self.relative_retention and self.elimination == "soft",
                word_selection=word_selection, selection_seed=selection_seed, layer_index=j,
                head_size=c.hidden_size // c.num_attention_heads, name=f"layer_{j}", dtype=policy)
            for j in range(c.num_hidden_layers)]
        self.pooler = keras.layers.Dense(
            c.hidden_size, activation="tanh", name="pooler", dtype=policy,
            kernel_initializer=keras.initializers.TruncatedNormal(stddev=c.initializer_range))

    def build(self, input_shape=None):
        self.embeddings.build()
        for layer in self.encoder_layers:
            layer.build()
        self.pooler.build((None, self.bert_config.hidden_size))
        self.built = True

    def call(self, inputs, training=None, return_details=False, return_hidden_states=False, head_mask=None):
        input_ids = _int_input(inputs, "input_ids")
        mask = _int_input(inputs, "attention_mask", default=tf.ones_like(input_ids))
        token_type_ids = _int_input(inputs, "token_type_ids", default=tf.zeros_like(input_ids))

        hidden = self.embeddings(input_ids, token_type_ids, training=training)
        details = {"attention_probs": [], "significance": [], "attention_masks": []}
        keeps = budgets = [None] * len(self.encoder_layers)
        if self.elimination == "hard" and (self.length_aware or self.relative_retention):
            # A batch padded to T holds inputs of at most T real tokens, so ceil(l_j * T / N)
            # slots fit the largest per-input budget (and equal it on length-sorted batches).
            input_length = input_ids.shape[1] or tf.shape(input_ids)[1]
            keeps = self.retention.scaled_lengths(input_length)
            if self.relative_retention:
                budgets = self.retention.per_input_counts(tf.reduce_sum(mask, axis=1))
        head_masks = [None] * len(self.encoder_layers) if head_mask is None else list(head_mask)
        if len(head_masks) != len(self.encoder_layers):
            raise ValueError(f"head_mask has {len(head_masks)} entries for {len(self.encoder_layers)} layers")
        hidden_states = []
        for layer, keep, budget, layer_head_mask in zip(self.encoder_layers, keeps, budgets, head_masks):
            details["attention_masks"].append(mask)
            out = layer(hidden, mask, training=training, return_scores=return_details, keep=keep,
                        budget=budget, head_mask=layer_head_mask)
            hidden, mask = out["hidden"], out["attention_mask"]
            hidden_states.append(hidden)
            if return_details:
                details["attention_probs"].append(out["attention_probs"])
                details["significance"].append(out["significance"])
        outputs = {"sequence_output": hidden,
                   "pooled_output": self.pooler(hidden[:, 0, :]),
                   "attention_mask": mask}
        if return_details:
            outputs.update(details)
        if return_hidden_states:
            outputs["hidden_states"] = hidden_states
        return outputs

    @property
    def soft_extract_layers(self):
        return [layer.extract for layer in self.encoder_layers if self.elimination == "soft"]

    def retention_masses(self):
        """Soft mode: list of scalar tensors `mass(r_j)`, j = 1..L."""
        if self.elimination != "soft":
            raise ValueError(f"retention masses exist in soft mode only; this encoder is {self.elimination!r}")
        return [extract.mass for extract in self.soft_extract_layers]

    def get_config(self):
        config = super().get_config()
        config.update(self.bert_config.to_dict())
        config.update(elimination=self.elimination,
                      retention=list(self.retention.lengths) if self.retention else None,
                      sequence_length=self.sequence_length, length_aware=self.length_aware,
                      relative_retention=self.relative_retention, word_selection=self.word_selection,
                      selection_seed=self.selection_seed, attention_heads=list(self.attention_heads))
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _check_elimination(elimination, retention, sequence_length, num_layers, relative):
    """Validate the mode's arguments; returns (elimination, RetentionConfig or None, N or None)."""
    if elimination not in ELIMINATION_MODES:
        raise ValueError(f"elimination must be one of {ELIMINATION_MODES}, got {elimination!r}")
    if elimination == "hard":
        if retention is None:
            raise ValueError("elimination='hard' needs retention (word vectors kept per layer)")
        retention = _hard_retention(retention, sequence_length, num_layers, relative)
        return elimination, retention, retention.sequence_length
    if retention is not None:
        raise ValueError(f"retention is only used with elimination='hard', not {elimination!r}")
    if elimination == "soft" and (sequence_length is None or sequence_length < 1):
        raise ValueError("elimination='soft' needs sequence_length (N, the fixed input length)")
    return elimination, None, sequence_length


def _check_word_selection(word_selection, elimination, length_aware, relative_retention):
    """The static word selections are baselines of the paper's fixed-count hard mode only."""
    if word_selection not in WORD_SELECTIONS:
        raise ValueError(f"word_selection must be one of {WORD_SELECTIONS}, got {word_selection!r}")
    if word_selection == "significance":
        return
    scaled = [name for name, on in (("length_aware", length_aware), ("relative_retention", relative_retention))
              if on]
    if elimination != "hard" or scaled:
        raise ValueError(f"word_selection={word_selection!r} is for elimination='hard' with fixed counts; "
                         f"got elimination={elimination!r}" + "".join(f", {name}=True" for name in scaled))


def _check_attention_heads(attention_heads, num_layers, num_heads):
    """Per-layer head counts (default all heads everywhere); a layer keeps at least one head."""
    if attention_heads is None:
        return (num_heads,) * num_layers
    heads = tuple(int(h) for h in attention_heads)
    if len(heads) != num_layers:
        raise ValueError(f"attention_heads has {len(heads)} entries for {num_layers} layers: {list(heads)}")
    if any(h < 1 or h > num_heads for h in heads):
        raise ValueError(f"attention_heads must each be in 1..{num_heads} (num_attention_heads), got {list(heads)}")
    return heads


def _hard_retention(retention, sequence_length, num_layers, relative):
    """The `RetentionConfig` of hard mode. N is never guessed: `max(l_j)` used to stand in for it,
    which is wrong whenever the first layer already drops word vectors (length-aware scaling and
    the FLOP ratio then use the wrong N)."""
    if isinstance(retention, RetentionConfig):
        if sequence_length is not None and sequence_length != retention.sequence_length:
            raise ValueError(
                f"sequence_length={sequence_length} disagrees with the RetentionConfig's "
                f"N={retention.sequence_length}; pass only one of them")
        if relative and not retention.relative:
            raise ValueError("relative_retention=True disagrees with a RetentionConfig whose "
                             "relative is False; pass RetentionConfig(..., relative=True)")
        retention.check_num_layers(num_layers)
        return retention
    lengths = tuple(retention)
    check_num_layers(lengths, num_layers)  # the more basic mistake is reported first
    if sequence_length is None:
        raise ValueError(
            f"retention={list(lengths)} needs N, the input length these counts are for: pass "
            f"sequence_length=N, or retention=RetentionConfig({lengths}, N)")
    return RetentionConfig(lengths, sequence_length, bool(relative))


def _int_input(inputs, name, default=None):
    if name not in inputs:
        if default is None:
            raise KeyError(f"encoder inputs need {name!r}; got keys {sorted(inputs)}")
        return default
    return tf.cast(inputs[name], tf.int32)
