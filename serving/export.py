"""SavedModel export in TF Serving's layout: `<base>/<version>/{saved_model.pb,variables/,assets/}`.

Two signatures:
- `serving_default`: int32 `input_ids`, `attention_mask`, `token_type_ids` of shape (batch, N) ->
  `logits` (batch, C), `probabilities` (batch, C), `label` (batch,) int32. Plain TF ops only, so TF
  Serving, TFLite and TensorRT can run it (hard extract needs the static N).
- `classify_text`: string `text` (batch,) (+ `text_b` for pair tasks) tokenized in the graph with
  tensorflow-text -> the same outputs plus `label_name` (batch,) string. Loading it needs
  `import tensorflow_text` (its ops are not in core TensorFlow).
Regression models (one output) give `logits` (batch, 1) and `score` (batch,) instead.
Multiple-choice models (`PowerBertMultipleChoice`, C options with the label names as answer
letters) take ids of shape (batch, C, N), and `classify_text` takes string `article` (batch,),
`question` (batch,) and `options` (batch, C); `logits` and `probabilities` are (batch, C), `label`
the chosen option and `label_name` its letter.
With `jit_compile=True`, `serving_default` is compiled by XLA on first call per batch size (TF
Serving runs it only with `--xla_cpu_compilation_enabled`; TF's Python runtime always does).

`assets/` holds `vocab.txt`, `labels.txt`, `retention.json` (null when the model keeps every
word vector) and `powerbert.json` (task, N, pair, labels, retention): what a server or converter
needs, readable without this package.

A version is written to a hidden temporary directory and renamed into place when complete, so a
server polling `<base>` never sees a half-written version (TF Serving ignores non-numeric names).
"""

import json
import os
import shutil
import tempfile

import tensorflow as tf

from powerbert_tf import PowerBertMultipleChoice
from powerbert_tf.encoder import INPUT_NAMES
from serving.savedmodel import METADATA_FILE, SERVING_SIGNATURE, TEXT_SIGNATURE, TFLITE_FILE, version_dirs



class ExportError(ValueError):
    """The export cannot be written as asked (existing version, bad base path, bad model)."""


def next_version(base):
    versions = version_dirs(base)
    return max(versions) + 1 if versions else 1


class _ServingFunctions:
    """Builds the two serving functions around the Keras classifier and the tokenizer."""

    def __init__(self, model, tokenizer, max_length, label_names, pair, jit_compile=False, dynamic_length=False):
        self.model, self.tokenizer = model, tokenizer
        self.max_length, self.pair, self.jit_compile = max_length, pair, jit_compile
        self.dynamic_length = dynamic_length
        self.choices = len(label_names) if isinstance(model, PowerBertMultipleChoice) else 0
        self.regression = model.num_classes == 1 and not self.choices
        self.label_names = tf.constant(list(label_names) if not self.regression else [""])

    def _outputs(self, inputs):
        logits = self.model(inputs, training=False)
        if self.regression:
            return {"logits": logits, "score": logits[:, 0]}
        return {"logits": logits, "probabilities": tf.nn.softmax(logits, axis=-1),
                "label": tf.argmax(logits, axis=-1, output_type=tf.int32)}

    def ids_signature(self):
        length = None if self.dynamic_length else self.max_length
        spec = tf.TensorSpec((None, self.choices, length) if self.choices else (None, length), tf.int32)

        @tf.function(input_signature=[spec, spec, spec], jit_compile=self.jit_compile)
        def serve(input_ids, attention_mask, token_type_ids):
            return self._outputs({"input_ids": input_ids, "attention_mask": attention_mask,
                                  "token_type_ids": token_type_ids})

        return serve

    def text_signature(self):
        spec = tf.TensorSpec((None,), tf.string)

        def classify(text, text_b=None):
            inputs = self.tokenizer(text, text_b, max_length=self.max_length)
            outputs = self._outputs(inputs)
            if not self.regression:
                outputs["label_name"] = tf.gather(self.label_names, outputs["label"])
            return outputs

        def answer(article, question, options):
            outputs = self._outputs(self.tokenizer.multiple_choice(article, question, options,
                                                                   max_length=self.max_length))
            outputs["label_name"] = tf.gather(self.label_names, outputs["label"])
            return outputs

        if self.choices:
            return tf.function(answer, input_signature=[spec, spec, tf.TensorSpec((None, self.choices), tf.string)])
        if self.pair:
            return tf.function(lambda text, text_b: classify(text, text_b), input_signature=[spec, spec])
        return tf.function(lambda text: classify(text), input_signature=[spec])


def _write_assets(directory, tokenizer, label_names, retention, metadata):
    with open(os.path.join(directory, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(tokenizer.vocab) + "\n")
    with open(os.path.join(directory, "labels.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(label_names) + "\n")
    with open(os.path.join(directory, "retention.json"), "w") as f:
        json.dump(retention, f, indent=2)
    with open(os.path.join(directory, METADATA_FILE), "w") as f:
        json.dump(metadata, f, indent=2, sort_keys=True)
    return [os.path.join(directory, name)
            for name in ("vocab.txt", "labels.txt", "retention.json", METADATA_FILE)]


def model_sequence_length(model):
    """N a `PowerBertClassifier` was built for (hard or soft extract), None for plain BERT."""
    encoder = model.encoder
    if encoder.retention is not None:
        return encoder.retention.sequence_length
    return encoder.sequence_length


def export_saved_model(model, tokenizer, *, base, label_names, max_length=None, task_name="",
                       pair=False, version=None, jit_compile=False, dynamic_length=False, tflite=None):
    """Write `model` as version `version` (default: next free) of `base`; returns the version dir.

    Args:
        model: a built `PowerBertClassifier` or `PowerBertMultipleChoice` (any elimination mode;
            soft mode is exported as is).
        tokenizer: the `BertTokenizer` of the model's vocabulary (built into `classify_text`).
        base: TF Serving's model base path; created if missing.
        max_length: N, the input length of `serving_default` (and the padding of `classify_text`).
            Default and only accepted value for a model with elimination: the model's own N
            (its hard extract ranks exactly N positions); required for plain BERT.
        label_names: one name per class (ignored for regression); for multiple choice, one answer
            letter per option (their number is the signatures' C).
        pair: the task classifies text pairs (`classify_text` takes `text` and `text_b`).
        version: positive int; an existing version is never overwritten.
        jit_compile: compile `serving_default` with XLA (`classify_text`'s string ops cannot be).
        dynamic_length: `serving_default` takes (batch, None) ids, for batches padded only to
            their longest input (a hard-extract model then keeps min(l_j, length) vectors).
        tflite: None, "float32" or "int8": also write `serving_default` as `model.tflite` in the
            version directory (int8: dynamic-range quantized weights), which TF Serving serves
            instead of the SavedModel when started with `--prefer_tflite_model`.

    Raises:
        ExportError: `version` exists or is not a positive int, `label_names` does not match,
            or `max_length` is missing or differs from the model's N.
    """
    own_length = model_sequence_length(model)
    if own_length is not None and max_length is not None and max_length != own_length:
        raise ExportError(f"the model was built for inputs of length N={own_length} (its retention "
                          f"configuration ranks N positions); it cannot be exported with max_length="
                          f"{max_length}. Export at N={own_length}")
    max_length = max_length or own_length
    if max_length is None:
        raise ExportError("a model without elimination needs max_length (the input length N)")
    if tflite not in (None, "float32", "int8"):
        raise ExportError(f"tflite must be None, 'float32' or 'int8', got {tflite!r}")
    multiple_choice = isinstance(model, PowerBertMultipleChoice)
    if not multiple_choice and model.num_classes != 1 and len(label_names) != model.num_classes:
        raise ExportError(f"{len(label_names)} label names for a model with {model.num_classes} classes")
    if multiple_choice and len(label_names) < 2:
        raise ExportError(f"a multiple-choice model needs one label name (answer letter) per option, "
                          f"got {list(label_names)}")
    retention = model.encoder.retention
    version = next_version(base) if version is None else version
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ExportError(f"version must be a positive integer, got {version!r}")
    target = os.path.join(base, str(version))
    if os.path.exists(target):
        raise ExportError(f"{target} exists; versions are never overwritten (omit --version for the next one)")
    os.makedirs(base, exist_ok=True)

    metadata = {"task": task_name, "max_length": max_length, "pair": pair,
                "num_classes": len(label_names) if multiple_choice else model.num_classes,
                "num_choices": len(label_names) if multiple_choice else 0, "label_names": list(label_names),
                "retention": list(retention.lengths) if retention else None,
                "input_names": list(INPUT_NAMES),
                "vocab_size": model.encoder.bert_config.vocab_size,
                "type_vocab_size": model.encoder.bert_config.type_vocab_size,
                "signatures": [SERVING_SIGNATURE, TEXT_SIGNATURE], "jit_compile": bool(jit_compile),
                "dynamic_length": bool(dynamic_length), "tflite": tflite,
                "lower_case": bool(tokenizer.lower_case)}
    staging = tempfile.mkdtemp(prefix=f".export-{version}-", dir=base)
    try:
        with tempfile.TemporaryDirectory() as asset_src:
            functions = _ServingFunctions(model, tokenizer, max_length, label_names, pair, jit_compile,
                                          dynamic_length)
            signatures = {SERVING_SIGNATURE: functions.ids_signature().get_concrete_function(),
                          TEXT_SIGNATURE: functions.text_signature().get_concrete_function()}
            # The root tracks the tf.Variables the signatures capture, not the Keras model: with
            # Keras 3 variables tracked instead, TFLiteConverter.from_saved_model cannot freeze
            # the weights and the converted model silently returns NaN.
            root = tf.Module()
            root.weights = list({id(v): v for f in signatures.values() for v in f.variables}.values())
            root.tokenizer, root.label_names = tokenizer, functions.label_names
            root.assets = [tf.saved_model.Asset(path) for path in _write_assets(
                asset_src, tokenizer, list(label_names), retention and retention.to_dict(), metadata)]
            tf.saved_model.save(root, staging, signatures=signatures)
        if tflite:
            from serving.convert import convert_tflite

            convert_tflite(staging, os.path.join(staging, TFLITE_FILE), int8=tflite == "int8")
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def read_metadata(version_dir):
    """The `powerbert.json` asset of an exported version."""
    path = os.path.join(version_dir, "assets", METADATA_FILE)
    if not os.path.isfile(path):
        raise ExportError(f"{version_dir} is not a powerbert-tf export (no assets/{METADATA_FILE})")
    with open(path) as f:
        return json.load(f)
