"""Static word selection (issue 13 section 2): Head-WS and Rand-WS keep exactly the positions they
say, at the same counts as PoWER-BERT, and the default stays today's significance selection.

Expected positions are hand-computed (Head-WS) or recomputed from the seed with NumPy (Rand-WS);
`tests/test_layer_harness.py` runs the same modes through the shared harness (NumPy models,
lengths, dynamic shapes, mixed precision, `.keras` files)."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from powerbert_tf import PowerBertClassifier, PowerBertEncoder
from powerbert_tf.elimination import HardExtract, ranking
from powerbert_tf.layers import EncoderLayer
from tests import layer_harness as h
from tests.conftest import TINY, random_inputs
from tests.test_pipeline import N, run, tiny  # noqa: F401 (`tiny` is a fixture)
from training.config import resolve_config
from training.run_dir import RunConfigMismatch, RunDir

D = 4


def positions_of(layer, mask, scores=None):
    """int (B, K) positions `layer` keeps of rows with attention mask `mask` (B, T)."""
    mask = np.asarray(mask, np.int32)
    hidden = np.zeros(mask.shape + (D,), np.float32)
    scores = np.zeros(mask.shape, np.float32) if scores is None else scores
    return layer(hidden, mask, scores)[2].numpy()


def expected_random(mask_row, keep, seed, layer_index):
    """Rand-WS from its definition, in NumPy: [CLS] (the first real token), then the other real
    tokens by descending priority `default_rng([seed, layer]).random(...)[i]` of their index i
    among the real tokens (lower position on ties), then padding in position order; the first
    `keep`, in word order."""
    real = [t for t in range(len(mask_row)) if mask_row[t]]
    priority = np.random.default_rng([seed, layer_index]).random(len(real)).astype(np.float32)
    others = sorted(range(1, len(real)), key=lambda i: (-priority[i], i))
    padding = [t for t in range(len(mask_row)) if not mask_row[t]]
    return sorted(([real[0]] + [real[i] for i in others] + padding)[:keep])


# Scores that would make significance keep the *last* real tokens: the static rules ignore them.
def rising_scores(mask):
    return (np.arange(mask.shape[1], dtype=np.float32)[None] * mask).astype(np.float32)


# === Head-WS ===

HEAD_CASES = [  # mask rows, keep, hand-computed positions and kept mask
    ([1, 1, 1, 1, 1, 0], 3, [0, 1, 2], [1, 1, 1]),
    ([1, 1, 0, 0, 0, 0], 3, [0, 1, 2], [1, 1, 0]),  # 2 real tokens: then the first padding
    ([0, 0, 1, 1, 1, 1], 3, [2, 3, 4], [1, 1, 1]),  # left padding: the first real tokens
    ([0, 0, 0, 0, 1, 1], 3, [0, 4, 5], [0, 1, 1]),  # both real tokens, then padding position 0
    ([0, 1, 1, 1, 1, 1], 1, [1], [1]),  # [CLS] alone
]


@pytest.mark.parametrize("mask_row, keep, positions, kept_mask", HEAD_CASES)
def test_head_keeps_the_first_real_tokens(mask_row, keep, positions, kept_mask):
    mask = np.array([mask_row], np.int32)
    hidden = np.random.default_rng(0).normal(size=(1, 6, D)).astype(np.float32)
    out_hidden, out_mask, out_positions = HardExtract(keep, word_selection="head")(hidden, mask, rising_scores(mask))
    np.testing.assert_array_equal(out_positions.numpy(), [positions])
    np.testing.assert_array_equal(out_mask.numpy(), [kept_mask])
    np.testing.assert_array_equal(out_hidden.numpy(), hidden[:, positions])


# === Rand-WS ===

@pytest.mark.parametrize("padding", ["right", "left"])
@pytest.mark.parametrize("keep", [1, 3, 6])
def test_random_keeps_the_seeded_positions(padding, keep):
    mask = random_inputs(8, 10, seed=keep, padding=padding, min_len=1)["attention_mask"]
    got = positions_of(HardExtract(keep, word_selection="random", seed=11, layer_index=2), mask, rising_scores(mask))
    for b in range(len(mask)):
        np.testing.assert_array_equal(got[b], expected_random(mask[b], keep, 11, 2), err_msg=f"row {b}")


def test_random_keeps_the_same_words_in_any_batch_and_call():
    # One input of 7 real tokens, padded to 9 or 14 on either side among other inputs: the same
    # real tokens (counted from its [CLS]) are kept every time, eagerly and traced.
    layer = HardExtract(4, word_selection="random", seed=3, layer_index=1)

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32)])  # unknown B and T
    def traced(mask):
        return layer(tf.zeros(tf.concat([tf.shape(mask), [D]], 0)), mask, tf.zeros(tf.shape(mask)))[2]

    kept = set()
    for length, padding, neighbours in [(9, "right", 0), (9, "left", 3), (14, "right", 5), (14, "left", 1)]:
        mask = random_inputs(neighbours + 1, length, seed=length, padding=padding)["attention_mask"]
        mask[-1] = 0
        start = 0 if padding == "right" else length - 7
        mask[-1, start:start + 7] = 1
        for positions in (positions_of(layer, mask)[-1], traced(mask).numpy()[-1]):
            kept.add(tuple(positions - start))
    assert kept == {tuple(expected_random([1] * 7, 4, 3, 1))}


def test_random_sets_differ_between_seeds_and_layers():
    mask = np.ones((1, 40), np.int32)
    kept = {(seed, layer_index): tuple(positions_of(HardExtract(8, word_selection="random", seed=seed,
                                                                 layer_index=layer_index), mask)[0])
            for seed in (0, 1, 2) for layer_index in (0, 1)}
    assert len(set(kept.values())) == len(kept), kept
    assert all(positions[0] == 0 for positions in kept.values())


# === Rules every selection keeps ===

@pytest.mark.parametrize("word_selection", ["head", "random"])
@pytest.mark.parametrize("padding", ["right", "left"])
def test_cls_kept_padding_last_word_order(word_selection, padding):
    mask = random_inputs(32, 12, seed=5, padding=padding, min_len=1)["attention_mask"]
    for keep in (1, 2, 5, 12):
        positions = positions_of(HardExtract(keep, word_selection=word_selection, seed=4), mask)
        assert (np.diff(positions, axis=1) > 0).all()  # word order
        for b, row in enumerate(mask):
            real_kept = row[positions[b]].sum()
            assert row.argmax() in positions[b]  # [CLS]
            assert real_kept == min(keep, row.sum())  # padding only once every real token is kept


def test_default_is_todays_significance_selection():
    # Bit for bit what hard extract did before word selections existed: top-k of the ranking keys.
    rng = np.random.default_rng(0)
    mask = random_inputs(6, 10, seed=1, padding="left")["attention_mask"]
    scores = (rng.random(mask.shape) * mask).astype(np.float32)
    hidden = rng.normal(size=mask.shape + (D,)).astype(np.float32)
    before = ranking.kept_positions(ranking.ranking_keys(scores, mask), 4)
    for layer in (HardExtract(4), HardExtract(4, word_selection="significance", seed=9, layer_index=3)):
        out_hidden, out_mask, positions = layer(hidden, mask, scores)
        np.testing.assert_array_equal(positions.numpy(), before.numpy())
        np.testing.assert_array_equal(out_hidden.numpy(), tf.gather(hidden, before, batch_dims=1).numpy())
        np.testing.assert_array_equal(out_mask.numpy(), tf.gather(mask, before, batch_dims=1).numpy())


def test_default_encoder_outputs_are_unchanged():
    keras.utils.set_random_seed(0)
    default = PowerBertEncoder(**TINY.to_dict(), elimination="hard", retention=[10, 6, 2], sequence_length=16)
    explicit = PowerBertEncoder(**TINY.to_dict(), elimination="hard", retention=[10, 6, 2], sequence_length=16,
                                word_selection="significance", selection_seed=5)
    default.build()
    explicit.build()
    explicit.set_weights(default.get_weights())
    x = random_inputs(3, 16)
    for key, value in default(x).items():
        np.testing.assert_array_equal(explicit(x)[key].numpy(), value.numpy(), err_msg=key)


# === Threading, serialization, refusals ===

def small_classifier(**mode):
    keras.utils.set_random_seed(0)
    model = PowerBertClassifier(PowerBertEncoder(**TINY.to_dict(), **mode), num_classes=2)
    model.build()
    return model


def test_with_elimination_gives_every_layer_its_seed_and_index():
    model = small_classifier().with_elimination(elimination="hard", retention=[10, 6, 2], sequence_length=16,
                                                word_selection="random", selection_seed=7)
    assert model.encoder.word_selection == "random" and model.encoder.selection_seed == 7
    extracts = [layer.extract for layer in model.encoder.encoder_layers]
    assert [(e.word_selection, e.seed, e.layer_index, e.keep) for e in extracts] == [
        ("random", 7, j, keep) for j, keep in enumerate((10, 6, 2))]


@pytest.mark.parametrize("instance", [
    lambda: HardExtract(3, word_selection="random", seed=2, layer_index=5),
    lambda: EncoderLayer(8, 2, 16, elimination="hard", keep=3, word_selection="head", selection_seed=1,
                         layer_index=2),
    lambda: PowerBertEncoder(**TINY.to_dict(), elimination="hard", retention=[10, 6, 2], sequence_length=16,
                             word_selection="random", selection_seed=4),
], ids=["hard_extract", "encoder_layer", "encoder"])
def test_config_round_trip(instance):
    made = instance()
    config = h.check_config_round_trip(made, {})
    assert config.get("word_selection") in ("head", "random")


def test_keras_file_keeps_the_selection(tmp_path):
    model = small_classifier(elimination="hard", retention=[10, 6, 2], sequence_length=16,
                             word_selection="random", selection_seed=4)
    loaded = h.save_and_load(model, tmp_path / "random.keras")
    assert loaded.encoder.word_selection == "random" and loaded.encoder.selection_seed == 4
    x = random_inputs(4, 16, seed=2, padding="left")
    np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), rtol=0, atol=1e-6)


@pytest.mark.parametrize("mode, message", [
    (dict(elimination="soft", sequence_length=16), "elimination='hard' with fixed counts; got elimination='soft'"),
    (dict(elimination="none"), "got elimination='none'"),
    (dict(elimination="hard", retention=[10, 6, 2], sequence_length=16, length_aware=True), "length_aware=True"),
    (dict(elimination="hard", retention=[10, 6, 2], sequence_length=16, relative_retention=True),
     "relative_retention=True"),
])
def test_static_selection_refused_outside_fixed_hard_mode(mode, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        PowerBertEncoder(**TINY.to_dict(), word_selection="head", **mode)


@pytest.mark.parametrize("kwargs, message", [
    (dict(word_selection="first"), "word_selection must be one of"),
    (dict(word_selection="random", seed=-1), "non-negative int, got -1"),
    (dict(word_selection="random", seed=1.5), "non-negative int, got 1.5"),
])
def test_hard_extract_refuses_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        HardExtract(3, **kwargs)


# === Training: `powerbert train --word-selection` ===

def test_train_flag_sets_the_config(tmp_path):
    from powerbert_cli.main import _config_from_args, build_parser
    from training.tasks import get_task

    args = build_parser().parse_args(["train", "--task", "sst2", "--out", str(tmp_path / "run"),
                                      "--word-selection", "random", "--seed", "2"])
    config = _config_from_args(args, get_task("sst2"))
    assert config.word_selection == "random" and config.seed == 2
    assert resolve_config("sst2").word_selection == "significance"
    with pytest.raises(ValueError, match="does not combine with --length-aware"):
        resolve_config("sst2", word_selection="head", length_aware=True)
    with pytest.raises(ValueError, match="word_selection must be one of"):
        resolve_config("sst2", word_selection="first")


def test_retrain_with_head_selection_keeps_the_first_positions(tiny, tmp_path):
    # A run whose fine-tuning has finished (its model stands in for a fine-tuned one: fine-tuning
    # itself is tested in test_pipeline.py), then `--step retrain --word-selection head`: the
    # setting changes only re-training, so it may differ from the run's until re-training starts.
    short = dict(epochs=1, train_subset=16, dev_subset=8, retention=(10, 6, 2))
    run(tiny, tmp_path, steps=(), **short)
    os.makedirs(tmp_path / "finetune")
    RunDir(tmp_path).save_model("finetune", PowerBertClassifier.from_pretrained(tiny[0], num_classes=2))
    run(tiny, tmp_path, steps=("retrain",), word_selection="head", **short)
    model = keras.saving.load_model(tmp_path / "retrain" / "model.keras")
    assert model.encoder.word_selection == "head"
    mask = random_inputs(5, N, seed=3, padding="right", min_len=11)["attention_mask"]
    for layer, keep in zip(model.encoder.encoder_layers, (10, 6, 2)):
        np.testing.assert_array_equal(positions_of(layer.extract, mask, rising_scores(mask)),
                                      np.tile(np.arange(keep), (5, 1)))
    x = random_inputs(3, N, vocab_size=TINY.vocab_size, seed=4)
    x["token_type_ids"] = np.zeros_like(x["input_ids"])
    got = model.encoder(x)
    want = h.reference_encoder(model.encoder, x)  # keeps the first l_j real tokens in layer j
    h.assert_outputs_close(got, {key: want[key] for key in got}, 1e-4)
    with pytest.raises(RunConfigMismatch, match=r"\(word_selection\)"):
        run(tiny, tmp_path, steps=(), word_selection="random", **short)  # re-training has started
