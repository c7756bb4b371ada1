"""Tests for serving.convert / serving.tftrt: TFLite (builtins only) and ONNX match the exported
SavedModel, TF-TRT fails clearly without TensorRT, bad inputs give ConversionError, and the CLI.

Two exports are converted once per module: a tiny one (random weights, hard extract [12, 8, 4] at
N=16) and a MiniLM-L6 classifier (pretrained encoder, hard extract at N=32) that is compared on
real SST-2 dev sentences. The slow test does the same at N=64 on 132 dev sentences.

Converted outputs must match the SavedModel's within a bound relative to the logits' scale
(`logit_bound`), tight enough that a model with a slightly scaled weight matrix or another
retention fails it (the `*_wrong_*model` tests).
"""

import argparse
import os
import time

import numpy as np
import pytest
import tensorflow as tf

from serving import convert as cv
from serving import tftrt
from tests.serving_fixtures import TINY_N, export_tiny

# Measured max abs difference / max |logit| of the SavedModel (float32 throughout): tiny model
# <= 6e-7 (TFLite and ONNX), MiniLM at N=32 and N=64 <= 1.4e-6. RTOL leaves ~7x margin; ATOL only
# keeps the bound positive if every logit is ~0 (|logit| here: ~7e-3 tiny, ~2 MiniLM).
# Probabilities (~0.5) may also differ by a float32 rounding or two: PROBABILITY_ATOL.
RTOL = 1e-5
ATOL = 1e-8
PROBABILITY_ATOL = 2e-7
OUTPUTS = {"logits", "probabilities", "label"}
INPUTS = {"input_ids", "attention_mask", "token_type_ids"}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(version_dir, tokenizer, tflite path, onnx path, SavedModel runner, Keras model)."""
    base = tmp_path_factory.mktemp("models") / "tiny"
    model, tokenizer, version_dir = export_tiny(base)
    tflite = cv.convert(version_dir, "tflite")
    onnx = cv.convert(version_dir, "onnx")
    return version_dir, tokenizer, tflite, onnx, cv.load_runner(version_dir), model


TINY_TEXTS = ["good movie", "the plot was not very fun but the actors is great", "awful !",
              "a dull story and a dull plot and dull actors . it was bad"]


def tokenized(tokenizer, texts, max_length=TINY_N):
    return {k: v.numpy() for k, v in tokenizer(tf.constant(texts), max_length=max_length).items()}


def logit_bound(reference_logits):
    """Allowed max abs difference of logits: RTOL of the largest |logit|, plus ATOL."""
    return RTOL * float(np.max(np.abs(reference_logits))) + ATOL


def assert_within_bound(diffs, reference_logits):
    """`diffs` (from verify_conversion) are within `logit_bound(reference_logits)`, labels equal.

    Probabilities get the logits' bound (softmax moves by at most half the largest logit change)
    plus PROBABILITY_ATOL.
    """
    bound = logit_bound(reference_logits)
    assert set(diffs) == OUTPUTS
    assert all(np.isfinite(v) for v in diffs.values()), diffs
    assert diffs["logits"] <= bound, f"logits differ by {diffs['logits']:.2e} > {bound:.2e}: {diffs}"
    assert diffs["probabilities"] <= bound + PROBABILITY_ATOL, (
        f"probabilities differ by {diffs['probabilities']:.2e} > {bound + PROBABILITY_ATOL:.2e}: {diffs}")
    assert diffs["label"] == 0, diffs


def assert_matches(version_dir, converted, inputs, reference, reference_logits=None):
    """`converted` (path or Runner) gives `reference`'s outputs on `inputs`; returns the diffs.

    The bound scales with `reference_logits` (default: the reference's logits on `inputs`). A
    logit's float error scales with the head's typical |logit|, not with the logit itself, which
    can be ~0 by cancellation: give a few rows' logits when checking one row.
    """
    diffs = cv.verify_conversion(version_dir, converted, inputs, reference=reference)
    if reference_logits is None:
        reference_logits = reference(inputs)["logits"]
    assert_within_bound(diffs, reference_logits)
    return diffs


def keras_runner(model):
    """A Runner computing the serving outputs with a Keras classifier (for wrong-model checks)."""
    def run(inputs):
        logits = model({k: tf.constant(v) for k, v in inputs.items()}, training=False)
        return {"logits": logits.numpy(), "probabilities": tf.nn.softmax(logits, -1).numpy(),
                "label": tf.argmax(logits, -1, output_type=tf.int32).numpy()}
    return cv.Runner("saved_model", run, INPUTS, OUTPUTS)


def with_tanh_gelu(model):
    """A copy of a hard-extract `model` with tanh-approximated GELU instead of BERT's exact one."""
    from powerbert_tf import PowerBertClassifier
    from powerbert_tf.bert_config import BertConfig
    from powerbert_tf.loading import build_encoder

    retention = model.encoder.retention
    config = BertConfig(**{**model.encoder.bert_config.to_dict(), "hidden_act": "gelu_new"})
    encoder = build_encoder(config, elimination="hard", retention=list(retention.lengths),
                            sequence_length=retention.sequence_length)
    other = PowerBertClassifier(encoder, num_classes=model.num_classes)
    other.build()
    other.set_weights(model.get_weights())
    return other


def perturbed(model, path, relative):
    """Scale `model`'s weight whose path ends with `path` by (1 + relative); returns a restore()."""
    (weight,) = [w for w in model.weights if w.path.endswith(path)]
    original = weight.numpy()
    weight.assign(original * (1 + relative))
    return lambda: weight.assign(original)


# === TFLite and ONNX ===

def test_default_outputs_are_files_beside_the_version(exported):
    version_dir, _, tflite, onnx, _, _ = exported
    base = os.path.dirname(version_dir)
    assert tflite == os.path.join(base, "1.tflite") and os.path.getsize(tflite) > 0
    assert onnx == os.path.join(base, "1.onnx") and os.path.getsize(onnx) > 0
    assert sorted(n for n in os.listdir(base) if not n.startswith(".")) == ["1", "1.onnx", "1.tflite"]
    assert cv.default_output(version_dir, "tftrt") == os.path.join(base + "-tftrt-fp16", "1")


@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
@pytest.mark.parametrize("batch", [1, 3])
def test_matches_saved_model_on_padded_batches(exported, fmt, batch):
    version_dir, _, tflite, onnx, reference, _ = exported
    inputs = cv.sample_inputs(version_dir, batch, seed=batch)
    assert_matches(version_dir, tflite if fmt == "tflite" else onnx, inputs, reference)


@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_matches_saved_model_on_tokenized_text(exported, fmt):
    version_dir, tokenizer, tflite, onnx, reference, _ = exported
    assert_matches(version_dir, tflite if fmt == "tflite" else onnx, tokenized(tokenizer, TINY_TEXTS),
                   reference)


@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_bound_fails_for_a_wrong_tiny_model(exported, fmt):
    """The converted model matches the Keras model it came from, not one slightly different."""
    version_dir, tokenizer, tflite, onnx, _, model = exported
    converted = cv.load_runner(tflite if fmt == "tflite" else onnx)
    inputs = tokenized(tokenizer, TINY_TEXTS)
    assert_matches(version_dir, converted, inputs, keras_runner(model))
    other_retention = model.with_elimination(elimination="hard", retention=[12, 7, 4],
                                             sequence_length=TINY_N)  # ~1e-3 of the logits
    with pytest.raises(AssertionError, match="logits differ by"):
        assert_matches(version_dir, converted, inputs, keras_runner(other_retention))
    restore = perturbed(model, "layer_0/intermediate/kernel", 0.01)  # ~9e-5 of the logits
    try:
        with pytest.raises(AssertionError, match="logits differ by"):
            assert_matches(version_dir, converted, inputs, keras_runner(model))
    finally:
        restore()


@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_runner_names_dtypes_and_shapes(exported, fmt):
    version_dir, _, tflite, onnx, _, _ = exported
    runner = cv.load_runner(tflite if fmt == "tflite" else onnx, num_threads=1)
    assert runner.format == fmt
    assert set(runner.input_names) == INPUTS and set(runner.output_names) == OUTPUTS
    out = runner(cv.sample_inputs(version_dir, 5))
    assert out["logits"].shape == (5, 2) and out["logits"].dtype == np.float32
    assert out["label"].shape == (5,) and out["label"].dtype == np.int32
    np.testing.assert_allclose(out["probabilities"].sum(-1), 1.0, atol=1e-5)


def test_tflite_hard_extract_uses_builtin_top_k(exported):
    from ai_edge_litert.interpreter import Interpreter

    ops = {op["op_name"] for op in Interpreter(model_path=exported[2])._get_ops_details()}
    assert {"TOPK_V2", "GATHER", "BATCH_MATMUL"} <= ops
    assert not ops & {"VAR_HANDLE", "READ_VARIABLE", "CUSTOM"}, ops  # weights frozen, no Flex


def test_flex_ops_are_named(tmp_path):
    spec = tf.TensorSpec((None, 8), tf.int32)

    @tf.function(input_signature=[spec, spec, spec])
    def serve(input_ids, attention_mask, token_type_ids):
        x = tf.cast(input_ids, tf.float32)
        scores = tf.expand_dims(tf.expand_dims(x, 1), 3) * tf.expand_dims(tf.expand_dims(x, 1), 2)
        probs = tf.nn.softmax(scores, axis=-1)  # (B, 1, T, T)
        return {"logits": tf.einsum("bhqk,bq->bk", probs, x)}  # not lowered to builtins

    tf.saved_model.save(tf.Module(), str(tmp_path / "1"), signatures={"serving_default": serve})
    with pytest.raises(cv.ConversionError, match="outside TFLITE_BUILTINS: Einsum"):
        cv.convert_tflite(tmp_path / "1", tmp_path / "1.tflite")
    assert not (tmp_path / "1.tflite").exists()


# === TF-TRT ===

@pytest.mark.skipif(tftrt.tensorrt_available()[0], reason="TensorRT present: the GPU path applies")
def test_tftrt_needs_a_tensorrt_build(exported, tmp_path):
    with pytest.raises(cv.ConversionError, match="needs a TensorRT-enabled TensorFlow build"):
        cv.convert(exported[0], "tftrt", str(tmp_path / "trt"))
    with pytest.raises(cv.ConversionError, match="precision must be one of FP32, FP16"):
        cv.convert_tftrt(exported[0], str(tmp_path / "trt"), precision="INT8")
    assert not (tmp_path / "trt").exists()


# === Errors ===

@pytest.mark.parametrize("make_path, message", [
    (lambda d, tmp: tmp / "missing", "does not exist"),
    (lambda d, tmp: os.path.dirname(d), "is a model base path, not a version; pass a version directory such as .*1"),
    (lambda d, tmp: tmp, "is not a SavedModel"),
])
def test_bad_directories(exported, tmp_path, make_path, message):
    with pytest.raises(cv.ConversionError, match=message):
        cv.convert(make_path(exported[0], tmp_path), "tflite", str(tmp_path / "x.tflite"))


def test_bad_signatures_and_formats(exported, tmp_path):
    version_dir = exported[0]
    with pytest.raises(cv.ConversionError, match=r"no signature 'serve'; it has \['classify_text', 'serving_default'\]"):
        cv.convert(version_dir, "onnx", str(tmp_path / "x.onnx"), signature="serve")
    with pytest.raises(cv.ConversionError, match="takes strings .text. and tokenizes"):
        cv.convert(version_dir, "tflite", str(tmp_path / "x.tflite"), signature="classify_text")
    with pytest.raises(cv.ConversionError, match="unknown format 'coreml'"):
        cv.convert(version_dir, "coreml")
    assert issubclass(cv.ConversionError, ValueError)


def test_runner_errors(exported, tmp_path):
    version_dir, _, tflite, onnx, _, _ = exported
    (tmp_path / "model.pt").write_bytes(b"x")
    (tmp_path / "broken.onnx").write_bytes(b"not onnx")
    for path, message in [(tmp_path / "model.pt", "expected a .tflite or .onnx file"),
                          (tmp_path / "none.onnx", "does not exist"),
                          (tmp_path / "broken.onnx", "not a readable ONNX model")]:
        with pytest.raises(cv.ConversionError, match=message):
            cv.load_runner(path)
    inputs = cv.sample_inputs(version_dir, 2)
    del inputs["token_type_ids"]
    with pytest.raises(cv.ConversionError, match=r"missing \['token_type_ids'\]"):
        cv.load_runner(onnx)(inputs)
    with pytest.raises(cv.ConversionError, match="no signature 'other'"):
        cv.load_runner(tflite, signature="other")


# === CLI ===

def parse(argv):
    parser = argparse.ArgumentParser(prog="powerbert")
    cv.add_convert_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_cli_converts_and_prints_the_difference(exported, tmp_path, capsys):
    out = tmp_path / "m.tflite"
    assert cv.convert_main(parse(["convert", exported[0], "--to", "tflite", "--out", str(out)])) == str(out)
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed
    assert "max difference vs the SavedModel, relative to its largest output: label 0.00e+00, logits " in printed


def test_cli_fails_beyond_the_tolerance(exported, tmp_path):
    args = parse(["convert", exported[0], "--to", "onnx", "--out", str(tmp_path / "m.onnx"),
                  "--tolerance", "-1"])
    with pytest.raises(cv.ConversionError, match=r"differs from the SavedModel by more than -1 \(relative\) in"):
        cv.convert_main(args)


# === Real weights ===

MINILM_N, MINILM_RETENTION = 32, [20, 16, 12, 8, 6, 4]
# SST-2 dev.tsv lines 2, 3, 5 and 11 (labels 1, 0, 1, 0): 12, 10, 28 and 40 MiniLM word pieces,
# so rows are padded, kept whole, and cut at N=32.
SST2_DEV = [
    "it 's a charming and often affecting journey .",
    "unflinchingly bleak and desperate",
    "the acting , costumes , music , cinematography and sound are all astounding given the "
    "production 's austere locales .",
    "in exactly 89 minutes , most of which passed as slowly as if i 'd been sitting naked on an "
    "igloo , formula 51 sank from quirky to jerky to utter turkey .",
]


def minilm_classifier(retention, n):
    """MiniLM-L6 classifier with hard extract; the head is N(0, 1) so |logit| ~ 2 (fine-tuned size;
    the default random head gives logits ~1e-2)."""
    from powerbert_tf import PowerBertClassifier

    model = PowerBertClassifier.from_pretrained("minilm-l6", num_classes=2, retention=retention,
                                                sequence_length=n)
    kernel = model.head.kernel
    kernel.assign(np.random.default_rng(0).normal(0, 1.0, kernel.shape).astype(np.float32))
    return model


def export_minilm(base, retention, n):
    """(version_dir, tokenizer, Keras model) of a MiniLM-L6 SST-2 classifier exported under `base`."""
    from powerbert_tf import load_tokenizer
    from serving.export import export_saved_model

    model, tokenizer = minilm_classifier(retention, n), load_tokenizer("minilm-l6")
    version_dir = export_saved_model(model, tokenizer, base=str(base), max_length=n,
                                     label_names=["negative", "positive"], task_name="sst2")
    return version_dir, tokenizer, model


@pytest.fixture(scope="module")
def minilm(tmp_path_factory):
    """(version_dir, tokenizer, tflite path, onnx path, SavedModel runner, Keras model) at N=32."""
    version_dir, tokenizer, model = export_minilm(tmp_path_factory.mktemp("models") / "sst2",
                                                  MINILM_RETENTION, MINILM_N)
    tflite = cv.convert(version_dir, "tflite")
    onnx = cv.convert(version_dir, "onnx")
    return version_dir, tokenizer, tflite, onnx, cv.load_runner(version_dir), model


@pytest.fixture(scope="module")
def minilm_inputs(minilm):
    """The SST-2 sentences as one batch of 4; the rows are 12, 10, 28 and 32 (cut) tokens."""
    inputs = tokenized(minilm[1], SST2_DEV, MINILM_N)
    assert inputs["attention_mask"].sum(-1).tolist() == [12, 10, 28, 32]
    return inputs


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_minilm_matches_saved_model_on_sst2_dev(minilm, minilm_inputs, fmt):
    """The README's claim (MiniLM within ~3.5e-6 of the SavedModel on SST-2), at N=32."""
    version_dir, _, tflite, onnx, reference, _ = minilm
    converted = cv.load_runner(tflite if fmt == "tflite" else onnx)
    logits = reference(minilm_inputs)["logits"]
    assert_matches(version_dir, converted, minilm_inputs, reference, reference_logits=logits)
    assert_matches(version_dir, converted, {k: v[:1] for k, v in minilm_inputs.items()}, reference,
                   reference_logits=logits)


@pytest.mark.slow
def test_minilm_bound_fails_for_a_wrong_model(minilm, minilm_inputs):
    """The converted model matches the Keras model it came from, not one slightly different."""
    version_dir, _, tflite, _, _, model = minilm
    converted = cv.load_runner(tflite)
    assert_matches(version_dir, converted, minilm_inputs, keras_runner(model))
    # Relative effects on the logits: ~0.25 and ~1e-3 (the tiny model cannot see tanh-GELU).
    other_retention = model.with_elimination(elimination="hard", retention=[20, 16, 12, 7, 6, 4],
                                             sequence_length=MINILM_N)
    for wrong in (other_retention, with_tanh_gelu(model)):
        with pytest.raises(AssertionError, match="logits differ by"):
            assert_matches(version_dir, converted, minilm_inputs, keras_runner(wrong))
    restore = perturbed(model, "layer_5/intermediate/kernel", 0.001)  # ~4e-4
    try:
        with pytest.raises(AssertionError, match="logits differ by"):
            assert_matches(version_dir, converted, minilm_inputs, keras_runner(model))
    finally:
        restore()


@pytest.mark.slow
def test_minilm_sst2_dev_within_tolerance(tmp_path, data_dir):
    from training.data import read_split
    from training.tasks import get_task

    task = get_task("sst2")
    n = task.max_length
    version_dir, tokenizer, _ = export_minilm(tmp_path / "sst2", [40, 32, 24, 16, 12, 8], n)
    dev = read_split(task, "dev", data_dir)
    batches = [dev.text[i:i + 32] for i in range(0, 128, 32)] + [[t] for t in dev.text[128:132]]
    reference = cv.load_runner(version_dir)
    logits = np.concatenate([reference(tokenized(tokenizer, texts, n))["logits"] for texts in batches])
    for fmt in ("tflite", "onnx"):
        start = time.perf_counter()
        path = cv.convert(version_dir, fmt)
        seconds = time.perf_counter() - start
        converted, worst = cv.load_runner(path), {}
        for texts in batches:
            diffs = cv.verify_conversion(version_dir, converted, tokenized(tokenizer, texts, n),
                                         reference=reference)
            worst = {name: max(worst.get(name, 0.0), diff) for name, diff in diffs.items()}
        print(f"\n{fmt}: {os.path.getsize(path) / 1e6:.1f} MB (SavedModel {cv._size(version_dir) / 1e6:.1f} MB) "
              f"in {seconds:.1f} s; max abs diff {worst}, logits "
              f"{worst['logits'] / np.max(np.abs(logits)):.1e} of max |logit|; logits in "
              f"[{logits.min():.2f}, {logits.max():.2f}], labels {np.bincount(logits.argmax(-1), minlength=2)}")
        assert_within_bound(worst, logits)
