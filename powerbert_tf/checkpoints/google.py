"""Google's original BERT TF checkpoints (`bert_config.json` + `bert_model.ckpt.*`)."""

import json
import os
import shutil

import numpy as np
import tensorflow as tf

from powerbert_tf.checkpoints.errors import CheckpointError
from powerbert_tf.checkpoints.variable_names import assign_weights, google_variable_map

CHECKPOINT_PREFIX = "bert_model.ckpt"


def _checkpoint_prefix(path):
    """Accept a directory holding `bert_model.ckpt.index` or a checkpoint prefix."""
    if os.path.isdir(path):
        found = tf.train.latest_checkpoint(path)
        prefix = os.path.join(path, CHECKPOINT_PREFIX)
        if os.path.exists(prefix + ".index"):
            return prefix
        if found:
            return found
        raise CheckpointError(f"no {CHECKPOINT_PREFIX}.index (or other TF checkpoint) in {path}")
    if os.path.exists(path + ".index"):
        return path
    raise CheckpointError(f"no TF checkpoint at {path} (expected {path}.index)")


def read_google_checkpoint(path, names):
    """Dict name -> array for `names` found in the checkpoint (missing names are left out)."""
    prefix = _checkpoint_prefix(path)
    try:
        reader = tf.train.load_checkpoint(prefix)
        available = reader.get_variable_to_shape_map()
        return {name: np.asarray(reader.get_tensor(name), dtype=np.float32)
                for name in names if name in available}
    except (tf.errors.OpError, ValueError, IndexError, RuntimeError) as err:
        raise CheckpointError(f"{prefix} is not a readable TF checkpoint: {err.__class__.__name__}: "
                              f"{getattr(err, 'message', err)}") from err


def load_google_checkpoint(encoder, path):
    """Load Google BERT checkpoint variables (`bert/encoder/layer_0/...`) into a built encoder."""
    names = google_variable_map(encoder)
    assign_weights(encoder, read_google_checkpoint(path, names), source=_checkpoint_prefix(path))


def save_google_checkpoint(encoder, directory, vocab_path=None):
    """Write the encoder as a Google-format BERT checkpoint directory.

    Writes `bert_model.ckpt.{index,data-00000-of-00001}` with Google's variable names (a TF1
    name-based checkpoint, via the `SaveV2` op), `bert_config.json` and, if given, `vocab.txt`.
    """
    os.makedirs(directory, exist_ok=True)
    variables = google_variable_map(encoder)
    names = sorted(variables)
    tf.raw_ops.SaveV2(prefix=os.path.join(directory, CHECKPOINT_PREFIX),
                      tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=[tf.convert_to_tensor(variables[n]) for n in names])
    with open(os.path.join(directory, "bert_config.json"), "w") as f:
        json.dump(encoder.bert_config.to_dict(), f, indent=2)
    if vocab_path:
        shutil.copy(vocab_path, os.path.join(directory, "vocab.txt"))
