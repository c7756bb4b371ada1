"""The hard-extract encoder against a NumPy BERT that eliminates exactly where METHOD.md says.

The reference runs each layer's whole self-attention sub-block (attention, output projection,
residual, layer norm) on every position, then ranks and gathers, then the feed-forward
sub-block: the paper's placement, written independently of the Keras layers (which gather
earlier, before the output projection, to skip work). Weights are read off the Keras model.
"""

import math

import numpy as np
import pytest
from scipy.special import erf

from powerbert_tf.loading import build_encoder
from tests.conftest import TINY, random_inputs
from tests.test_hard_extract import reference_kept
from tests.test_significance import reference_significance

N = 16


def _w(layer):
    return [np.asarray(v) for v in layer.weights]


def _layer_norm(x, layer):
    gamma, beta = _w(layer)
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + layer.epsilon) * gamma + beta


def _dense(x, layer):
    kernel, bias = _w(layer)
    return x @ kernel + bias


def _gelu(x):
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def reference_encoder(encoder, ids, mask, types):
    """float64 NumPy forward pass; returns (sequence_output, pooled_output, mask) per example."""
    emb = encoder.embeddings
    length = ids.shape[1]
    x = (_w(emb.word_embeddings)[0][ids] + _w(emb.position_embeddings)[0][:length]
         + _w(emb.token_type_embeddings)[0][types])
    x = _layer_norm(x, emb.layer_norm)
    heads = encoder.bert_config.num_attention_heads
    for layer in encoder.encoder_layers:
        att = layer.attention
        batch, t, d = x.shape
        split = lambda y: y.reshape(batch, t, heads, d // heads).transpose(0, 2, 1, 3)  # noqa: E731
        q, k, v = split(_dense(x, att.query)), split(_dense(x, att.key)), split(_dense(x, att.value))
        logits = q @ k.transpose(0, 1, 3, 2) / math.sqrt(d // heads)
        probs = _softmax(np.where(mask[:, None, None, :] > 0, logits, -np.inf))
        context = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, t, d)
        x = _layer_norm(x + _dense(context, att.output_dense), layer.attention_norm)
        scores = reference_significance(probs, mask)
        kept = np.array([reference_kept(scores[b], mask[b], min(layer.keep, t)) for b in range(batch)])
        x = np.stack([x[b, kept[b]] for b in range(batch)])
        mask = np.stack([mask[b, kept[b]] for b in range(batch)])
        ffn = _dense(_gelu(_dense(x, layer.intermediate)), layer.output_dense)
        x = _layer_norm(x + ffn, layer.output_norm)
    pooled = np.tanh(_dense(x[:, 0], encoder.pooler))
    return x, pooled, mask


@pytest.mark.parametrize("retention", [(12, 8, 1), (16, 5, 5), (3, 2, 2), (4, 1, 1)])
@pytest.mark.parametrize("padding", ["right", "left"])
def test_hard_encoder_matches_numpy_reference(retention, padding):
    encoder = build_encoder(TINY, elimination="hard", retention=list(retention), sequence_length=N)
    x = random_inputs(6, N, seed=sum(retention), padding=padding)
    got = encoder(x)
    want_seq, want_pooled, want_mask = reference_encoder(
        encoder, x["input_ids"], x["attention_mask"].astype(np.int64), x["token_type_ids"])
    np.testing.assert_array_equal(got["attention_mask"].numpy(), want_mask)
    real = want_mask.astype(bool)
    np.testing.assert_allclose(got["sequence_output"].numpy()[real], want_seq[real], atol=2e-5)
    np.testing.assert_allclose(got["pooled_output"].numpy(), want_pooled, atol=2e-5)


def test_trimming_right_padding_changes_no_real_token():
    # Padding ranks last, is masked as a key and never counts as a query, so a batch trimmed to
    # its longest example (keeping min(l_j, T)) keeps the same real tokens with the same vectors.
    encoder = build_encoder(TINY, elimination="hard", retention=[12, 6, 3], sequence_length=N)
    x = random_inputs(8, N, seed=5, min_len=2)
    x["attention_mask"][:, 9:] = 0  # every example at most 9 tokens: T = 9 after trimming
    x["input_ids"] *= x["attention_mask"]
    trimmed = {k: v[:, :9] for k, v in x.items()}
    full, short = encoder(x), encoder(trimmed)
    assert short["sequence_output"].shape[1] == 3
    np.testing.assert_allclose(short["pooled_output"].numpy(), full["pooled_output"].numpy(), atol=1e-5)
    real = full["attention_mask"].numpy().astype(bool)
    np.testing.assert_array_equal(short["attention_mask"].numpy(), full["attention_mask"].numpy())
    np.testing.assert_allclose(short["sequence_output"].numpy()[real], full["sequence_output"].numpy()[real],
                               atol=1e-5)
