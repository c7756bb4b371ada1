"""`tf.data` pipelines: tensorflow-text tokenization inside the pipeline, shuffling, batching.

Fine-tuning may bucket by length (each batch padded only to its longest example); the search and
re-training run at the task's fixed length N, as the retention vectors are sized for N.
"""

import numpy as np
import tensorflow as tf

_TOKENIZE_CHUNK = 256


def subset_indices(num_examples, subset, seed):
    """Deterministic random subset (all examples, in order, when `subset` is None or too big)."""
    if subset is None or subset >= num_examples:
        return np.arange(num_examples)
    return np.sort(np.random.RandomState(seed).permutation(num_examples)[:subset])


def _labels_array(examples, is_regression):
    if is_regression:  # (n, 1) like the regression head's output
        return np.asarray(examples.labels, np.float32).reshape(-1, 1)
    return np.asarray(examples.labels, np.int32)


def make_dataset(examples, tokenizer, max_length, batch_size, *, is_regression=False, shuffle=False,
                 seed=0, subset=None, subset_seed=0, bucket=False, drop_remainder=False):
    """Batches of `(features, labels)`; features are int32 (B, T) with T = N, or shorter if `bucket`;
    for multiple-choice examples (B, C, T), option c being `[CLS] text [SEP] text_b option [SEP]`
    (`BertTokenizer.multiple_choice`).

    Args:
        examples: `training.data.Examples` (text, optional text_b, optional options, labels).
        tokenizer: `powerbert_tf.BertTokenizer`.
        shuffle: shuffle once with `seed` (callers pass a new seed per epoch, so a resumed run
            can rebuild exactly the same order and skip what it already saw).
        subset: use this many examples (a random choice fixed by `subset_seed`), None for all.
        bucket: group examples of similar length and pad each batch to its longest example.
    """
    keep = subset_indices(len(examples.text), subset, subset_seed)
    columns = [np.asarray(examples.text, object)[keep]]
    if examples.text_b is not None:
        columns.append(np.asarray(examples.text_b, object)[keep])
    if examples.options is not None:
        columns.append(np.asarray(examples.options, object)[keep])
    columns.append(_labels_array(examples, is_regression)[keep])
    ds = tf.data.Dataset.from_tensor_slices(tuple(columns))
    if shuffle:
        ds = ds.shuffle(len(keep), seed=seed, reshuffle_each_iteration=False)

    def tokenize(*batch):
        *texts, labels = batch
        if examples.options is not None:
            return tokenizer.multiple_choice(*texts, max_length=max_length), labels
        features = tokenizer(texts[0], texts[1] if len(texts) == 2 else None, max_length=max_length)
        return features, labels

    if not bucket:
        return ds.batch(batch_size, drop_remainder=drop_remainder).map(tokenize).prefetch(2)
    ds = ds.batch(_TOKENIZE_CHUNK).map(tokenize).unbatch()
    boundaries = [b for b in (16, 24, 32, 48, 64, 96, 128, 192, 256, 384) if b < max_length]
    ds = ds.bucket_by_sequence_length(
        lambda features, _: _longest(features["attention_mask"]),
        bucket_boundaries=boundaries, bucket_batch_sizes=[batch_size] * (len(boundaries) + 1),
        drop_remainder=drop_remainder)
    return ds.map(_trim_to_longest).prefetch(2)


def _longest(attention_mask):
    """The longest sequence's length in a mask of any rank (T,), (B, T), (B, C, T)."""
    return tf.reduce_max(tf.reduce_sum(attention_mask, axis=-1))


def _trim_to_longest(features, labels):
    longest = _longest(features["attention_mask"])
    return {name: value[..., :longest] for name, value in features.items()}, labels


def epoch_stream(make_epoch, epochs, skip_batches=0):
    """Epochs concatenated (epoch e built by `make_epoch(e)`), minus the first `skip_batches`."""
    stream = make_epoch(0)
    for epoch in range(1, epochs):
        stream = stream.concatenate(make_epoch(epoch))
    return stream.skip(skip_batches)


def count_batches(num_examples, batch_size, drop_remainder):
    return num_examples // batch_size if drop_remainder else -(-num_examples // batch_size)
