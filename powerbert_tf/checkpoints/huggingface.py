"""Hugging Face BERT checkpoints: `config.json` + `model.safetensors`, read without PyTorch."""

import os
import re

import numpy as np

from powerbert_tf.checkpoints.errors import CheckpointError
from powerbert_tf.checkpoints.variable_names import assign_weights, google_variable_map

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


def read_hf_safetensors(path):
    """Dict Google name -> float32 array from a HF `model.safetensors` file."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    if not os.path.isfile(path):
        raise CheckpointError(f"no safetensors file at {path}")
    try:
        raw = load_file(path)
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path} is not a readable safetensors file: {err}") from err
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
