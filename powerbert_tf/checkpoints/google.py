"""Google's original BERT TF checkpoints (`bert_config.json` + `bert_model.ckpt.*`)."""

import json
import os
import shutil

import numpy as np
import tensorflow as tf

from powerbert_tf.bert_config import BertConfig
from powerbert_tf.checkpoints.bert_weights import VOCAB_FILE, BertWeights, read_vocab
from powerbert_tf.checkpoints.errors import CheckpointError
from powerbert_tf.checkpoints.tf_checkpoint import CheckpointFile, checkpoint_prefix
from powerbert_tf.checkpoints.variable_names import assign_weights, google_variable_map

CHECKPOINT_PREFIX = "bert_model.ckpt"
CONFIG_FILE = "bert_config.json"
# run_classifier.py's head: `output_weights` is (num_labels, hidden), the transpose of a Dense kernel.
_HEAD_WEIGHTS, _HEAD_BIAS = "output_weights", "output_bias"


def read_google_checkpoint(path, names):
    """Dict name -> array for `names` found in the checkpoint (missing names are left out)."""
    checkpoint = CheckpointFile(checkpoint_prefix(path, CHECKPOINT_PREFIX))
    return {name: checkpoint.tensor(name) for name in names if name in checkpoint.shapes}


def load_google_checkpoint(encoder, path):
    """Load Google BERT checkpoint variables (`bert/encoder/layer_0/...`) into a built encoder."""
    names = google_variable_map(encoder)
    assign_weights(encoder, read_google_checkpoint(path, names), source=checkpoint_prefix(path, CHECKPOINT_PREFIX))


def save_google_checkpoint(encoder, directory, vocab_path=None):
    """Write an encoder as a Google-format BERT checkpoint directory (`save_google_directory`),
    with a copy of `vocab_path` when given."""
    tensors = {name: v.numpy() for name, v in google_variable_map(encoder).items()}
    save_google_directory(BertWeights(encoder.bert_config, tensors, source=f"encoder {encoder.name!r}"), directory)
    if vocab_path:
        shutil.copy(vocab_path, os.path.join(directory, VOCAB_FILE))


def _is_training_state(name):
    """Optimizer slots and step counters that Google's checkpoints carry beside the model."""
    return name == "global_step" or name.endswith(("/adam_m", "/adam_v")) or name.startswith("cls/")


def read_google_directory(directory, checkpoint=None):
    """`BertWeights` of a Google BERT directory (`bert_config.json`, `bert_model.ckpt.*` or the
    latest checkpoint there, `vocab.txt`), with `run_classifier.py`'s head when present.

    Variables under `bert/` that a BERT of the config does not have are reported (named);
    pretraining heads (`cls/`), optimizer slots and `global_step` are skipped.
    """
    config_path = os.path.join(directory, CONFIG_FILE)
    if not os.path.isfile(config_path):
        raise CheckpointError(f"{directory} has no {CONFIG_FILE} (not a Google BERT directory)")
    prefix = checkpoint_prefix(checkpoint or directory, CHECKPOINT_PREFIX)
    reader = CheckpointFile(prefix)
    names = sorted(reader.shapes)
    tensors, unknown = {}, []
    for name in names:
        if name.startswith("bert/") and not _is_training_state(name):
            tensors[name] = reader.tensor(name)
        elif not _is_training_state(name) and name not in (_HEAD_WEIGHTS, _HEAD_BIAS):
            unknown.append(name)
    if unknown:
        raise CheckpointError(f"{prefix}: unexpected variable {unknown[0]!r} ({len(unknown)} outside bert/ that "
                              f"are neither run_classifier.py's head nor training state; first few: {unknown[:5]})")
    kernel = bias = None
    if _HEAD_WEIGHTS in names:
        kernel, bias = reader.tensor(_HEAD_WEIGHTS).T, reader.tensor(_HEAD_BIAS)
    from powerbert_tf.tokenizer import read_lower_case

    vocab_path = os.path.join(directory, VOCAB_FILE)
    return BertWeights(BertConfig.from_json_file(config_path), tensors, kernel, bias,
                       vocab=read_vocab(vocab_path) if os.path.isfile(vocab_path) else None,
                       lower_case=read_lower_case(directory), source=prefix).check()


def save_google_directory(weights: BertWeights, directory):
    """Write `weights` as a Google BERT directory that `load_encoder`, `load_tokenizer` and
    `read_google_directory` read: `bert_model.ckpt.*` (a TF1 name-based checkpoint, written with
    the `SaveV2` op; the head as `run_classifier.py` names it), `bert_config.json` and, with a
    vocabulary, `vocab.txt` and `tokenizer_config.json`."""
    import tensorflow as tf

    from powerbert_tf.checkpoints.bert_weights import write_tokenizer_files

    weights.check()
    tensors = dict(weights.tensors)
    if weights.has_head:
        tensors[_HEAD_WEIGHTS] = weights.head_kernel.T
        tensors[_HEAD_BIAS] = weights.head_bias
    names = sorted(tensors)
    os.makedirs(directory, exist_ok=True)
    tf.raw_ops.SaveV2(prefix=os.path.join(directory, CHECKPOINT_PREFIX), tensor_names=names,
                      shape_and_slices=[""] * len(names),
                      tensors=[tf.constant(np.asarray(tensors[n], np.float32)) for n in names])
    with open(os.path.join(directory, CONFIG_FILE), "w") as f:
        json.dump(weights.config.to_dict(), f, indent=2)
    if weights.vocab is not None:
        write_tokenizer_files(directory, weights)
    return directory
