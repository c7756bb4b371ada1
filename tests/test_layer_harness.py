"""Every public layer and model through the same checks (`tests/layer_harness.py`): config round
trip, `.keras` round trip, sequence lengths 2, 3, 4 and N at batch 1 and 3 (eager and with
dynamic shapes) against float64 NumPy references, and the mixed-precision policies."""

import dataclasses
import functools
from typing import Callable

import keras
import numpy as np
import pytest
import tensorflow as tf

from powerbert_tf import PowerBertClassifier, PowerBertEncoder
from powerbert_tf.elimination import ClipToUnitInterval, HardExtract, SoftExtract
from powerbert_tf.layers import BertEmbeddings, EncoderLayer, SelfAttention
from tests import layer_harness as h
from tests.conftest import random_inputs

N, D, HEADS, VOCAB = 8, 16, 2, 40
LENGTHS = (2, 3, 4, N)
POLICIES = ("mixed_float16", "mixed_bfloat16")
# Reduced-precision matmuls over two layers against float64; bfloat16 keeps 8 mantissa bits.
MIXED_TOLERANCE = {"mixed_float16": 2e-2, "mixed_bfloat16": 1e-1}
# Outputs that decide the ranking stay float32 whatever the policy, and so do the classifier's
# logits (what the loss sees).
FLOAT32_OUTPUTS = ("probs", "attention_probs", "significance", "logits")
# Not BERT's default 0.02, so the config check sees it passed through, but as small: attention is
# near uniform and significance scores close, so ranking in reduced precision keeps other tokens.
INIT = 0.05
LAYER = dict(hidden_size=D, num_heads=HEADS, intermediate_size=32, activation="relu", dropout=0.2,
             attention_dropout=0.3, layer_norm_eps=1e-6, initializer_range=INIT)
BERT = dict(vocab_size=VOCAB, hidden_size=D, num_hidden_layers=2, num_attention_heads=HEADS,
            intermediate_size=32, max_position_embeddings=N, initializer_range=INIT)


def token_inputs(batch, length, seed, padding="right"):
    """int32 (B, T) ids, mask (>= 2 real tokens) and token types (second half 1)."""
    x = random_inputs(batch, length, vocab_size=VOCAB, seed=seed, padding=padding)
    x["token_type_ids"] = (np.arange(length) >= length // 2).astype(np.int32) * x["attention_mask"]
    return x


def hidden_inputs(batch, length, seed, padding="right", scores=False):
    """float32 (B, T, D) hidden, int32 (B, T) mask and, if asked, float32 (B, T) scores."""
    rng = np.random.default_rng(seed)
    mask = random_inputs(batch, length, seed=seed, padding=padding)["attention_mask"]
    x = {"hidden": rng.normal(size=(batch, length, D)).astype(np.float32), "attention_mask": mask}
    if scores:  # apart in float32, tied in float16 and bfloat16
        x["scores"] = ((1.0 + 1e-4 * rng.random((batch, length))) * mask).astype(np.float32)
    return x


def randomize_retention(soft_layers):
    rng = np.random.default_rng(7)
    for layer in soft_layers:
        layer.retention.assign(rng.uniform(0.1, 1.0, N).astype(np.float32))


def encoder_kwargs(dtype=None, **mode):
    return _with_dtype({**BERT, **mode}, dtype)


def classifier_kwargs(dtype=None):
    encoder = PowerBertEncoder(**encoder_kwargs(dtype, elimination="hard", retention=[5, 2], sequence_length=N))
    return _with_dtype(dict(encoder=encoder, num_classes=3, dropout=0.2), dtype)


def _with_dtype(kwargs, dtype):
    return {**kwargs, "dtype": dtype} if dtype else kwargs


@dataclasses.dataclass
class Case:
    """One layer or model: how to make it, feed it and what it should return.

    kwargs(dtype) gives the `__init__` arguments; inputs(batch, length, seed, padding) the call
    inputs (a dict, passed as keyword arguments to layers and as the one argument to models);
    reference(instance, float64 inputs) the expected outputs by name; names the output names
    of a tuple result (or the keys that must be there).
    """

    cls: type
    kwargs: Callable
    inputs: Callable
    reference: Callable
    names: tuple
    call_kwargs: dict = dataclasses.field(default_factory=dict)
    prepare: Callable = None

    def make(self, dtype=None):
        keras.utils.set_random_seed(0)
        kwargs = self.kwargs(dtype)
        instance = self.cls(**kwargs)
        instance.build(None)
        if self.prepare:
            self.prepare(instance)
        return instance, kwargs

    def call(self, instance, inputs):
        if isinstance(instance, keras.Model):
            return instance(inputs, **self.call_kwargs)
        return instance(**inputs, **self.call_kwargs)

    def run(self, instance, inputs):
        """The outputs by name, as NumPy arrays."""
        return {k: np.asarray(v) for k, v in h.outputs_of(self.call(instance, inputs), self.names).items()}


def _layer_reference(layer, x):
    return h.reference_encoder_layer(layer, x["hidden"], x["attention_mask"])


def _hard_extract_reference(layer, x):
    scores = h.reference_selection_scores(layer.word_selection, x["scores"], x["attention_mask"], layer.seed,
                                          layer.layer_index)
    return dict(zip(("hidden", "attention_mask", "positions"),
                    h.reference_hard_extract(x["hidden"], x["attention_mask"], scores, layer.keep)))


def _hard_extract_case(**kwargs):
    return Case(HardExtract, lambda dtype: _with_dtype(dict(keep=3, **kwargs), dtype),
                functools.partial(hidden_inputs, scores=True), _hard_extract_reference,
                ("hidden", "attention_mask", "positions"))


def _encoder_case(details=False, prepare=None, **mode):
    return Case(PowerBertEncoder, lambda dtype: encoder_kwargs(dtype, **mode), token_inputs,
                h.reference_encoder, ("sequence_output", "pooled_output", "attention_mask"),
                {"return_details": True} if details else {}, prepare)


CASES = {
    "embeddings": Case(
        BertEmbeddings,
        lambda dtype: _with_dtype(dict(vocab_size=VOCAB, hidden_size=D, max_position_embeddings=N,
                                       type_vocab_size=2, layer_norm_eps=1e-6, dropout=0.2,
                                       initializer_range=INIT), dtype),
        lambda *args: {k: v for k, v in token_inputs(*args).items() if k != "attention_mask"},
        lambda layer, x: {"output": h.reference_embeddings(layer, x["input_ids"], x["token_type_ids"])},
        ("output",)),
    "self_attention": Case(
        SelfAttention, lambda dtype: _with_dtype(dict(hidden_size=D, num_heads=HEADS, dropout=0.3,
                                                      initializer_range=INIT), dtype),
        hidden_inputs,
        lambda layer, x: dict(zip(("output", "probs"),
                                  h.reference_attention(layer, x["hidden"], x["attention_mask"]))),
        ("output", "probs")),
    "layer_none": Case(EncoderLayer, lambda dtype: _with_dtype(LAYER, dtype), hidden_inputs,
                       _layer_reference, ("hidden", "attention_mask"), {"return_scores": True}),
    "layer_soft": Case(EncoderLayer, lambda dtype: _with_dtype({**LAYER, "elimination": "soft",
                                                                "sequence_length": N}, dtype),
                       hidden_inputs, _layer_reference, ("hidden", "attention_mask"),
                       {"return_scores": True}, lambda layer: randomize_retention([layer.extract])),
    # keep=3 > T=2: keeps min(keep, T).
    "layer_hard": Case(EncoderLayer, lambda dtype: _with_dtype({**LAYER, "elimination": "hard", "keep": 3}, dtype),
                       hidden_inputs, _layer_reference, ("hidden", "attention_mask"), {"return_scores": True}),
    # Without scores a layer keeping one vector takes its [CLS]-only shortcut.
    "layer_hard_keep1": Case(EncoderLayer,
                             lambda dtype: _with_dtype({**LAYER, "elimination": "hard", "keep": 1}, dtype),
                             hidden_inputs, _layer_reference, ("hidden", "attention_mask")),
    "soft_extract": Case(
        SoftExtract, lambda dtype: _with_dtype(dict(sequence_length=N), dtype),
        functools.partial(hidden_inputs, scores=True),
        lambda layer, x: {"hidden": h.reference_soft_extract(x["hidden"], x["attention_mask"], x["scores"],
                                                             h.as_float64(layer.retention)),
                          "attention_mask": x["attention_mask"]},
        ("hidden", "attention_mask"), prepare=lambda layer: randomize_retention([layer])),
    "soft_extract_relative": Case(
        SoftExtract, lambda dtype: _with_dtype(dict(sequence_length=N, relative=True), dtype),
        functools.partial(hidden_inputs, scores=True),
        lambda layer, x: {"hidden": h.reference_soft_extract(x["hidden"], x["attention_mask"], x["scores"],
                                                             h.as_float64(layer.retention), relative=True),
                          "attention_mask": x["attention_mask"]},
        ("hidden", "attention_mask"), prepare=lambda layer: randomize_retention([layer])),
    "hard_extract": _hard_extract_case(),
    # Static word selections (Head-WS, Rand-WS): the scores passed in are ignored.
    "hard_extract_head": _hard_extract_case(word_selection="head"),
    "hard_extract_random": _hard_extract_case(word_selection="random", seed=5, layer_index=1),
    "layer_hard_random": Case(
        EncoderLayer, lambda dtype: _with_dtype({**LAYER, "elimination": "hard", "keep": 3, "word_selection": "random",
                                                 "selection_seed": 2, "layer_index": 4}, dtype),
        hidden_inputs, _layer_reference, ("hidden", "attention_mask"), {"return_scores": True}),
    "encoder_none": _encoder_case(),
    "encoder_soft": _encoder_case(True, lambda e: randomize_retention(e.soft_extract_layers),
                                  elimination="soft", sequence_length=N),
    # l_2 = 1: the last layer takes the [CLS]-only shortcut.
    "encoder_hard": _encoder_case(elimination="hard", retention=[5, 1], sequence_length=N),
    "encoder_length_aware": _encoder_case(True, elimination="hard", retention=[6, 3], sequence_length=N,
                                          length_aware=True),
    "encoder_soft_relative": _encoder_case(True, lambda e: randomize_retention(e.soft_extract_layers),
                                           elimination="soft", sequence_length=N, relative_retention=True),
    "encoder_relative": _encoder_case(True, elimination="hard", retention=[6, 3], sequence_length=N,
                                      relative_retention=True),
    "encoder_head": _encoder_case(elimination="hard", retention=[5, 3], sequence_length=N, word_selection="head"),
    "encoder_random": _encoder_case(elimination="hard", retention=[5, 3], sequence_length=N,
                                    word_selection="random", selection_seed=3),
    "classifier": Case(PowerBertClassifier, lambda dtype: classifier_kwargs(dtype), token_inputs,
                       lambda model, x: {"logits": h.reference_classifier(model, x)}, ("logits",)),
}
COMPOSITE = [name for name in CASES if not name.startswith(("soft_extract", "hard_extract"))]


@functools.lru_cache(maxsize=None)
def float32_instance(name):
    return CASES[name].make()[0]


@pytest.fixture(params=POLICIES)
def mixed_policy(request):
    """The global dtype policy for one test; "float32" again afterwards, even on failure."""
    keras.mixed_precision.set_global_policy(request.param)
    try:
        yield keras.mixed_precision.global_policy()
    finally:
        keras.mixed_precision.set_global_policy("float32")


def _compare(case, instance, x, tol):
    got = case.run(instance, x)
    want = case.reference(instance, h.widened(x))
    assert set(case.names) <= set(got) & set(want)
    h.assert_outputs_close(got, {k: v for k, v in want.items() if k in got}, tol)
    return got


@pytest.mark.parametrize("name", CASES)
def test_config_round_trip(name):
    instance, kwargs = CASES[name].make()
    config = h.check_config_round_trip(instance, kwargs)
    if name == "classifier":
        assert config["encoder"]["config"] == instance.encoder.get_config()


@pytest.mark.parametrize("name", CASES)
def test_keras_file_round_trip(name, tmp_path):
    case = CASES[name]
    instance = float32_instance(name)
    x = case.inputs(3, N, 1)
    loaded = h.save_and_load(instance, tmp_path / "saved.keras", case.call_kwargs)
    assert loaded.get_config() == instance.get_config()
    want, got = case.run(instance, x), case.run(loaded, x)
    assert got.keys() == want.keys()
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=0, atol=1e-6, err_msg=key)


@pytest.mark.parametrize("length", LENGTHS)
@pytest.mark.parametrize("name", CASES)
def test_lengths_and_batch_sizes_match_reference(name, length):
    case = CASES[name]
    for batch, padding in [(1, "right"), (3, "right"), (3, "left")]:
        _compare(case, float32_instance(name), case.inputs(batch, length, 10 * length + batch, padding), 1e-5)


@pytest.mark.parametrize("name", CASES)
def test_dynamic_shapes_match_eager(name):
    # One trace with unknown B and T: the lengths take the tensor branch (`min(l_j, T)` as a
    # tensor), as in a SavedModel exported with a dynamic length.
    case, instance = CASES[name], float32_instance(name)
    example = case.inputs(1, N, 0)
    signature = {k: tf.TensorSpec([None, None, *np.shape(v)[2:]], tf.as_dtype(np.asarray(v).dtype))
                 for k, v in example.items()}
    traced = tf.function(lambda x: case.call(instance, x), input_signature=[signature])
    for batch, length in [(1, 2), (3, 3), (3, N)]:
        x = case.inputs(batch, length, length + batch)
        want = case.run(instance, x)
        got = h.outputs_of(traced(x), case.names)
        for key in want:
            np.testing.assert_allclose(np.asarray(got[key]), want[key], rtol=0, atol=1e-5, err_msg=key)


@pytest.mark.parametrize("name", CASES)
def test_mixed_precision(name, mixed_policy):
    case = CASES[name]
    instance, _ = case.make()
    compute = mixed_policy.compute_dtype
    for weight in instance.weights:
        assert weight.dtype == "float32", weight.path  # retention weights included
    for length in (3, N):
        x = case.inputs(3, length, length)
        if "hidden" in x:  # what a layer receives inside the model
            x["hidden"] = tf.cast(x["hidden"], compute)
        got = _compare(case, instance, x, MIXED_TOLERANCE[mixed_policy.name])
        for key, value in got.items():
            if np.issubdtype(value.dtype, np.integer):
                continue
            expected = "float32" if key.startswith(FLOAT32_OUTPUTS) else compute
            assert tf.as_dtype(value.dtype).name == expected, key


@pytest.mark.parametrize("name", COMPOSITE)
def test_dtype_argument_reaches_sublayers(name, tmp_path):
    # KerasHub's rule: a layer made with dtype=policy runs all of it in that policy, whatever
    # the global policy; so does a model saved that way and loaded under the float32 default.
    instance, _ = CASES[name].make(dtype="mixed_bfloat16")
    checked = [instance]
    if name == "classifier":  # holds every other layer
        checked.append(h.save_and_load(instance, tmp_path / "saved.keras"))
    for model in checked:
        wrong = {layer.path: layer.dtype_policy.name for layer in model._flatten_layers()
                 if layer.dtype_policy.name != "mixed_bfloat16"}
        assert not wrong, wrong


@pytest.mark.parametrize("mixed_policy", ["mixed_float16"], indirect=True)
def test_soft_search_step_under_mixed_float16(mixed_policy):
    # The configuration search: gradients reach the float32 retention weights through the
    # loss-scaled float16 step, and the constraint keeps the weights in [0, 1].
    model = PowerBertClassifier(PowerBertEncoder(**encoder_kwargs(elimination="soft", sequence_length=N)),
                                num_classes=2)
    model.build()
    model.compile(optimizer=keras.optimizers.SGD(10.0), run_eagerly=True,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    x = token_inputs(4, N, 0)
    before = [h.as_float64(layer.retention) for layer in model.encoder.soft_extract_layers]
    loss = model.train_on_batch(x, np.array([0, 1, 0, 1]))
    assert np.isfinite(loss)
    after = [layer.retention for layer in model.encoder.soft_extract_layers]
    assert all(r.dtype == "float32" for r in after)
    values = np.concatenate([h.as_float64(r) for r in after])
    assert np.isfinite(values).all() and values.min() >= 0.0 and values.max() <= 1.0
    assert not np.array_equal(values, np.concatenate(before))


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_clip_to_unit_interval(dtype):
    constraint = ClipToUnitInterval()
    revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(constraint))
    assert type(revived) is ClipToUnitInterval and revived.get_config() == {} == constraint.get_config()
    clipped = revived(tf.constant([-0.5, 0.25, 1.75], dtype))
    assert clipped.dtype == dtype
    np.testing.assert_array_equal(tf.cast(clipped, tf.float32).numpy(), [0.0, 0.25, 1.0])
