"""SavedModel export in TF Serving's layout: `<base>/<version>/{saved_model.pb,variables/,assets/}`.

Two signatures:
- `serving_default`: int32 `input_ids`, `attention_mask`, `token_type_ids` of shape (batch, N) ->
  `logits` (batch, C), `probabilities` (batch, C), `label` (batch,) int32. Plain TF ops only, so TF
  Serving, TFLite and TensorRT can run it (hard extract needs the static N).
- `classify_text`: string `text` (batch,) (+ `text_b` for pair tasks) tokenized in the graph with
  tensorflow-text -> the same outputs plus `label_name` (batch,) string. Loading it needs
  `import tensorflow_text` (its ops are not in core TensorFlow).
Regression models (one output) give `logits` (batch, 1) and `score` (batch,) instead.
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

from powerbert_tf.encoder import INPUT_NAMES

SERVING_SIGNATURE = "serving_default"
TEXT_SIGNATURE = "classify_text"
METADATA_FILE = "powerbert.json"


class ExportError(ValueError):
    """The export cannot be written as asked (existing version, bad base path, bad model)."""


def version_dirs(base):
    """{version int: path} of the numeric sub-directories of `base` (TF Serving's rule)."""
    if not os.path.isdir(base):
        return {}
    return {int(name): os.path.join(base, name) for name in os.listdir(base)
            if name.isdigit() and os.path.isdir(os.path.join(base, name))}


def next_version(base):
    versions = version_dirs(base)
    return max(versions) + 1 if versions else 1


class _ServingFunctions:
    """Builds the two serving functions around the Keras classifier and the tokenizer."""

    def __init__(self, model, tokenizer, max_length, label_names, pair, jit_compile=False):
        self.model, self.tokenizer = model, tokenizer
        self.max_length, self.pair, self.jit_compile = max_length, pair, jit_compile
        self.regression = model.num_classes == 1
        self.label_names = tf.constant(list(label_names) if not self.regression else [""])

    def _outputs(self, inputs):
        logits = self.model(inputs, training=False)
        if self.regression:
            return {"logits": logits, "score": logits[:, 0]}
        return {"logits": logits, "probabilities": tf.nn.softmax(logits, axis=-1),
                "label": tf.argmax(logits, axis=-1, output_type=tf.int32)}

    def ids_signature(self):
        spec = tf.TensorSpec((None, self.max_length), tf.int32)

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


def export_saved_model(model, tokenizer, *, base, max_length, label_names, task_name="",
                       pair=False, version=None, jit_compile=False):
    """Write `model` as version `version` (default: next free) of `base`; returns the version dir.

    Args:
        model: a built `PowerBertClassifier` (any elimination mode; soft mode is exported as is).
        tokenizer: the `BertTokenizer` of the model's vocabulary (built into `classify_text`).
        base: TF Serving's model base path; created if missing.
        max_length: N, the fixed input length of `serving_default`.
        label_names: one name per class (ignored for regression).
        pair: the task classifies text pairs (`classify_text` takes `text` and `text_b`).
        version: positive int; an existing version is never overwritten.
        jit_compile: compile `serving_default` with XLA (`classify_text`'s string ops cannot be).

    Raises:
        ExportError: `version` exists or is not a positive int, or `label_names` does not match.
    """
    if model.num_classes != 1 and len(label_names) != model.num_classes:
        raise ExportError(f"{len(label_names)} label names for a model with {model.num_classes} classes")
    retention = model.encoder.retention
    version = next_version(base) if version is None else version
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ExportError(f"version must be a positive integer, got {version!r}")
    target = os.path.join(base, str(version))
    if os.path.exists(target):
        raise ExportError(f"{target} exists; versions are never overwritten (omit --version for the next one)")
    os.makedirs(base, exist_ok=True)

    metadata = {"task": task_name, "max_length": max_length, "pair": pair,
                "num_classes": model.num_classes, "label_names": list(label_names),
                "retention": list(retention.lengths) if retention else None,
                "input_names": list(INPUT_NAMES),
                "vocab_size": model.encoder.bert_config.vocab_size,
                "type_vocab_size": model.encoder.bert_config.type_vocab_size,
                "signatures": [SERVING_SIGNATURE, TEXT_SIGNATURE], "jit_compile": bool(jit_compile)}
    staging = tempfile.mkdtemp(prefix=f".export-{version}-", dir=base)
    try:
        with tempfile.TemporaryDirectory() as asset_src:
            functions = _ServingFunctions(model, tokenizer, max_length, label_names, pair, jit_compile)
            signatures = {SERVING_SIGNATURE: functions.ids_signature().get_concrete_function(),
                          TEXT_SIGNATURE: functions.text_signature().get_concrete_function()}
            # The root tracks the tf.Variables the signatures capture, not the Keras model: with
            # Keras 3 variables tracked instead, TFLiteConverter.from_saved_model cannot freeze
            # the weights and the converted model silently returns NaN.
            root = tf.Module()
            root.weights = list({id(v): v for f in signatures.values() for v in f.variables}.values())
            root.tokenizer, root.label_names = tokenizer, functions.label_names
            root.assets = [tf.saved_model.Asset(path) for path in _write_assets(
                asset_src, tokenizer, list(label_names), metadata["retention"] and {
                    "lengths": metadata["retention"], "sequence_length": max_length}, metadata)]
            tf.saved_model.save(root, staging, signatures=signatures)
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


def export_run(source, base, version=None, *, init=None, task=None, max_length=None, jit_compile=False):
    """Export a run directory's final model (re-trained, else fine-tuned) or a `.keras` file.

    A run directory supplies the task, N and the pretrained vocabulary from its `config.json`;
    for a bare `.keras` file pass `task` and `init` (and `max_length`, default the task's N).
    """
    import keras

    from powerbert_tf.loading import load_tokenizer
    from training.tasks import get_task

    if os.path.isdir(source):
        config_path = os.path.join(source, "config.json")
        if not os.path.isfile(config_path):
            raise ExportError(f"{source} is not a run directory (no config.json)")
        with open(config_path) as f:
            config = json.load(f)
        candidates = [os.path.join(source, step, "model.keras") for step in ("retrain", "finetune")]
        model_path = next((p for p in candidates if os.path.isfile(p)), None)
        if model_path is None:
            raise ExportError(f"{source} has no finished model yet (retrain/ or finetune/model.keras)")
        task, init = task or config["task"], init or config["init"]
        max_length = max_length or config["max_length"]
    elif source.endswith(".keras") and os.path.isfile(source):
        if task is None or init is None:
            raise ExportError("exporting a .keras file needs --task and --init (for labels and vocabulary)")
        model_path = source
    else:
        raise ExportError(f"{source} is neither a run directory nor a .keras file")
    spec = get_task(task)
    model = keras.saving.load_model(model_path, compile=False)  # inference only: no optimizer
    return export_saved_model(
        model, load_tokenizer(init), base=base, max_length=max_length or spec.max_length,
        label_names=spec.label_names, task_name=spec.name, pair=spec.is_pair,
        version=version, jit_compile=jit_compile)


def non_core_ops(version_dir):
    """Sorted op types in the SavedModel that core TensorFlow does not define (TF-Text's).

    A serving binary must link these ops to load the model (the stock `tensorflow/serving`
    binary links tensorflow-text's op library; see the README). `tf.raw_ops` lists exactly the
    core ops; ops loaded from a custom-op library are registered but never added to it.
    """
    from tensorflow.core.protobuf import saved_model_pb2

    with open(os.path.join(version_dir, "saved_model.pb"), "rb") as f:
        saved = saved_model_pb2.SavedModel.FromString(f.read())
    ops = set()
    for graph in saved.meta_graphs:
        ops.update(node.op for node in graph.graph_def.node)
        for function in graph.graph_def.library.function:
            ops.update(node.op for node in function.node_def)
    return sorted(op for op in ops if not hasattr(tf.raw_ops, op))
