"""`Servable`: one loaded SavedModel version, its signatures and its TF Serving metadata.

Signatures are read from the loaded SavedModel (`structured_input_signature` /
`structured_outputs`), so any model serves, not only ours. The metadata JSON is the
`SignatureDef` map of `saved_model.pb` as TF Serving prints it. For BERT-style integer inputs the
value ranges checked before TensorFlow runs come from the assets: `input_ids` below the line count
of `assets/vocab.txt`, `attention_mask` in {0, 1}, `token_type_ids` >= 0 (and below
`type_vocab_size` when an `assets/*.json` file gives it).
"""

import json
import os
import re
import threading
from dataclasses import dataclass

import numpy as np
import tensorflow as tf
from google.protobuf import json_format

from serving.convert import load_tflite_interpreter
from serving.errors import INVALID_ARGUMENT, ServingError, describe_exception
from serving.savedmodel import SERVING_SIGNATURE, TFLITE_FILE, import_tf_text, read_saved_model

# The tensorflow-text ops that `classify_text` signatures call; models without them serve anyway.
import_tf_text()


@dataclass(frozen=True)
class Signature:
    """A callable signature and its {name: tf.TensorSpec} inputs and outputs."""

    name: str
    fn: object
    inputs: dict
    outputs: dict


class CallStats:
    """Thread-safe count of TensorFlow calls and of the examples they ran."""

    def __init__(self):
        self._lock = threading.Lock()
        self.tf_calls = 0
        self.examples = 0

    def add(self, examples):
        with self._lock:
            self.tf_calls += 1
            self.examples += examples


class Servable:
    """One loaded version: its signatures, TF Serving metadata JSON and input value ranges.

    Raises on construction whatever loading raises (a corrupt or incomplete directory).
    """

    def __init__(self, model_name, version, path, stats=None, prefer_tflite=False):
        self.model_name, self.version, self.path = model_name, version, path
        self.stats = stats or CallStats()
        tflite = os.path.join(path, TFLITE_FILE)
        # TF Serving's --prefer_tflite_model: the version's model.tflite when there is one.
        self.runtime = "tflite" if prefer_tflite and os.path.isfile(tflite) else "saved_model"
        if self.runtime == "tflite":
            self.signatures = {SERVING_SIGNATURE: _tflite_signature(tflite)}
        else:
            self._loaded = tf.saved_model.load(path)
            self.signatures = {name: _signature(name, fn) for name, fn in self._loaded.signatures.items()}
        self.signature_defs = {name: d for name, d in _signature_defs_json(path, self.signatures).items()
                               if name in self.signatures}
        self.value_ranges = _value_ranges(path)

    def signature(self, name):
        if name not in self.signatures:
            raise ServingError(f'Serving signature name: "{name}" not found in signature def')
        return self.signatures[name]

    def run(self, signature_name, arrays):
        """{input: numpy} -> {output: numpy}; TensorFlow errors become 400 `ServingError`s."""
        signature = self.signature(signature_name)
        rows = next((a.shape[0] for a in arrays.values() if a.ndim), 1)
        self.stats.add(rows)
        try:
            feeds = {name: tf.constant(array, dtype=signature.inputs[name].dtype)
                     for name, array in arrays.items()}
            outputs = signature.fn(**feeds)
            return {name: np.asarray(tensor) for name, tensor in outputs.items()}
        except (tf.errors.OpError, ValueError, TypeError) as e:
            raise ServingError(f"{type(e).__name__}: {tf_error_message(e)}", INVALID_ARGUMENT)

    def metadata(self):
        """TF Serving's `GetModelMetadataResponse` as JSON."""
        return {"model_spec": {"name": self.model_name, "signature_name": "", "version": str(self.version)},
                "metadata": {"signature_def": {"signature_def": self.signature_defs}}}


# === Helpers ===

def tf_error_message(error):
    """The message of a TensorFlow error without node names, op names or Python stack frames."""
    text = getattr(error, "message", None) or str(error)
    kept = []
    for line in text.splitlines():
        if not line.strip() or line[:1].isspace():
            continue  # stack frames and `[[{{node ...}}]]` lines are indented
        if line.startswith(("Graph execution error", "Detected at node", "<stack traces")):
            continue
        kept.append(line)
    message = " ".join(kept) or type(error).__name__
    message = re.sub(r"\s*\[\[.*?\]\]|\s*\[Op:[^\]]*\]", "", message)
    return describe_exception(message)


def _signature(name, fn):
    _, kwargs = fn.structured_input_signature
    outputs = {key: tf.TensorSpec(value.shape, value.dtype, key) for key, value in fn.structured_outputs.items()}
    return Signature(name, fn, dict(kwargs), outputs)


def _tflite_signature(path):
    """`Signature` of a TFLite file's `serving_default`, run by LiteRT (one call at a time: an
    interpreter is not thread-safe)."""
    runner = load_tflite_interpreter(path).get_signature_runner(SERVING_SIGNATURE)
    lock = threading.Lock()

    def specs(details):
        return {name: tf.TensorSpec([None if d < 0 else int(d) for d in info["shape_signature"]],
                                    tf.as_dtype(info["dtype"]), name) for name, info in details.items()}

    def call(**feeds):
        with lock:
            return runner(**{name: np.asarray(value) for name, value in feeds.items()})
    return Signature(SERVING_SIGNATURE, call, specs(runner.get_input_details()),
                     specs(runner.get_output_details()))


def _signature_defs_json(path, signatures):
    """The SignatureDef map as TF Serving prints it (proto JSON, all fields, proto field names)."""
    try:
        defs = read_saved_model(path).meta_graphs[0].signature_def
        try:
            return {name: json_format.MessageToDict(sig, always_print_fields_with_no_presence=True,
                                                    preserving_proto_field_name=True)
                    for name, sig in defs.items()}
        except TypeError:  # protobuf < 5 names the option differently
            return {name: json_format.MessageToDict(sig, including_default_value_fields=True,
                                                    preserving_proto_field_name=True)
                    for name, sig in defs.items()}
    except Exception:  # fall back on what the loaded functions tell
        return {name: {"inputs": _specs_json(sig.inputs), "outputs": _specs_json(sig.outputs),
                       "method_name": "tensorflow/serving/predict"} for name, sig in signatures.items()}


def _specs_json(specs):
    def shape_json(shape):
        if shape.rank is None:
            return {"dim": [], "unknown_rank": True}
        return {"dim": [{"size": str(-1 if d is None else d), "name": ""} for d in shape.as_list()],
                "unknown_rank": False}

    from tensorflow.core.framework import types_pb2
    return {name: {"name": f"{name}:0", "dtype": types_pb2.DataType.Name(spec.dtype.as_datatype_enum),
                   "tensor_shape": shape_json(spec.shape)} for name, spec in specs.items()}


def _value_ranges(path):
    """{input name: (low, high or None, reason)} for BERT-style integer inputs, from the assets."""
    assets = os.path.join(path, "assets")
    ranges = {"attention_mask": (0, 2, "an attention mask is 0 or 1")}
    type_vocab = None
    if os.path.isdir(assets):
        for entry in sorted(os.listdir(assets)):
            if entry.endswith(".json"):
                try:
                    with open(os.path.join(assets, entry)) as f:
                        value = json.load(f)
                    type_vocab = type_vocab or (value.get("type_vocab_size") if isinstance(value, dict) else None)
                except (OSError, ValueError):
                    pass
    ranges["token_type_ids"] = (0, type_vocab if isinstance(type_vocab, int) else None,
                                "token type ids index the segment embeddings")
    vocab = os.path.join(assets, "vocab.txt")
    if os.path.isfile(vocab):
        with open(vocab, encoding="utf-8", errors="replace") as f:
            lines = f.read().split("\n")
        while lines and not lines[-1].strip():
            lines.pop()
        if lines:
            ranges["input_ids"] = (0, len(lines), f"the model's vocabulary has {len(lines)} tokens")
    return ranges
