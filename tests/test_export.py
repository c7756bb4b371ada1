"""SavedModel export: TF Serving layout, signatures, reload equality, plain-TF loading, versions."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from serving.export import ExportError, export_saved_model, next_version, read_metadata
from serving.savedmodel import non_core_ops
from tests.serving_fixtures import TINY_N, export_tiny, tiny_classifier, tiny_tokenizer

SENTENCES = ["the movie was good", "awful plot , dull actors !", "this is not very fun but the story is great",
             "a", ""]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    base = tmp_path_factory.mktemp("models") / "tiny"
    model, tokenizer, path = export_tiny(base)
    return model, tokenizer, path


def test_layout_is_tf_servings(exported):
    _, _, path = exported
    assert os.path.basename(path) == "1"
    assert os.path.isfile(os.path.join(path, "saved_model.pb"))
    assert os.path.isfile(os.path.join(path, "variables", "variables.index"))
    assets = sorted(os.listdir(os.path.join(path, "assets")))
    assert assets == ["labels.txt", "powerbert.json", "retention.json", "vocab.txt"]
    # The model's own configuration: 3 layers x N=16 / (12 + 8 + 4) = 2.0.
    assert json.load(open(os.path.join(path, "assets", "retention.json"))) == {
        "lengths": [12, 8, 4], "sequence_length": TINY_N, "flop_ratio": 2.0}
    assert open(os.path.join(path, "assets", "labels.txt")).read().split() == ["class_0", "class_1"]
    meta = read_metadata(path)
    assert meta["max_length"] == TINY_N and meta["retention"] == [12, 8, 4] and meta["pair"] is False
    # Nothing but the version is left in the base directory (the staging dir was renamed).
    assert os.listdir(os.path.dirname(path)) == ["1"]


def test_reload_equals_in_memory_model(exported):
    model, tokenizer, path = exported
    loaded = tf.saved_model.load(path)
    inputs = tokenizer(SENTENCES, max_length=TINY_N)
    expected = model(inputs, training=False).numpy()

    ids = loaded.signatures["serving_default"](**inputs)
    np.testing.assert_allclose(ids["logits"].numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(ids["probabilities"].numpy(), tf.nn.softmax(expected).numpy(), atol=1e-5)
    np.testing.assert_array_equal(ids["label"].numpy(), expected.argmax(-1))
    assert ids["label"].dtype == tf.int32

    text = loaded.signatures["classify_text"](text=tf.constant(SENTENCES))
    np.testing.assert_allclose(text["logits"].numpy(), expected, atol=1e-5)
    names = [n.decode() for n in text["label_name"].numpy()]
    assert names == [f"class_{i}" for i in expected.argmax(-1)]


def test_jit_compiled_export_is_marked_for_xla_and_gives_the_same_logits(exported, tmp_path):
    from tensorflow.core.protobuf import saved_model_pb2

    model, tokenizer, plain_path = exported
    path = export_saved_model(model, tokenizer, base=str(tmp_path / "xla"), max_length=TINY_N,
                              label_names=["class_0", "class_1"], task_name="tiny", jit_compile=True)
    assert read_metadata(path)["jit_compile"] is True and read_metadata(plain_path)["jit_compile"] is False

    def xla_functions(version_dir):
        proto = saved_model_pb2.SavedModel()
        with open(os.path.join(version_dir, "saved_model.pb"), "rb") as f:
            proto.ParseFromString(f.read())
        library = proto.meta_graphs[0].graph_def.library.function
        return [f for f in library if f.attr["_XlaMustCompile"].b]

    assert xla_functions(path) and not xla_functions(plain_path)
    inputs = tokenizer(SENTENCES, max_length=TINY_N)
    got = tf.saved_model.load(path).signatures["serving_default"](**inputs)["logits"].numpy()
    np.testing.assert_allclose(got, model(inputs, training=False).numpy(), atol=1e-4)


def test_export_uses_the_models_own_n_and_refuses_another(tmp_path):
    model = tiny_classifier()  # hard extract at N=16
    with pytest.raises(ExportError, match=f"built for inputs of length N={TINY_N}.*max_length=8"):
        export_saved_model(model, tiny_tokenizer(), base=str(tmp_path / "m"), max_length=8,
                           label_names=["a", "b"])
    assert not os.path.exists(tmp_path / "m")
    path = export_saved_model(model, tiny_tokenizer(), base=str(tmp_path / "m"), label_names=["a", "b"])
    assert read_metadata(path)["max_length"] == TINY_N
    plain = tiny_classifier(retention=None)
    with pytest.raises(ExportError, match="needs max_length"):
        export_saved_model(plain, tiny_tokenizer(), base=str(tmp_path / "p"), label_names=["a", "b"])


def test_export_of_a_run_refuses_another_max_length(tmp_path):
    from powerbert_cli.export_run import export_run
    from training.config import resolve_config
    from training.run_dir import RunDir

    run = RunDir(tmp_path / "run")
    run.start(resolve_config("sst2", "quick", max_length=TINY_N))
    os.makedirs(run.step_dir("finetune"))
    tiny_classifier(retention=None).save(run.model_path("finetune"))
    with pytest.raises(ExportError, match=f"trained at N={TINY_N}; it cannot be exported with --max-length 32"):
        export_run(run.path, str(tmp_path / "models"), max_length=32)
    assert not os.path.exists(tmp_path / "models")


def test_signature_shapes(exported):
    _, _, path = exported
    loaded = tf.saved_model.load(path)
    serve = loaded.signatures["serving_default"]
    _, spec = serve.structured_input_signature
    assert sorted(spec) == ["attention_mask", "input_ids", "token_type_ids"]
    for s in spec.values():
        assert s.dtype == tf.int32 and s.shape.as_list() == [None, TINY_N]
    assert sorted(serve.structured_outputs) == ["label", "logits", "probabilities"]
    _, text_spec = loaded.signatures["classify_text"].structured_input_signature
    assert list(text_spec) == ["text"] and text_spec["text"].dtype == tf.string


def test_loads_with_plain_tensorflow_and_cli_lists_signatures(exported):
    _, _, path = exported
    # A fresh interpreter that imports only TensorFlow (+ tensorflow_text for the text signature).
    script = (
        "import sys, tensorflow as tf, tensorflow_text\n"
        f"m = tf.saved_model.load({path!r})\n"
        "out = m.signatures['classify_text'](text=tf.constant(['good movie']))\n"
        "assert not any(n.split('.')[0] in ('powerbert_tf', 'training', 'serving') for n in sys.modules)\n"
        "print(out['label_name'].numpy()[0].decode())\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd="/",
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() in ("class_0", "class_1")

    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    shown = subprocess.run([cli, "show", "--dir", path, "--all"], capture_output=True, text=True, timeout=300)
    assert shown.returncode == 0, shown.stderr[-2000:]
    for needle in ("signature_def['serving_default']", "signature_def['classify_text']",
                   "DT_INT32", "shape: (-1, 16)", "tensorflow/serving/predict"):
        assert needle in shown.stdout


def test_next_version_and_never_overwrite(tmp_path):
    model, tokenizer = tiny_classifier(), tiny_tokenizer()
    base = tmp_path / "m"
    os.makedirs(base / "7")
    os.makedirs(base / "not-a-version")
    assert next_version(str(base)) == 8
    path = export_saved_model(model, tokenizer, base=str(base), max_length=TINY_N, label_names=["a", "b"])
    assert os.path.basename(path) == "8"
    before = os.path.getmtime(os.path.join(path, "saved_model.pb"))
    with pytest.raises(ExportError, match="never overwritten"):
        export_saved_model(model, tokenizer, base=str(base), max_length=TINY_N, label_names=["a", "b"],
                           version=8)
    assert os.path.getmtime(os.path.join(path, "saved_model.pb")) == before
    with pytest.raises(ExportError, match="positive integer"):
        export_saved_model(model, tokenizer, base=str(base), max_length=TINY_N, label_names=["a", "b"],
                           version=0)
    with pytest.raises(ExportError, match="label names"):
        export_saved_model(model, tokenizer, base=str(base), max_length=TINY_N, label_names=["a"])


def test_pair_and_regression_exports(tmp_path):
    model, tokenizer, path = export_tiny(tmp_path / "pair", pair=True)
    loaded = tf.saved_model.load(path)
    a, b = ["the movie was good", "bad plot"], ["it is great", "dull actors and the story"]
    out = loaded.signatures["classify_text"](text=tf.constant(a), text_b=tf.constant(b))
    expected = model(tokenizer(a, b, max_length=TINY_N), training=False).numpy()
    np.testing.assert_allclose(out["logits"].numpy(), expected, atol=1e-5)

    model, tokenizer, path = export_tiny(tmp_path / "reg", num_classes=1, retention=None)
    loaded = tf.saved_model.load(path)
    inputs = tokenizer(a, max_length=TINY_N)
    out = loaded.signatures["serving_default"](**inputs)
    assert sorted(out) == ["logits", "score"]
    np.testing.assert_allclose(out["score"].numpy(), model(inputs, training=False).numpy()[:, 0], atol=1e-5)
    assert json.load(open(os.path.join(path, "assets", "retention.json"))) is None


def test_failed_export_leaves_no_version(tmp_path, monkeypatch):
    model, tokenizer = tiny_classifier(), tiny_tokenizer()

    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(tf.saved_model, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        export_saved_model(model, tokenizer, base=str(tmp_path), max_length=TINY_N, label_names=["a", "b"])
    assert os.listdir(tmp_path) == []


def test_only_tf_text_ops_outside_core(exported):
    # The README's TF Serving note relies on this list: ops every tensorflow-text >= 2.9 has.
    assert non_core_ops(exported[2]) == ["FastBertNormalize", "FastWordpieceTokenizeWithOffsets",
                                         "NormalizeUTF8"]


def test_stock_tflite_converter_reads_the_export(exported):
    # Regression: with Keras 3 variables tracked, from_saved_model left the weights unfrozen and
    # the converted model returned NaN. Users convert our exports with the stock converter.
    from ai_edge_litert.interpreter import Interpreter

    model, tokenizer, path = exported
    converter = tf.lite.TFLiteConverter.from_saved_model(path, signature_keys=["serving_default"])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    runner = Interpreter(model_content=converter.convert()).get_signature_runner("serving_default")
    inputs = tokenizer(SENTENCES, max_length=TINY_N)
    out = runner(**{k: v.numpy() for k, v in inputs.items()})
    np.testing.assert_allclose(out["logits"], model(inputs, training=False).numpy(), atol=1e-5)


@pytest.mark.slow
def test_export_run_of_a_trained_model_in_a_fresh_process(tmp_path):
    # A run's model.keras carries its AdamW + warm-up schedule; exporting must not need the
    # training modules that define the schedule (a fresh process has not imported them).
    import keras

    from training.schedules import WarmupLinearDecay
    from tests.conftest import random_inputs

    model = tiny_classifier(retention=None)
    model.compile(optimizer=keras.optimizers.AdamW(WarmupLinearDecay(1e-4, 10)),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = random_inputs(4, TINY_N)
    model.fit(x, np.array([0, 1, 0, 1]), epochs=1, verbose=0)
    os.makedirs(tmp_path / "run" / "finetune")
    model.save(tmp_path / "run" / "finetune" / "model.keras")
    json.dump({"task": "sst2", "init": "minilm-l6", "max_length": TINY_N},
              open(tmp_path / "run" / "config.json", "w"))
    script = ("import sys; from powerbert_cli.export_run import export_run\n"
              f"print(export_run({str(tmp_path / 'run')!r}, {str(tmp_path / 'models')!r}))\n"
              "assert 'training.schedules' not in sys.modules\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith(os.path.join("models", "1"))
    assert read_metadata(done.stdout.strip())["label_names"] == ["negative", "positive"]


def test_cli_export_writes_a_dynamic_tflite_beside_the_saved_model(tmp_path, capsys):
    from powerbert_cli.main import main
    from training.config import resolve_config
    from training.run_dir import RunDir

    run = RunDir(tmp_path / "run")
    run.start(resolve_config("sst2", "quick", max_length=TINY_N))
    os.makedirs(run.step_dir("finetune"))
    tiny_classifier(retention=None).save(run.model_path("finetune"))
    base = tmp_path / "models"
    assert main(["export", str(run.path), "--base", str(base), "--dynamic-length", "--tflite", "int8"]) in (0, None)
    version = base / "1"
    assert os.path.isfile(version / "model.tflite") and os.path.isfile(version / "saved_model.pb")
    metadata = read_metadata(str(version))
    assert metadata["tflite"] == "int8" and metadata["dynamic_length"] is True
