"""Hugging Face BERT checkpoints: `config.json` + `model.safetensors`, read without PyTorch."""

import json
import os
import re

import numpy as np

from powerbert_tf.bert_config import BertConfig
from powerbert_tf.checkpoints.bert_weights import VOCAB_FILE, BertWeights, read_vocab, write_tokenizer_files
from powerbert_tf.checkpoints.errors import CheckpointError
from powerbert_tf.checkpoints.variable_names import assign_weights, google_variable_map

CONFIG_FILE, WEIGHTS_FILE = "config.json", "model.safetensors"
# `BertForSequenceClassification`'s head, an `nn.Linear` on the pooled output.
_HEAD_WEIGHT, _HEAD_BIAS = "classifier.weight", "classifier.bias"

_PREFIXES = ("bert.", "model.")
_LAYER = re.compile(r"^encoder\.layer\.(\d+)\.")


def hf_to_google_name(name):
    """Map a HF `BertModel` tensor name to Google's name, or None for tensors we do not use.

    Returns `(google_name, transpose)`: HF stores `nn.Linear` weights as (out, in).
    """
    for prefix in _PREFIXES:
        if name.startswith(prefix):
            name = name[len(prefix):]
    if not name.startswith(("embeddings.", "encoder.", "pooler.")) or name.endswith("position_ids"):
        return None
    path = _LAYER.sub(lambda m: f"encoder.layer_{m.group(1)}.", name).replace(".", "/")
    leaf = path.rsplit("/", 1)[-1]
    if "LayerNorm" in path:
        path = path[: -len(leaf)] + {"weight": "gamma", "bias": "beta"}.get(leaf, leaf)
        return "bert/" + path, False
    if path.startswith("embeddings/") and leaf == "weight":
        return "bert/" + path[: -len("/weight")], False
    if leaf == "weight":
        return "bert/" + path[: -len("weight")] + "kernel", True
    return "bert/" + path, False


def _load_safetensors(path):
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    if not os.path.isfile(path):
        raise CheckpointError(f"no safetensors file at {path}")
    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path} is not a readable safetensors file: {err}") from err


def read_hf_safetensors(path, raw=None):
    """Dict Google name -> float32 array from a HF `model.safetensors` file (pretraining heads
    and the classifier head are left out)."""
    raw = _load_safetensors(path) if raw is None else raw
    tensors = {}
    for name, value in raw.items():
        mapped = hf_to_google_name(name)
        if mapped is not None:
            google_name, transpose = mapped
            tensors[google_name] = np.asarray(value.T if transpose else value, dtype=np.float32)
    return tensors


def load_hf_safetensors(encoder, path):
    """Load a HF BERT `model.safetensors` into a built `PowerBertEncoder`."""
    assign_weights(encoder, read_hf_safetensors(path), source=path)


def google_to_hf_name(google_name):
    """Inverse of `hf_to_google_name`: `(hf_name, transpose)` under `BertModel`'s names."""
    path = google_name[len("bert/"):]
    leaf = path.rsplit("/", 1)[-1]
    path = re.sub(r"^encoder/layer_(\d+)/", lambda m: f"encoder/layer/{m.group(1)}/", path)
    if "LayerNorm" in path:
        return path[: -len(leaf)].replace("/", ".") + {"gamma": "weight", "beta": "bias"}[leaf], False
    if path.startswith("embeddings/") and "/" not in path[len("embeddings/"):]:
        return path.replace("/", ".") + ".weight", False
    if leaf == "kernel":
        return path[: -len("kernel")].replace("/", ".") + "weight", True
    return path.replace("/", "."), False


def hf_state_dict(encoder, prefix="bert."):
    """Dict HF tensor name -> float32 array of a `PowerBertEncoder`'s weights (`nn.Linear`
    weights as (out, in)), the names `BertModel` (or, with `prefix`, `BertFor*`) loads."""
    tensors = {}
    for google_name, variable in google_variable_map(encoder).items():
        name, transpose = google_to_hf_name(google_name)
        value = variable.numpy().astype(np.float32)
        tensors[prefix + name] = np.ascontiguousarray(value.T if transpose else value)
    return tensors


def read_hf_directory(directory):
    """`BertWeights` of a HF `BertModel` / `BertForSequenceClassification` directory
    (`config.json`, `model.safetensors`, `vocab.txt`, optional `tokenizer_config.json`).

    The classifier head, its labels (`id2label`, unless they are HF's placeholders `LABEL_0`...)
    and the vocabulary come along when present.
    """
    config_path = os.path.join(directory, CONFIG_FILE)
    if not os.path.isfile(config_path):
        raise CheckpointError(f"{directory} has no {CONFIG_FILE} (not a Hugging Face model directory)")
    weights_path = os.path.join(directory, WEIGHTS_FILE)
    raw = _load_safetensors(weights_path)
    with open(config_path) as f:
        hf_config = json.load(f)
    kernel = bias = None
    if _HEAD_WEIGHT in raw:
        kernel = np.asarray(raw[_HEAD_WEIGHT], np.float32).T
        bias = np.asarray(raw[_HEAD_BIAS], np.float32)
    labels = [hf_config.get("id2label", {}).get(str(i)) for i in range(0 if kernel is None else kernel.shape[1])]
    placeholders = [f"LABEL_{i}" for i in range(len(labels))]
    vocab_path = os.path.join(directory, VOCAB_FILE)
    from powerbert_tf.tokenizer import read_lower_case

    return BertWeights(
        BertConfig.from_dict(hf_config), read_hf_safetensors(weights_path, raw), kernel, bias,
        vocab=read_vocab(vocab_path) if os.path.isfile(vocab_path) else None,
        lower_case=read_lower_case(directory),
        label_names=tuple(labels) if labels and None not in labels and labels != placeholders else None,
        source=weights_path).check()


def save_hf_directory(weights: BertWeights, directory):
    """Write `weights` as a HF `BertForSequenceClassification` directory (`BertModel` without a
    head) that `transformers` loads with `from_pretrained(directory)`."""
    from safetensors.numpy import save_file

    from powerbert_tf.checkpoints.variable_names import expected_shapes

    weights.check()
    with_head = weights.has_head
    prefix = "bert." if with_head else ""
    tensors = {}
    for google_name in expected_shapes(weights.config):
        name, transpose = google_to_hf_name(google_name)
        value = weights.tensors[google_name]
        tensors[prefix + name] = np.ascontiguousarray(value.T if transpose else value, np.float32)
    c = weights.config
    hf_config = {"model_type": "bert", "vocab_size": c.vocab_size, "hidden_size": c.hidden_size,
                 "num_hidden_layers": c.num_hidden_layers, "num_attention_heads": c.num_attention_heads,
                 "intermediate_size": c.intermediate_size, "hidden_act": c.hidden_act,
                 "hidden_dropout_prob": c.hidden_dropout_prob,
                 "attention_probs_dropout_prob": c.attention_probs_dropout_prob,
                 "max_position_embeddings": c.max_position_embeddings, "type_vocab_size": c.type_vocab_size,
                 "initializer_range": c.initializer_range, "layer_norm_eps": c.layer_norm_eps}
    if with_head:
        tensors[_HEAD_WEIGHT] = np.ascontiguousarray(weights.head_kernel.T, np.float32)
        tensors[_HEAD_BIAS] = np.asarray(weights.head_bias, np.float32)
        labels = weights.label_names or tuple(f"LABEL_{i}" for i in range(weights.num_classes))
        hf_config.update(architectures=["BertForSequenceClassification"],
                         id2label={str(i): name for i, name in enumerate(labels)},
                         label2id={name: i for i, name in enumerate(labels)},
                         problem_type="regression" if weights.num_classes == 1 else "single_label_classification")
    else:
        hf_config["architectures"] = ["BertModel"]
    os.makedirs(directory, exist_ok=True)
    save_file(tensors, os.path.join(directory, WEIGHTS_FILE), metadata={"format": "pt"})
    with open(os.path.join(directory, CONFIG_FILE), "w") as f:
        json.dump(hf_config, f, indent=2)
    if weights.vocab is not None:
        write_tokenizer_files(directory, weights)
    return directory
