"""Predictions of a classifier with one word vector eliminated at one block (supplementary 1.1).

For block j (1-based) and rank k: the modified model eliminates only the word with the k-th
highest significance at block j, nothing at other blocks, and predicts `Y_k`; `X` is the
unmodified prediction. The word is eliminated where PoWER-BERT eliminates (METHOD.md, "Where
elimination happens"): after block j's self-attention sub-block, before its feed-forward
sub-block. So it is still a key and value of block j's attention (its significance comes from
there), and from then on it is no key or value of the blocks above and not in the output.

Choices the paper leaves open:
- [CLS] is never eliminated, as the encoder always keeps it (`powerbert_tf.elimination.ranking`):
  rank k counts the other real words, so k = 1 is the most significant word after [CLS], with
  the encoder's tie rule. The classifier reads [CLS]'s vector; without it there is no output.
- An input with fewer than k words besides [CLS] has no k-th word: it counts as unchanged
  (`Y_k = X`). This is what the paper's setting implies: at N = 128 SST-2 sentences are mostly
  padding, and the reference model ranks padding last and masks it anyway, so "eliminating"
  the k-th word of a short input changes nothing.

How it is computed: the feed-forward sub-block works on each position alone, so block j's
output at the positions that stay is the same whichever word goes; eliminating a word at block
j is therefore the unmodified blocks 1..j followed by blocks j+1..L in which that position is
masked out as a key (it is then also absent from the output, which reads [CLS] only). Blocks
1..j run once per batch; the ranks are batched by tiling block j's output over them.

Letters: B batch, T sequence length, D hidden size, K ranks, L blocks.
"""

import numpy as np
import tensorflow as tf

from powerbert_tf.elimination.ranking import ranking_keys, retention_ranks

# Rows (input x rank) of one pass through the upper blocks: bounds the memory of the tiling.
MAX_ROWS = 1024


def check_classifier(model):
    """Raise ValueError unless `model` is a classifier (>= 2 classes) without elimination."""
    if model.encoder.elimination != "none":
        raise ValueError(f"the analysis needs a model without elimination (a fine-tuned model), "
                         f"got elimination={model.encoder.elimination!r}")
    if model.num_classes < 2:
        raise ValueError("mutual information needs class labels; this model is a regressor")


def check_block(model, block):
    """Raise ValueError unless `block` is a 1-based block of `model`'s encoder."""
    num_blocks = len(model.encoder.encoder_layers)
    if not 1 <= block <= num_blocks:
        raise ValueError(f"block {block} is not in 1..{num_blocks}")


def run_through_block(encoder, features, block):
    """The unmodified encoder up to and including `block` (1-based).

    Args:
        features: dict of int (B, T) `input_ids`, `attention_mask`, `token_type_ids`.

    Returns:
        `(hidden, mask, significance)`: float (B, T, D) output of `block`, int32 (B, T) mask and
        float32 (B, T) significance scores of `block` (the encoder's `significance_scores`).
    """
    mask = tf.cast(features["attention_mask"], tf.int32)
    hidden = encoder.embeddings(tf.cast(features["input_ids"], tf.int32),
                                tf.cast(features["token_type_ids"], tf.int32), training=False)
    for layer in encoder.encoder_layers[:block]:
        out = layer(hidden, mask, training=False, return_scores=True)
        hidden = out["hidden"]
    return hidden, mask, out["significance"]


def removal_masks(significance, mask, ranks):
    """Attention masks with the word of each rank removed.

    Args:
        significance: float (B, T) scores of the block.
        mask: int (B, T), 1 for real tokens.
        ranks: int (K,) ranks >= 1 (1 = the most significant word after [CLS]).

    Returns:
        int32 (K, B, T): `mask` with the position of rank `ranks[i]` set to 0 (unchanged where
        the input has no word of that rank).
    """
    rank_of_position = retention_ranks(ranking_keys(significance, mask))  # [CLS] has rank 0
    ranks = tf.reshape(tf.cast(ranks, tf.int32), [-1, 1, 1])
    kept = tf.not_equal(tf.expand_dims(rank_of_position, 0), ranks)
    return tf.cast(kept, tf.int32) * tf.expand_dims(tf.cast(mask, tf.int32), 0)


def logits_above_block(model, hidden, masks, block):
    """Logits of blocks `block+1..L`, the pooler and the head, once per mask.

    Args:
        hidden: float (B, T, D) output of `block`.
        masks: int (K, B, T) attention masks of the blocks above.

    Returns:
        float (K, B, C) logits.
    """
    num_masks, batch = tf.shape(masks)[0], tf.shape(masks)[1]
    tiled = tf.tile(hidden, [num_masks, 1, 1])  # (K * B, T, D), mask-major like the reshape below
    tiled_masks = tf.reshape(masks, [num_masks * batch, -1])
    for layer in model.encoder.encoder_layers[block:]:
        tiled = layer(tiled, tiled_masks, training=False)["hidden"]
    logits = model.head(model.encoder.pooler(tiled[:, 0, :]))
    return tf.reshape(logits, [num_masks, batch, -1])


def logits_without_ranked_words(model, features, block, ranks, max_rows=MAX_ROWS):
    """Logits of the unmodified model and of the model without the word of each rank.

    Args:
        features: dict of int (B, T) inputs (NumPy or tensors).
        block: 1-based block at which the word is eliminated.
        ranks: ints (K,) >= 1.
        max_rows: at most this many (input, mask) rows per pass through the upper blocks.

    Returns:
        `(logits, words)`: float NumPy (1 + K, B, C) logits, row 0 unmodified and row i without
        the word of rank `ranks[i-1]` (unmodified where the input has no such word), and int
        (B,) the real words besides [CLS] of each input.
    """
    hidden, mask, significance = run_through_block(model.encoder, features, block)
    masks = tf.concat([tf.expand_dims(mask, 0), removal_masks(significance, mask, ranks)], axis=0)
    per_pass = max(1, max_rows // int(mask.shape[0]))
    logits = [logits_above_block(model, hidden, masks[i:i + per_pass], block).numpy()
              for i in range(0, int(masks.shape[0]), per_pass)]
    return np.concatenate(logits), np.asarray(tf.reduce_sum(mask, axis=1)) - 1


def predictions_without_ranked_words(model, features, block, max_rank, max_rows=MAX_ROWS):
    """`X` and `Y_k` for k = 1..max_rank on one batch.

    Args:
        features: dict of int (B, T) inputs; trimming the padding beyond the batch's longest
            input saves time and changes nothing.
        block: 1-based block at which the word is eliminated.
        max_rank: the largest k.
        max_rows: see `logits_without_ranked_words`.

    Returns:
        `(x, y)`: int64 NumPy (B,) unmodified labels and (max_rank, B) labels `Y_k` (row k-1),
        equal to `x` where the input has fewer than k words besides [CLS].
    """
    longest = int(np.max(np.sum(features["attention_mask"], axis=1))) - 1
    present = min(max_rank, longest)  # ranks beyond it leave every input unchanged
    logits, words = logits_without_ranked_words(model, features, block, np.arange(1, present + 1), max_rows)
    # Row 0 is the unmodified model in the same tiled computation as the Y_k.
    labels = np.argmax(logits, axis=-1)
    x = labels[0]
    y = np.tile(x, (max_rank, 1))
    has_word = np.arange(1, present + 1)[:, None] <= words[None, :]
    y[:present] = np.where(has_word, labels[1:], x)
    return x, y
