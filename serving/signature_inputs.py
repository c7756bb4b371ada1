"""What a conversion reads of a SavedModel signature: its checked `SignatureDef`, its inputs, and
sample values for them. Shared by `serving.convert` and `serving.tftrt`.
"""

import os

import numpy as np

from serving.savedmodel import (DT_STRING, SERVING_SIGNATURE, SavedModelError, signature_defs,
                                version_dirs)


class ConversionError(ValueError):
    """The model cannot be converted or run as asked; the message says why and what to do."""


# === SavedModel checks (read saved_model.pb only: no TF graph is loaded) ===

def read_signature(saved_model_dir, signature=SERVING_SIGNATURE):
    """The `SignatureDef` proto of `signature`, after checking the directory is a SavedModel
    version whose `signature` takes numbers (TFLite, ONNX and TensorRT have no string ops)."""
    path = os.fspath(saved_model_dir)
    if not os.path.exists(path):
        raise ConversionError(f"{path} does not exist")
    if not os.path.isdir(path):
        raise ConversionError(f"{path} is not a directory; pass a SavedModel version directory")
    if not os.path.isfile(os.path.join(path, "saved_model.pb")):
        versions = sorted(version_dirs(path))
        if versions:
            raise ConversionError(f"{path} is a model base path, not a version; pass a version "
                                  f"directory such as {os.path.join(path, str(versions[-1]))}")
    try:
        signatures = signature_defs(path)
    except SavedModelError as err:
        raise ConversionError(str(err)) from None
    if signature not in signatures:
        raise ConversionError(f"{path} has no signature {signature!r}; it has {sorted(signatures)}")
    sig = signatures[signature]
    strings = [name for name, info in sig.inputs.items() if info.dtype == DT_STRING]
    if strings:
        raise ConversionError(
            f"signature {signature!r} takes strings ({', '.join(sorted(strings))}) and tokenizes "
            f"with tensorflow-text ops, which TFLite, ONNX and TensorRT lack; convert "
            f"{SERVING_SIGNATURE!r} (token ids) instead")
    return sig


def signature_inputs(saved_model_dir, signature=SERVING_SIGNATURE):
    """{input name: (numpy dtype, shape with None for unknown dims)} of `signature`."""
    import tensorflow as tf

    sig = read_signature(saved_model_dir, signature)
    return {name: (tf.dtypes.as_dtype(info.dtype).as_numpy_dtype,
                   tuple(None if d.size < 0 else d.size for d in info.tensor_shape.dim))
            for name, info in sorted(sig.inputs.items())}


def sample_inputs(saved_model_dir, batch_size=4, seed=0, signature=SERVING_SIGNATURE):
    """Random int32 ids with padded rows for `signature` (for `verify_conversion`).

    Ids stay below the vocabulary size (the export's `assets/vocab.txt`, else 100); each row has
    a random real length >= 2 starting with [CLS] (when the vocabulary has it), then zeros.
    """
    inputs = signature_inputs(saved_model_dir, signature)
    length = next(iter(inputs.values()))[1][-1] or 16
    vocab_path = os.path.join(saved_model_dir, "assets", "vocab.txt")
    vocab = []
    if os.path.isfile(vocab_path):
        with open(vocab_path, encoding="utf-8") as f:
            vocab = f.read().splitlines()
    rng = np.random.default_rng(seed)
    mask = (np.arange(length)[None, :] < rng.integers(2, length + 1, size=(batch_size, 1)))
    mask = mask.astype(np.int32)
    ids = rng.integers(1, len(vocab) or 100, size=(batch_size, length))
    if "[CLS]" in vocab:
        ids[:, 0] = vocab.index("[CLS]")
    values = {"input_ids": ids * mask, "attention_mask": mask, "token_type_ids": np.zeros_like(mask)}
    missing = sorted(set(inputs) - set(values))
    if missing:
        raise ConversionError(f"cannot make sample values for inputs {missing}; pass inputs")
    return {name: values[name].astype(dtype) for name, (dtype, _) in inputs.items()}
