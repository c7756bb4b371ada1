"""Shared fixtures: a tiny random-weight BERT for fast tests, and random inputs with padding."""

import numpy as np
import pytest

from powerbert_tf.bert_config import BertConfig

TINY = BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                  intermediate_size=64, max_position_embeddings=64, type_vocab_size=2)


@pytest.fixture
def tiny_config():
    return TINY


def random_inputs(batch, length, vocab_size=TINY.vocab_size, seed=0, padding="right", min_len=2):
    """int32 inputs with a random real length per row; [CLS]=1 at the first real position."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, vocab_size, size=(batch, length)).astype(np.int32)
    mask = np.zeros((batch, length), np.int32)
    for b in range(batch):
        n = int(rng.integers(min_len, length + 1))
        real = slice(0, n) if padding == "right" else slice(length - n, length)
        mask[b, real] = 1
        ids[b, real.start] = 1
    ids = ids * mask
    types = np.zeros_like(ids)
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
