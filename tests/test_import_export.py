"""`powerbert import` / `powerbert export-weights`: every format in and out through the CLI, a
continued run, transformers reading our HF export, and checkpoints that do not fit named."""

import dataclasses
import json
import os

import keras
import numpy as np
import pytest

from powerbert_cli.main import main
from powerbert_tf import PowerBertClassifier, load_tokenizer
from powerbert_tf.checkpoints import google, huggingface, model_garden
from powerbert_tf.loading import build_encoder, load_encoder
from tests.conftest import TINY
from tests.tiny_run import write_tiny_init, write_tiny_task_files
from training.run_dir import RunDir

N = 16
# What each format's directory is called on the command line, and how it is written.
WRITERS = {"hf": huggingface.save_hf_directory, "google-ckpt": google.save_google_directory,
           "model-garden": model_garden.save_model_garden_checkpoint}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(tiny classifier with a random 2-class head, its vocabulary dir, task flags)."""
    root = tmp_path_factory.mktemp("interop")
    keras.utils.set_random_seed(0)
    init = write_tiny_init(str(root / "init"))
    files = write_tiny_task_files(str(root / "data"))
    model = PowerBertClassifier(load_encoder(init), num_classes=2)
    model.build()
    flags = ["--train", files["train"], "--dev", files["dev"], "--text-column", "sentence",
             "--label-column", "label", "--max-length", str(N)]
    return model, init, flags


def tokenized(init, texts):
    return {k: v.numpy() for k, v in load_tokenizer(init)(texts, max_length=N).items()}


TEXTS = ["a good movie", "the plot was not good at all", "bad", "very very bad film actor"]


@pytest.mark.parametrize("source_format", ["hf", "google-ckpt", "model-garden", "keras-hub"])
def test_import_makes_a_finished_finetune_step_with_the_same_model(tiny, tmp_path, source_format):
    model, init, flags = tiny
    if source_format == "keras-hub":
        # KerasHub's BertBackbone always uses tanh-approximate GELU: a model with that activation.
        model = PowerBertClassifier(build_encoder(dataclasses.replace(TINY, hidden_act="gelu_new")), num_classes=2)
        model.build()
    weights = model.bert_weights(vocab=load_tokenizer(init).vocab, lower_case=True)
    if source_format == "keras-hub":
        from powerbert_tf.checkpoints.keras_hub import save_keras_hub_preset
        save_keras_hub_preset(weights, str(tmp_path / "source"))
    else:
        WRITERS[source_format](weights, str(tmp_path / "source"))
    out = tmp_path / "run"
    assert main(["import", "--from", source_format, str(tmp_path / "source"), "--out", str(out)] + flags) == 0
    run = RunDir(str(out))
    assert run.step_done("finetune") and not run.step_done("search")
    done = run.done_info("finetune")
    assert done["imported_from"]["format"] == source_format
    imported = run.load_model("finetune", compile=False)
    inputs = tokenized(init, TEXTS)
    np.testing.assert_allclose(imported(inputs), model(inputs), atol=1e-5)
    # The dev metric of the import is the model's own accuracy on the dev file.
    assert 0.0 <= done["dev"]["accuracy"] <= 1.0


def test_an_imported_run_continues_with_search_and_retraining(tiny, tmp_path):
    model, init, flags = tiny
    tokenizer = load_tokenizer(init)
    huggingface.save_hf_directory(model.bert_weights(vocab=tokenizer.vocab), str(tmp_path / "hf"))
    out = str(tmp_path / "run")
    assert main(["import", "--from", "hf", str(tmp_path / "hf"), "--out", out, "--seed", "3"] + flags) == 0
    finetune_dev = RunDir(out).done_info("finetune")["dev"]
    assert RunDir(out).read_config().seed == 3
    assert main(["train", "--out", out, "--quiet", "--search-epochs", "1", "--retrain-epochs", "1"]) == 0
    summary = RunDir(out).read_summary()
    assert summary["baseline"] == finetune_dev  # the import's step was kept, not re-run
    assert summary["power_bert"] is not None and len(summary["retention"]) == 3
    # And out again: transformers reads the re-trained weights.
    assert main(["export-weights", out, "--to", "hf", "--out", str(tmp_path / "back"), "--step", "finetune"]) == 0
    assert json.load(open(tmp_path / "back" / "config.json"))["architectures"] == ["BertForSequenceClassification"]


def test_transformers_reads_our_hf_export(tiny, tmp_path):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    model, init, _ = tiny
    tokenizer = load_tokenizer(init)
    huggingface.save_hf_directory(model.bert_weights(vocab=tokenizer.vocab, label_names=("neg", "pos")),
                                  str(tmp_path / "hf"))
    theirs = transformers.BertForSequenceClassification.from_pretrained(str(tmp_path / "hf"))
    theirs.eval()
    inputs = tokenized(init, TEXTS)
    with torch.no_grad():
        logits = theirs(**{k: torch.tensor(v, dtype=torch.long) for k, v in inputs.items()}).logits.numpy()
    np.testing.assert_allclose(logits, model(inputs), atol=1e-4)
    assert theirs.config.id2label == {0: "neg", 1: "pos"}


def test_export_weights_of_a_keras_file_round_trips_through_google(tiny, tmp_path):
    model, init, _ = tiny
    model.save(str(tmp_path / "model.keras"))
    assert main(["export-weights", str(tmp_path / "model.keras"), "--init", init, "--to", "google-ckpt",
                 "--out", str(tmp_path / "google")]) == 0
    back = PowerBertClassifier.from_bert_weights(google.read_google_directory(str(tmp_path / "google")))
    inputs = tokenized(init, TEXTS)
    np.testing.assert_allclose(back(inputs), model(inputs), atol=1e-6)


def test_a_checkpoint_that_does_not_fit_is_named(tiny, tmp_path, capsys):
    model, init, flags = tiny
    tokenizer = load_tokenizer(init)
    weights = model.bert_weights(vocab=tokenizer.vocab)
    huggingface.save_hf_directory(weights, str(tmp_path / "hf"))
    from safetensors.numpy import load_file, save_file
    raw = load_file(str(tmp_path / "hf" / "model.safetensors"))
    raw.pop("bert.encoder.layer.2.output.dense.weight")
    save_file(raw, str(tmp_path / "hf" / "model.safetensors"))
    assert main(["import", "--from", "hf", str(tmp_path / "hf"), "--out", str(tmp_path / "a")] + flags) == 2
    assert "'bert/encoder/layer_2/output/dense/kernel' is missing" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "a" / "config.json")

    weights.tensors["bert/encoder/layer_3/output/dense/bias"] = np.zeros(32, np.float32)
    import tensorflow as tf
    os.makedirs(tmp_path / "g")
    names = sorted(weights.tensors)
    tf.raw_ops.SaveV2(prefix=str(tmp_path / "g" / "bert_model.ckpt"), tensor_names=names,
                      shape_and_slices=[""] * len(names), tensors=[weights.tensors[n] for n in names])
    json.dump(weights.config.to_dict(), open(tmp_path / "g" / "bert_config.json", "w"))
    assert main(["import", "--from", "google-ckpt", str(tmp_path / "g"), "--vocab", os.path.join(init, "vocab.txt"),
                 "--out", str(tmp_path / "b")] + flags) == 2
    assert "unexpected variable 'bert/encoder/layer_3/output/dense/bias'" in capsys.readouterr().err


def test_a_head_of_another_width_is_refused(tiny, tmp_path, capsys):
    model, init, flags = tiny
    three = PowerBertClassifier(load_encoder(init), num_classes=3)
    three.build()
    huggingface.save_hf_directory(three.bert_weights(vocab=load_tokenizer(init).vocab), str(tmp_path / "hf"))
    assert main(["import", "--from", "hf", str(tmp_path / "hf"), "--out", str(tmp_path / "run")] + flags) == 2
    assert "the classifier head has 3 outputs, task" in capsys.readouterr().err
