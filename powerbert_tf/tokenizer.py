"""BERT WordPiece tokenization with tensorflow-text: usable eagerly, in `tf.data` and in SavedModels."""

import json
import os

import tensorflow as tf
import tensorflow_text as tf_text

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]")


class BertTokenizer(tf.Module):
    """Texts (and optional pair texts) -> `input_ids`, `attention_mask`, `token_type_ids`.

    Layout `[CLS] a [SEP]` or `[CLS] a [SEP] b [SEP]`, right-padded with `[PAD]` (id of the vocab)
    to `max_length`. Texts too long are cut from their end; pairs by the `truncation` rule.

    Call args:
        texts: string (B,) tensor, array or list (a single string is a batch of one).
        pair_texts: same shape as `texts`, or None.
        max_length: N, keyword-only.
        truncation: keyword-only, how a pair is cut to fit N - 3 tokens:
            - "longest_first" (default): one token at a time from the longer text, from the second
              on ties (Hugging Face's `longest_first`);
            - "only_first": the second text is kept whole and only the first is cut (multiple
              choice: the article gives way to question + option). A second text longer than
              N - 3 by itself is cut to N - 3 and the first keeps no tokens (`[CLS] [SEP] b [SEP]`);
              Hugging Face's `only_first` there logs an error and leaves the pair too long.

    Returns:
        dict of int32 (B, N) tensors.
    """

    def __init__(self, vocab, lower_case=True, name="bert_tokenizer"):
        super().__init__(name=name)
        self.vocab = list(vocab)
        self.lower_case = lower_case
        index = {token: i for i, token in enumerate(self.vocab)}
        if len(index) != len(self.vocab):
            repeated = sorted({t for i, t in enumerate(self.vocab) if index[t] != i})
            raise ValueError(f"vocabulary has repeated tokens: {repeated[:10]}")
        missing = [t for t in SPECIAL_TOKENS if t not in index]
        if missing:
            raise ValueError(f"vocabulary lacks the special tokens {missing}")
        self.pad_id, self.unk_id = index["[PAD]"], index["[UNK]"]
        self.cls_id, self.sep_id = index["[CLS]"], index["[SEP]"]
        self._wordpiece = tf_text.FastBertTokenizer(self.vocab, token_out_type=tf.int32,
                                                    unknown_token="[UNK]")

    @classmethod
    def from_vocab_file(cls, path, lower_case=True):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no vocabulary file at {path}")
        with open(path, encoding="utf-8") as f:
            vocab = [line.rstrip("\n").rstrip("\r") for line in f]
        while vocab and not vocab[-1]:
            vocab.pop()
        return cls(vocab, lower_case=lower_case)

    @property
    def vocab_size(self):
        return len(self.vocab)

    def wordpiece_ids(self, texts):
        """string (B,) -> ragged int32 (B, None) WordPiece ids, no special tokens."""
        texts = clean_text(texts)
        if self.lower_case:
            texts = lower_strip_accents(texts)
        return self._wordpiece.tokenize(texts)

    def __call__(self, texts, pair_texts=None, *, max_length, truncation="longest_first"):
        if truncation not in TRUNCATIONS:
            raise ValueError(f"truncation must be one of {sorted(TRUNCATIONS)}, got {truncation!r}")
        texts = _as_string_batch(texts, "texts")
        first = self.wordpiece_ids(texts)
        if pair_texts is None:
            if max_length < 2:
                raise ValueError(f"max_length must be >= 2 for single texts, got {max_length}")
            segments = [_truncate(first, tf.minimum(first.row_lengths(), max_length - 2))]
        else:
            if max_length < 3:
                raise ValueError(f"max_length must be >= 3 for text pairs, got {max_length}")
            pair_texts = _as_string_batch(pair_texts, "pair_texts")
            second = self.wordpiece_ids(pair_texts)
            keep_first, keep_second = TRUNCATIONS[truncation](
                first.row_lengths(), second.row_lengths(), max_length - 3)
            segments = [_truncate(first, keep_first), _truncate(second, keep_second)]
        ids, types = tf_text.combine_segments(segments, start_of_sequence_id=self.cls_id,
                                              end_of_segment_id=self.sep_id)
        input_ids, mask = tf_text.pad_model_inputs(ids, max_seq_length=max_length, pad_value=self.pad_id)
        token_type_ids, _ = tf_text.pad_model_inputs(types, max_seq_length=max_length)
        return {"input_ids": tf.cast(input_ids, tf.int32), "attention_mask": tf.cast(mask, tf.int32),
                "token_type_ids": tf.cast(token_type_ids, tf.int32)}

    def multiple_choice(self, articles, questions, options, *, max_length):
        """Multiple-choice features: option c of example b is `[CLS] article [SEP] question option
        [SEP]`, the article cut first ("only_first": never the question or the option).

        Args:
            articles, questions: string (B,).
            options: string (B, C); C is the same for every example.
            max_length: N.

        Returns:
            dict of int32 (B, C, N) tensors.
        """
        options = tf.convert_to_tensor(options)
        if options.dtype != tf.string or options.shape.rank != 2:
            raise ValueError(f"options must be a (batch, choices) tensor of strings, got "
                             f"{options.dtype.name} {options.shape}")
        articles = _as_string_batch(articles, "articles")
        questions = _as_string_batch(questions, "questions")
        choices = tf.shape(options)[1]
        repeat = lambda texts: tf.reshape(tf.repeat(texts[:, None], choices, axis=1), [-1])
        endings = tf.strings.join([repeat(questions), tf.reshape(options, [-1])], separator=" ")
        flat = self(repeat(articles), endings, max_length=max_length, truncation="only_first")
        return {name: tf.reshape(value, [-1, choices, max_length]) for name, value in flat.items()}


def clean_text(texts):
    """BERT's text cleanup: tabs/newlines become spaces, control and format characters
    (e.g. soft hyphen, zero-width space) and U+FFFD are dropped, joining the text around them."""
    texts = tf.strings.regex_replace(texts, r"[\t\n\r]", " ")
    return tf.strings.regex_replace(texts, r"[\p{Cc}\p{Cf}\x{FFFD}]", "")


def lower_strip_accents(texts):
    """BERT's uncased normalization: lower-case, NFD, drop combining marks.

    Not tensorflow-text's `lower_case_nfd_strip_accents`, which case-*folds* ("straße" -> "strasse",
    micro sign -> Greek mu) where BERT's Python tokenizer lower-cases and keeps both; the golden
    tokenizer test pins this.
    """
    texts = tf_text.normalize_utf8(tf.strings.lower(texts, encoding="utf-8"), "NFD")
    return tf.strings.regex_replace(texts, r"\p{Mn}", "")


def longest_first_lengths(len_a, len_b, budget):
    """Lengths kept by longest-first truncation of a pair into `budget` tokens (elementwise).

    Removing one token at a time from the longer text (the second on ties) ends at
    `a = min(len_a, max(budget - len_b, ceil(budget / 2)))` and
    `b = min(len_b, max(budget - len_a, floor(budget / 2)))`.
    """
    len_a, len_b = tf.cast(len_a, tf.int64), tf.cast(len_b, tf.int64)
    budget = tf.cast(budget, tf.int64)
    half_down = budget // 2
    keep_a = tf.minimum(len_a, tf.maximum(budget - len_b, budget - half_down))
    keep_b = tf.minimum(len_b, tf.maximum(budget - len_a, half_down))
    return keep_a, keep_b


def only_first_lengths(len_a, len_b, budget):
    """Lengths kept by only-first truncation of a pair into `budget` tokens (elementwise): the
    second text whole if it fits, `b = min(len_b, budget)`, and the first in what is left,
    `a = min(len_a, budget - b)` (0 when the second alone fills the budget)."""
    len_a, len_b = tf.cast(len_a, tf.int64), tf.cast(len_b, tf.int64)
    budget = tf.cast(budget, tf.int64)
    keep_b = tf.minimum(len_b, budget)
    return tf.minimum(len_a, budget - keep_b), keep_b


TRUNCATIONS = {"longest_first": longest_first_lengths, "only_first": only_first_lengths}


def _truncate(ragged, keep):
    """Keep the first `keep[b]` items of row b of a ragged (B, None) tensor."""
    keep = tf.cast(keep, ragged.row_splits.dtype)
    positions = tf.ragged.range(ragged.row_lengths(), dtype=ragged.row_splits.dtype)
    return tf.ragged.boolean_mask(ragged, positions < tf.expand_dims(keep, 1))


def _as_string_batch(texts, what):
    if isinstance(texts, (str, bytes)):
        texts = [texts]
    texts = tf.convert_to_tensor(texts)
    if texts.dtype != tf.string:
        raise TypeError(f"{what} must be strings, got dtype {texts.dtype.name}")
    if texts.shape.rank == 0:
        texts = tf.reshape(texts, [1])
    if texts.shape.rank != 1:
        raise ValueError(f"{what} must be a 1-D batch of strings, got shape {texts.shape}")
    return texts


def read_lower_case(directory, default=True):
    """`do_lower_case` from a HF `tokenizer_config.json` in `directory`, else `default`."""
    path = os.path.join(directory, "tokenizer_config.json")
    if os.path.isfile(path):
        with open(path) as f:
            return bool(json.load(f).get("do_lower_case", default))
    return default
