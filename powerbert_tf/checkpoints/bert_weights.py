"""`BertWeights`: a BERT classifier's weights in one neutral form, under Google's names.

Every import (Hugging Face, Google, KerasHub, Model Garden) produces one and every export consumes
one, so each format's module maps only its own names to and from Google's, and the checks
(missing, extra, mis-shaped variables) are written once, here.
"""

import dataclasses
import os
from typing import Dict, Optional, Tuple

import numpy as np

from powerbert_tf.bert_config import BertConfig
from powerbert_tf.checkpoints.errors import CheckpointError
from powerbert_tf.checkpoints.variable_names import expected_shapes

VOCAB_FILE, LOWER_CASE_FILE = "vocab.txt", "tokenizer_config.json"


@dataclasses.dataclass
class BertWeights:
    """An encoder's weights, and optionally its classifier head and vocabulary.

    Attributes:
        config: the encoder's sizes.
        tensors: Google name (`bert/encoder/layer_0/attention/self/query/kernel`) -> float32 array;
            kernels are (in, out).
        head_kernel: float32 (hidden_size, num_classes) of a fine-tuned classifier, else None.
        head_bias: float32 (num_classes,), with `head_kernel`.
        vocab: the WordPiece vocabulary in id order, else None.
        lower_case: whether the tokenizer lower-cases, else None (unknown).
        label_names: the head's class names when the source records them, else None.
        source: where the weights came from, for messages.
    """

    config: BertConfig
    tensors: Dict[str, np.ndarray]
    head_kernel: Optional[np.ndarray] = None
    head_bias: Optional[np.ndarray] = None
    vocab: Optional[Tuple[str, ...]] = None
    lower_case: Optional[bool] = None
    label_names: Optional[Tuple[str, ...]] = None
    source: str = ""

    @property
    def has_head(self):
        return self.head_kernel is not None

    @property
    def num_classes(self):
        """Width of the head, or None without one."""
        return None if self.head_kernel is None else int(self.head_kernel.shape[1])

    def check(self):
        """Raise `CheckpointError` naming the first missing, extra or mis-shaped variable."""
        expected = expected_shapes(self.config)
        missing = [n for n in expected if n not in self.tensors]
        if missing:
            raise CheckpointError(
                f"{self.source}: variable {missing[0]!r} is missing ({len(missing)} of {len(expected)} "
                f"expected variables missing; first few: {missing[:5]})")
        extra = sorted(n for n in self.tensors if n not in expected)
        if extra:
            raise CheckpointError(
                f"{self.source}: unexpected variable {extra[0]!r} ({len(extra)} not part of a BERT with "
                f"{self.config.num_hidden_layers} layers and hidden size {self.config.hidden_size}; "
                f"first few: {extra[:5]})")
        for name, shape in expected.items():
            if tuple(self.tensors[name].shape) != shape:
                raise CheckpointError(
                    f"{self.source}: variable {name!r} has shape {tuple(self.tensors[name].shape)}, "
                    f"the config implies {shape}")
        if self.has_head:
            if self.head_bias is None or self.head_kernel.ndim != 2 or \
                    self.head_kernel.shape[0] != self.config.hidden_size or \
                    tuple(self.head_bias.shape) != (self.head_kernel.shape[1],):
                raise CheckpointError(
                    f"{self.source}: classifier head kernel {tuple(self.head_kernel.shape)} and bias "
                    f"{None if self.head_bias is None else tuple(self.head_bias.shape)} do not fit "
                    f"hidden size {self.config.hidden_size}")
        if self.label_names is not None and self.has_head and len(self.label_names) != self.num_classes \
                and self.num_classes > 1:
            raise CheckpointError(f"{self.source}: {len(self.label_names)} label names for a head of "
                                  f"{self.num_classes} classes")
        if self.vocab is not None and len(self.vocab) != self.config.vocab_size:
            raise CheckpointError(f"{self.source}: the vocabulary has {len(self.vocab)} tokens, the "
                                  f"embeddings {self.config.vocab_size} rows")
        return self

    def without_head(self):
        """The same encoder weights without the classifier head (what a pretrained directory holds)."""
        return dataclasses.replace(self, head_kernel=None, head_bias=None, label_names=None)


def read_vocab(path):
    """The tokens of a `vocab.txt`, one per line, in id order."""
    if not os.path.isfile(path):
        raise CheckpointError(f"no vocabulary file at {path}")
    with open(path, encoding="utf-8") as f:
        return tuple(line.rstrip("\n").rstrip("\r") for line in f)


def write_vocab(path, vocab):
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(token + "\n" for token in vocab)


def write_tokenizer_files(directory, weights):
    """`vocab.txt` and `tokenizer_config.json` (do_lower_case, as HF writes it) of `weights`."""
    import json

    write_vocab(os.path.join(directory, VOCAB_FILE), weights.vocab)
    with open(os.path.join(directory, LOWER_CASE_FILE), "w") as f:
        json.dump({"do_lower_case": True if weights.lower_case is None else bool(weights.lower_case)}, f)
