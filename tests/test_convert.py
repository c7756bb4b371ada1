"""Tests for serving.convert / serving.tftrt: TFLite (builtins only) and ONNX match the exported
SavedModel, TF-TRT fails clearly without TensorRT, bad inputs give ConversionError, and the CLI.

The tiny export (random weights, hard extract [12, 8, 4] at N=16) is converted once per module.
The slow test converts a MiniLM-L6 classifier and compares on real SST-2 dev sentences.
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

TOLERANCE = 1e-3
OUTPUTS = {"logits", "probabilities", "label"}
INPUTS = {"input_ids", "attention_mask", "token_type_ids"}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(version_dir, tokenizer, tflite path, onnx path, SavedModel runner)."""
    base = tmp_path_factory.mktemp("models") / "tiny"
    _, tokenizer, version_dir = export_tiny(base)
    tflite = cv.convert(version_dir, "tflite")
    onnx = cv.convert(version_dir, "onnx")
    return version_dir, tokenizer, tflite, onnx, cv.load_runner(version_dir)


def tokenized(tokenizer, texts):
    return {k: v.numpy() for k, v in tokenizer(tf.constant(texts), max_length=TINY_N).items()}


def assert_close(diffs):
    assert set(diffs) == OUTPUTS
    assert all(np.isfinite(v) and v <= TOLERANCE for v in diffs.values()), diffs
    assert diffs["label"] == 0


# === TFLite and ONNX ===

def test_default_outputs_are_files_beside_the_version(exported):
    version_dir, _, tflite, onnx, _ = exported
    base = os.path.dirname(version_dir)
    assert tflite == os.path.join(base, "1.tflite") and os.path.getsize(tflite) > 0
    assert onnx == os.path.join(base, "1.onnx") and os.path.getsize(onnx) > 0
    assert sorted(n for n in os.listdir(base) if not n.startswith(".")) == ["1", "1.onnx", "1.tflite"]
    assert cv.default_output(version_dir, "tftrt") == os.path.join(base + "-tftrt-fp16", "1")


@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
@pytest.mark.parametrize("batch", [1, 3])
def test_matches_saved_model_on_padded_batches(exported, fmt, batch):
    version_dir, _, tflite, onnx, reference = exported
    inputs = cv.sample_inputs(version_dir, batch, seed=batch)
    assert_close(cv.verify_conversion(version_dir, tflite if fmt == "tflite" else onnx, inputs,
                                      reference=reference))


@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_matches_saved_model_on_tokenized_text(exported, fmt):
    version_dir, tokenizer, tflite, onnx, reference = exported
    inputs = tokenized(tokenizer, ["good movie", "the plot was not very fun but the actors is great",
                                   "awful !", "a dull story and a dull plot and dull actors . it was bad"])
    assert_close(cv.verify_conversion(version_dir, tflite if fmt == "tflite" else onnx, inputs,
                                      reference=reference))


@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_runner_names_dtypes_and_shapes(exported, fmt):
    version_dir, _, tflite, onnx, _ = exported
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
    version_dir, _, tflite, onnx, _ = exported
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
    assert "max abs difference vs the SavedModel: label 0.00e+00, logits " in printed


def test_cli_fails_beyond_the_tolerance(exported, tmp_path):
    args = parse(["convert", exported[0], "--to", "onnx", "--out", str(tmp_path / "m.onnx"),
                  "--tolerance", "-1"])
    with pytest.raises(cv.ConversionError, match="differs from the SavedModel by more than -1 in"):
        cv.convert_main(args)


# === Real weights ===

@pytest.mark.slow
def test_minilm_sst2_dev_within_tolerance(tmp_path):
    from powerbert_tf import PowerBertClassifier, load_tokenizer
    from serving.export import export_saved_model
    from training.data import read_split
    from training.tasks import get_task

    task = get_task("sst2")
    n, retention = task.max_length, [40, 32, 24, 16, 12, 8]
    model = PowerBertClassifier.from_pretrained("minilm-l6", num_classes=2, retention=retention,
                                                sequence_length=n)
    # The new head is random with tiny weights; make the logits fine-tuned-sized (|logit| ~ 2).
    kernel = model.head.kernel
    kernel.assign(np.random.default_rng(0).normal(0, 1.0, kernel.shape).astype(np.float32))
    tokenizer = load_tokenizer("minilm-l6")
    version_dir = export_saved_model(model, tokenizer, base=str(tmp_path / "sst2"), max_length=n,
                                     label_names=task.label_names, task_name="sst2")
    dev = read_split(task, "dev", os.environ.get("POWERBERT_DATA_DIR", "/work/shared/data"))
    batches = [dev.text[i:i + 32] for i in range(0, 128, 32)] + [[t] for t in dev.text[128:132]]
    reference = cv.load_runner(version_dir)
    for fmt in ("tflite", "onnx"):
        start = time.perf_counter()
        path = cv.convert(version_dir, fmt)
        seconds = time.perf_counter() - start
        converted, worst, logits = cv.load_runner(path), {}, []
        for texts in batches:
            inputs = {k: v.numpy() for k, v in tokenizer(tf.constant(texts), max_length=n).items()}
            for name, diff in cv.verify_conversion(version_dir, converted, inputs, reference=reference).items():
                worst[name] = max(worst.get(name, 0.0), diff)
            logits.append(reference(inputs)["logits"])
        logits = np.concatenate(logits)
        print(f"\n{fmt}: {os.path.getsize(path) / 1e6:.1f} MB (SavedModel {cv._size(version_dir) / 1e6:.1f} MB) "
              f"in {seconds:.1f} s; max abs diff "
              f"{worst}; logits in [{logits.min():.2f}, {logits.max():.2f}], labels "
              f"{np.bincount(logits.argmax(-1), minlength=2)}")
        assert_close(worst)
