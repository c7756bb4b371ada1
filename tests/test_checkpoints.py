"""Loading Google BERT TF checkpoints and HF safetensors, and the errors for bad ones."""

import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
from safetensors.numpy import load_file, save_file

import powerbert_tf as pb
from powerbert_tf.checkpoints import save_google_checkpoint
from powerbert_tf.presets import preset_path

# Google's names written out by hand (independent of powerbert_tf's own mapping).
HF_TO_GOOGLE_LAYER = {
    "attention.self.query": "attention/self/query", "attention.self.key": "attention/self/key",
    "attention.self.value": "attention/self/value", "attention.output.dense": "attention/output/dense",
    "intermediate.dense": "intermediate/dense", "output.dense": "output/dense",
}
HF_TO_GOOGLE_NORM = {"attention.output.LayerNorm": "attention/output/LayerNorm",
                     "output.LayerNorm": "output/LayerNorm"}


def google_tensors_from_hf(path, num_layers=6):
    hf = load_file(path)
    out = {
        "bert/embeddings/word_embeddings": hf["embeddings.word_embeddings.weight"],
        "bert/embeddings/position_embeddings": hf["embeddings.position_embeddings.weight"],
        "bert/embeddings/token_type_embeddings": hf["embeddings.token_type_embeddings.weight"],
        "bert/embeddings/LayerNorm/gamma": hf["embeddings.LayerNorm.weight"],
        "bert/embeddings/LayerNorm/beta": hf["embeddings.LayerNorm.bias"],
        "bert/pooler/dense/kernel": hf["pooler.dense.weight"].T,
        "bert/pooler/dense/bias": hf["pooler.dense.bias"],
    }
    for i in range(num_layers):
        for theirs, google in HF_TO_GOOGLE_LAYER.items():
            out[f"bert/encoder/layer_{i}/{google}/kernel"] = hf[f"encoder.layer.{i}.{theirs}.weight"].T
            out[f"bert/encoder/layer_{i}/{google}/bias"] = hf[f"encoder.layer.{i}.{theirs}.bias"]
        for theirs, google in HF_TO_GOOGLE_NORM.items():
            out[f"bert/encoder/layer_{i}/{google}/gamma"] = hf[f"encoder.layer.{i}.{theirs}.weight"]
            out[f"bert/encoder/layer_{i}/{google}/beta"] = hf[f"encoder.layer.{i}.{theirs}.bias"]
    return out


def write_google_checkpoint(directory, tensors, config):
    os.makedirs(directory, exist_ok=True)
    names = sorted(tensors)
    tf.raw_ops.SaveV2(prefix=os.path.join(directory, "bert_model.ckpt"), tensor_names=names,
                      shape_and_slices=[""] * len(names),
                      tensors=[tf.constant(np.ascontiguousarray(tensors[n])) for n in names])
    with open(os.path.join(directory, "bert_config.json"), "w") as f:
        json.dump(config, f)


@pytest.fixture(scope="module")
def minilm():
    directory = preset_path("minilm-l6")
    with open(os.path.join(directory, "config.json")) as f:
        config = json.load(f)
    google_config = {k: config[k] for k in (
        "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
        "hidden_act", "hidden_dropout_prob", "attention_probs_dropout_prob",
        "max_position_embeddings", "type_vocab_size", "initializer_range")}
    return directory, google_tensors_from_hf(os.path.join(directory, "model.safetensors")), google_config


@pytest.fixture(scope="module")
def inputs():
    tok = pb.load_tokenizer("minilm-l6")
    return tok(["it 's a charming and often affecting journey .", "unflinchingly bleak"],
               ["a second text", "and another"], max_length=24)


def test_google_checkpoint_gives_identical_outputs(minilm, inputs, tmp_path):
    directory, tensors, config = minilm
    write_google_checkpoint(tmp_path / "google", tensors, config)
    shutil.copy(os.path.join(directory, "vocab.txt"), tmp_path / "google" / "vocab.txt")
    from_google = pb.load_encoder(str(tmp_path / "google"))(inputs)
    from_hf = pb.load_encoder("minilm-l6")(inputs)
    for key in ("sequence_output", "pooled_output"):
        np.testing.assert_array_equal(from_google[key].numpy(), from_hf[key].numpy())
    google_tok = pb.load_tokenizer(str(tmp_path / "google"))
    np.testing.assert_array_equal(google_tok(["journey"], max_length=4)["input_ids"].numpy(),
                                  pb.load_tokenizer("minilm-l6")(["journey"], max_length=4)["input_ids"].numpy())


def test_save_google_checkpoint_round_trip(tmp_path, inputs):
    encoder = pb.load_encoder("minilm-l6")
    save_google_checkpoint(encoder, str(tmp_path / "exported"))
    again = pb.load_encoder(str(tmp_path / "exported"))
    np.testing.assert_array_equal(again(inputs)["sequence_output"].numpy(),
                                  encoder(inputs)["sequence_output"].numpy())


def test_missing_variable_is_named(minilm, tmp_path):
    _, tensors, config = minilm
    tensors = dict(tensors)
    del tensors["bert/encoder/layer_3/intermediate/dense/kernel"]
    write_google_checkpoint(tmp_path / "g", tensors, config)
    with pytest.raises(pb.CheckpointError, match="layer_3/intermediate/dense/kernel' is missing"):
        pb.load_encoder(str(tmp_path / "g"))


def test_misshaped_variable_is_named(minilm, tmp_path):
    _, tensors, config = minilm
    write_google_checkpoint(tmp_path / "g", tensors, dict(config, intermediate_size=1024))
    with pytest.raises(pb.CheckpointError, match=r"layer_0/intermediate/dense/kernel' has shape \(384, 1536\)"):
        pb.load_encoder(str(tmp_path / "g"))


def test_corrupt_safetensors(minilm, tmp_path):
    directory = minilm[0]
    target = tmp_path / "hf"
    target.mkdir()
    shutil.copy(os.path.join(directory, "config.json"), target)
    with open(os.path.join(directory, "model.safetensors"), "rb") as f:
        (target / "model.safetensors").write_bytes(f.read(4096))
    with pytest.raises(pb.CheckpointError, match="not a readable safetensors file"):
        pb.load_encoder(str(target))


def test_hf_checkpoint_with_bert_prefix_and_missing_tensor(minilm, tmp_path):
    directory = minilm[0]
    target = tmp_path / "hf"
    target.mkdir()
    shutil.copy(os.path.join(directory, "config.json"), target)
    weights = {f"bert.{k}": v for k, v in load_file(os.path.join(directory, "model.safetensors")).items()}
    del weights["bert.pooler.dense.bias"]
    save_file(weights, str(target / "model.safetensors"))
    with pytest.raises(pb.CheckpointError, match="bert/pooler/dense/bias' is missing"):
        pb.load_encoder(str(target))


def test_corrupt_google_checkpoint(minilm, tmp_path):
    _, tensors, config = minilm
    write_google_checkpoint(tmp_path / "g", tensors, config)
    data = next(p for p in (tmp_path / "g").iterdir() if ".data-" in p.name)
    data.write_bytes(data.read_bytes()[:1000])
    with pytest.raises(pb.CheckpointError, match="not a readable TF checkpoint"):
        pb.load_encoder(str(tmp_path / "g"))


def test_unknown_directory_layout(tmp_path):
    with pytest.raises(pb.CheckpointError, match="neither a Hugging Face checkpoint"):
        pb.load_encoder(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="neither a preset"):
        pb.load_encoder("no-such-model")
