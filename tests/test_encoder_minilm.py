"""The encoder on the real MiniLM weights against Hugging Face transformers' PyTorch `BertModel`.

Goldens come from `tools/make_golden.py` (transformers 4.57.6, torch 2.13.0 CPU); CI needs neither.
"""

import os

import numpy as np
import pytest

import powerbert_tf as pb

GOLDEN = os.path.join(os.path.dirname(__file__), "golden", "minilm_hf_outputs.npz")
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@pytest.fixture(scope="module")
def golden():
    return np.load(GOLDEN)


@pytest.fixture(scope="module")
def encoder():
    return pb.load_encoder("minilm-l6")


def batch(golden, kind):
    return {name: golden[f"{kind}_{name}"] for name in INPUTS}


@pytest.mark.parametrize("kind", ["single", "pair"])
def test_full_retention_matches_transformers(golden, encoder, kind):
    x = batch(golden, kind)
    assert (x["attention_mask"] == 0).any(), "the golden batch must contain padding"
    out = encoder(x, return_details=True)
    real = x["attention_mask"].astype(bool)
    seq_diff = np.abs(out["sequence_output"].numpy() - golden[f"{kind}_sequence_output"])[real].max()
    assert seq_diff <= 1e-4
    np.testing.assert_allclose(out["pooled_output"].numpy(), golden[f"{kind}_pooled_output"], atol=1e-4)
    for layer in (0, 5):
        probs = out["attention_probs"][layer].numpy()
        query_rows = np.broadcast_to(real[:, None, :, None], probs.shape)
        assert np.abs(probs - golden[f"{kind}_attention_probs_layer{layer}"])[query_rows].max() <= 1e-4


@pytest.mark.parametrize("kind", ["single", "pair"])
def test_retention_of_n_equals_no_elimination(golden, encoder, kind):
    x = batch(golden, kind)
    n = x["input_ids"].shape[1]
    full = pb.load_encoder("minilm-l6", retention=[n] * 6, sequence_length=n)
    real = x["attention_mask"].astype(bool)
    a, b = full(x)["sequence_output"].numpy(), encoder(x)["sequence_output"].numpy()
    assert np.abs(a - b)[real].max() <= 1e-5


def test_hard_mode_public_api_shapes(golden):
    x = batch(golden, "single")
    encoder = pb.load_encoder("minilm-l6", retention=pb.RetentionConfig((20, 16, 12, 8, 6, 4), 32))
    out = encoder(x)
    assert out["sequence_output"].shape == (6, 4, 384)
    assert out["pooled_output"].shape == (6, 384)
    assert out["attention_mask"].shape == (6, 4)
    assert out["attention_mask"].numpy()[:, 0].all()  # [CLS] survives every layer


def test_retention_with_wrong_layer_count_is_rejected():
    with pytest.raises(pb.RetentionError, match="6 layers"):
        pb.load_encoder("minilm-l6", retention=[8, 4])
