"""Model Garden import and export against real `tfm.nlp` models.

The Model Garden side runs in its own environment (`make modelgarden-env`: TensorFlow 2.20,
tf-keras, tf-models-official) through tests/model_garden_side.py, which fills a tutorial-built
`BertEncoder`/`BertClassifier` with the MiniLM weights by its own mapping. The core side here
never imports Model Garden: it reads and writes the checkpoints by variable name.
"""

import json
import os
import subprocess

import numpy as np
import pytest

from powerbert_tf import CheckpointError, PowerBertClassifier
from powerbert_tf.checkpoints.model_garden import (read_model_garden_checkpoint, read_model_garden_config,
                                                   save_model_garden_checkpoint, write_object_checkpoint)
from powerbert_tf.presets import preset_path

SIDE = os.path.join(os.path.dirname(__file__), "model_garden_side.py")
TOLERANCE = 1e-4


def run_side(python, *arguments):
    """JSON lines printed by tests/model_garden_side.py in the Model Garden environment."""
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run([python, SIDE, *arguments], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def reference(modelgarden_python, tmp_path_factory):
    """Directory with the Model Garden checkpoints (classifier/, encoder/), config, vocab and outputs."""
    directory = tmp_path_factory.mktemp("model_garden") / "reference"
    run_side(modelgarden_python, "reference", preset_path("minilm-l6"), str(directory))
    return directory


def inputs_of(outputs):
    return {k: outputs[k] for k in ("input_ids", "attention_mask", "token_type_ids")}


def max_differences(model, outputs):
    inputs = inputs_of(outputs)
    encoded = model.encoder(inputs)
    real = outputs["attention_mask"][..., None]
    return {"pooled": float(np.abs(encoded["pooled_output"] - outputs["pooled_output"]).max()),
            "sequence": float(np.abs((encoded["sequence_output"] - outputs["sequence_output"]) * real).max()),
            "logits": float(np.abs(model(inputs) - outputs["logits"]).max())}


def test_classifier_checkpoint_imports_with_its_head(reference):
    outputs = np.load(reference / "outputs.npz")
    weights = read_model_garden_checkpoint(str(reference / "classifier"), config=str(reference / "bert_config.json"),
                                           vocab_path=str(reference / "vocab.txt"))
    # The tutorial's "gelu" is Model Garden's tanh approximation.
    assert weights.config.hidden_act == "gelu_new" and weights.num_classes == 3
    diffs = max_differences(PowerBertClassifier.from_bert_weights(weights), outputs)
    assert max(diffs.values()) <= TOLERANCE, diffs
    # Without a config file, the sizes come from the variables' shapes.
    assert read_model_garden_checkpoint(str(reference / "classifier")).config == weights.config


def test_encoder_checkpoint_imports_without_a_head(reference):
    outputs = np.load(reference / "outputs.npz")
    weights = read_model_garden_checkpoint(str(reference / "encoder"), config=str(reference / "bert_config.json"))
    assert not weights.has_head
    diffs = max_differences(PowerBertClassifier.from_bert_weights(weights, num_classes=3), outputs)
    assert diffs["pooled"] <= TOLERANCE and diffs["sequence"] <= TOLERANCE, diffs


def test_export_restores_into_model_garden_models(reference, modelgarden_python, tmp_path):
    """Two exports, restored by Model Garden with `assert_consumed`: the imported tutorial model
    (approximate GELU: built from bert_config.json by `build_encoder`) and MiniLM with a new
    head (exact GELU, which Model Garden's config names cannot express: `exact_gelu`)."""
    imported = PowerBertClassifier.from_bert_weights(read_model_garden_checkpoint(
        str(reference / "classifier"), config=str(reference / "bert_config.json")))
    minilm = PowerBertClassifier.from_pretrained("minilm-l6", num_classes=3)
    inputs = inputs_of(np.load(reference / "outputs.npz"))
    arguments = []
    for name, model in (("imported", imported), ("minilm", minilm)):
        directory = tmp_path / name
        prefix = save_model_garden_checkpoint(model.bert_weights(), str(directory))
        np.savez(directory / "expected.npz", **inputs, logits=model(inputs).numpy(),
                 pooled_output=model.encoder(inputs)["pooled_output"].numpy())
        arguments += [str(directory / "bert_config.json"), prefix, str(directory / "expected.npz")]
        # And back: the core reads its own export.
        back = PowerBertClassifier.from_bert_weights(read_model_garden_checkpoint(
            str(directory), config=str(directory / "bert_config.json")))
        np.testing.assert_allclose(back(inputs), model(inputs), atol=1e-6)
    assert json.load(open(tmp_path / "minilm" / "bert_config.json"))["hidden_activation"] == "exact_gelu"
    for name, result in zip(("imported", "minilm"), run_side(modelgarden_python, "restore", *arguments)):
        assert result["tensorflow"].startswith("2.20"), result
        for key in ("logits_max_abs_diff", "pooled_max_abs_diff", "encoder_only_pooled_max_abs_diff"):
            assert result[key] <= TOLERANCE, (name, result)


# === Wrong or partial checkpoints (no Model Garden needed: written by variable name) ===

@pytest.fixture(scope="module")
def tiny_paths():
    """{object path: array} of a tiny random classifier as Model Garden names it."""
    from powerbert_tf.checkpoints import model_garden
    from powerbert_tf.loading import build_encoder
    from tests.conftest import TINY

    model = PowerBertClassifier(build_encoder(TINY), num_classes=2)
    model.build()
    weights = model.bert_weights()
    paths = model_garden._model_garden_variables(weights, "model/layer_with_weights-0")
    paths["model/layer_with_weights-1/out_proj/kernel"] = weights.head_kernel
    paths["model/layer_with_weights-1/out_proj/bias"] = weights.head_bias
    return paths


def read_changed(tiny_paths, tmp_path, change):
    paths = dict(tiny_paths)
    change(paths)
    prefix = write_object_checkpoint(paths, str(tmp_path / "ckpt-1"))
    return read_model_garden_checkpoint(prefix)


def test_the_unchanged_tiny_checkpoint_reads(tiny_paths, tmp_path):
    assert read_changed(tiny_paths, tmp_path, lambda p: None).num_classes == 2


def test_a_missing_variable_is_named(tiny_paths, tmp_path):
    with pytest.raises(CheckpointError, match=r"'bert/encoder/layer_1/intermediate/dense/bias' is missing"):
        read_changed(tiny_paths, tmp_path,
                     lambda p: p.pop("model/layer_with_weights-0/layer_with_weights-5/_intermediate_dense/bias"))


def test_an_extra_variable_is_named(tiny_paths, tmp_path):
    extra = "model/layer_with_weights-0/layer_with_weights-4/_attention_layer/_rel_bias/kernel"
    with pytest.raises(CheckpointError, match="unexpected variable 'layer_with_weights-4/_attention_layer/_rel_bias"
                                              "/kernel'|unexpected variable '" + extra):
        read_changed(tiny_paths, tmp_path, lambda p: p.update({extra: np.zeros((2, 2), np.float32)}))
    with pytest.raises(CheckpointError, match="unexpected variable 'model/layer_with_weights-2/dense/kernel'"):
        read_changed(tiny_paths, tmp_path,
                     lambda p: p.update({"model/layer_with_weights-2/dense/kernel": np.zeros((2, 2), np.float32)}))


def test_a_mis_shaped_variable_is_named_with_both_shapes(tiny_paths, tmp_path):
    # Layer 1 (the sizes are read off layer 0 when no config is given).
    name = "model/layer_with_weights-0/layer_with_weights-5/_intermediate_dense/kernel"
    with pytest.raises(CheckpointError, match=r"'bert/encoder/layer_1/intermediate/dense/kernel' has shape "
                                              r"\(32, 65\), the config implies \(32, 64\)"):
        read_changed(tiny_paths, tmp_path, lambda p: p.update({name: np.zeros((32, 65), np.float32)}))


def test_a_checkpoint_that_is_not_a_bert_encoder_is_refused(tmp_path):
    prefix = write_object_checkpoint({"net/dense/kernel": np.zeros((2, 2), np.float32)}, str(tmp_path / "ckpt-1"))
    with pytest.raises(CheckpointError, match="not a Model Garden BertEncoder checkpoint"):
        read_model_garden_checkpoint(prefix)


def test_model_garden_config_names(tmp_path):
    path = tmp_path / "bert_config.json"
    path.write_text(json.dumps({"vocab_size": 10, "hidden_size": 8, "num_layers": 2, "num_attention_heads": 2,
                                "intermediate_size": 16, "hidden_activation": "gelu"}))
    config = read_model_garden_config(str(path))
    assert (config.num_hidden_layers, config.hidden_act) == (2, "gelu_new")
    path.write_text(json.dumps({"vocab_size": 10, "hidden_size": 8, "num_layers": 2, "num_attention_heads": 2,
                                "intermediate_size": 16, "hidden_activation": "swishy"}))
    with pytest.raises(CheckpointError, match="hidden_activation 'swishy'"):
        read_model_garden_config(str(path))
