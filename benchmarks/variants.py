"""What `powerbert bench` times: the variants, their input batches, their exports and runners.

A variant is a model (`bert` = the fine-tuned baseline, `power` = the re-trained hard-extract
model, `power-la` = the same weights with length-aware retention) run by one runtime:
- `saved_model`: `tf.saved_model.load(...).signatures["serving_default"]` of an export, through
  `serving.convert.load_runner` like the ONNX and TFLite files (what production runs);
- `keras`: the in-memory Keras model in a `tf.function` with an input signature;
- `xla`: the export's `serving_default` compiled by XLA (`export_saved_model(jit_compile=True)`,
  fixed shapes only: XLA compiles once per batch size);
- `onnx` / `tflite`: `serving.convert` conversions of the fixed-N SavedModel, run by
  onnxruntime (spinning off) and LiteRT.
- `tflite_int8`: the same TFLite conversion with int8 weights (dynamic-range quantization);
- peers (`benchmarks.peers`, built from the fine-tuned BERT): `ort_optimized` (ONNX Runtime with
  its transformer optimizer's fused kernels), `ort_int8` (that graph with int8 weights) and
  `torch_eager` (Hugging Face PyTorch). A missing optional package skips them, named in the report.
Fixed-shape variants pad every batch to N (`serving_default` of `serving.export` has shape
(batch, N)); dynamic ones sort the sentences by length and pad each batch only to its longest,
so their SavedModel is exported with `dynamic_length=True` (a (batch, None) signature).
"""

import dataclasses
import hashlib
import json
import os
import shutil
import time

import numpy as np

import powerbert_tf
import serving
from benchmarks import peers
from powerbert_tf.encoder import INPUT_NAMES


@dataclasses.dataclass(frozen=True)
class Variant:
    """One timed configuration. `id` is "<group>:<runtime>"; `item` the spec's item number."""

    id: str
    model: str  # "bert", "power" or "power-la"
    runtime: str  # "saved_model", "keras", "xla", "onnx", "tflite", "tflite_int8" or a peer runtime
    dynamic: bool  # sorted by length, each batch padded to its longest
    item: str
    description: str
    # Dynamic batches are padded to their longest input rounded up to this multiple (XLA compiles
    # once per shape, so its widths come in buckets; padding changes no answer, only the work).
    length_multiple: int = 1

    @property
    def group(self):
        return self.id.split(":")[0]

    @property
    def batching(self):
        """What decides this variant's batches: (dynamic, length multiple)."""
        return (self.dynamic, self.length_multiple if self.dynamic else 1)


VARIANTS = (
    Variant("bert-padded:saved_model", "bert", "saved_model", False, "1",
            "BERT padded to N (paper's baseline), exported serving_default"),
    Variant("bert-padded:keras", "bert", "keras", False, "1", "BERT padded to N, in-memory Keras"),
    Variant("bert-padded:xla", "bert", "xla", False, "7",
            "BERT padded to N, exported serving_default compiled with XLA (jit_compile)"),
    Variant("bert-dynamic:saved_model", "bert", "saved_model", True, "2",
            "BERT, length-sorted, batch padded to its longest; SavedModel (batch, None)"),
    Variant("bert-dynamic:keras", "bert", "keras", True, "2",
            "BERT, length-sorted, batch padded to its longest; in-memory Keras"),
    Variant("power:saved_model", "power", "saved_model", False, "3",
            "PoWER-BERT hard extract at N, exported serving_default"),
    Variant("power:keras", "power", "keras", False, "3", "PoWER-BERT hard extract at N, in-memory Keras"),
    Variant("power:xla", "power", "xla", False, "7",
            "PoWER-BERT at N, exported serving_default compiled with XLA (jit_compile)"),
    Variant("bert-padded:onnx", "bert", "onnx", False, "4", "BERT padded to N, ONNX / onnxruntime"),
    Variant("power:onnx", "power", "onnx", False, "5", "PoWER-BERT at N, ONNX / onnxruntime"),
    Variant("bert-padded:tflite", "bert", "tflite", False, "5",
            "BERT padded to N, TFLite / LiteRT (reference for power:tflite)"),
    Variant("power:tflite", "power", "tflite", False, "5", "PoWER-BERT at N, TFLite / LiteRT"),
    Variant("power-dynamic:saved_model", "power", "saved_model", True, "6",
            "PoWER-BERT keeping min(l_j, T), length-sorted dynamic padding; SavedModel (batch, None)"),
    Variant("power-dynamic:keras", "power", "keras", True, "6",
            "PoWER-BERT keeping min(l_j, T), length-sorted dynamic padding; in-memory Keras"),
    Variant("power-la-dynamic:saved_model", "power-la", "saved_model", True, "6",
            "length-aware PoWER-BERT (ceil(l_j*T/N)), length-sorted dynamic padding; SavedModel"),
    Variant("power-la-dynamic:keras", "power-la", "keras", True, "6",
            "length-aware PoWER-BERT, length-sorted dynamic padding; in-memory Keras"),
    Variant("bert-padded:tflite_int8", "bert", "tflite_int8", False, "9",
            "BERT padded to N, TFLite with int8 weights (reference for power:tflite_int8)"),
    Variant("power:tflite_int8", "power", "tflite_int8", False, "9",
            "PoWER-BERT at N, TFLite with int8 weights (dynamic-range quantization)"),
    Variant("bert-dynamic:xla", "bert", "xla", True, "7",
            "BERT, length-sorted dynamic padding rounded up to a multiple of 8, XLA (reference)",
            length_multiple=8),
    Variant("power-dynamic:xla", "power", "xla", True, "7",
            "PoWER-BERT, length-sorted dynamic padding rounded up to a multiple of 8, the (batch, "
            "None) export compiled by XLA once per width", length_multiple=8),
    Variant("bert-dynamic:tflite", "bert", "tflite", True, "5",
            "BERT, length-sorted dynamic padding, TFLite of the (batch, None) export (reference)"),
    Variant("power-dynamic:tflite", "power", "tflite", True, "5",
            "PoWER-BERT, length-sorted dynamic padding, TFLite of the (batch, None) export"),
    Variant("bert-dynamic:tflite_int8", "bert", "tflite_int8", True, "9",
            "BERT, length-sorted dynamic padding, TFLite with int8 weights (reference)"),
    Variant("power-dynamic:tflite_int8", "power", "tflite_int8", True, "9",
            "PoWER-BERT, length-sorted dynamic padding, TFLite with int8 weights"),
    Variant("peer-ort-padded:ort_optimized", "bert", "ort_optimized", False, "8",
            "peer: BERT padded to N, ONNX Runtime transformer-optimized graph (fused kernels)"),
    Variant("peer-ort-dynamic:ort_optimized", "bert", "ort_optimized", True, "8",
            "peer: BERT, length-sorted dynamic padding, ONNX Runtime transformer-optimized graph "
            "(the strongest float32 alternative)"),
    Variant("peer-ort-int8-dynamic:ort_int8", "bert", "ort_int8", True, "9",
            "peer: BERT, length-sorted dynamic padding, ONNX Runtime optimized graph with int8 "
            "weights (quantize_dynamic)"),
    Variant("peer-hf-dynamic:torch_eager", "bert", "torch_eager", True, "8",
            "peer: BERT, length-sorted dynamic padding, Hugging Face PyTorch eager"),
)
BY_ID = {v.id: v for v in VARIANTS}
# Quick: the TF SavedModel variants of items 1, 2, 3 and 6. ONNX is left out because the two
# tf2onnx conversions alone take 40-80 s of the 3-minute budget on 2 cores (add `--variants`).
# The strongest peer is in the quick set too (skipped when its packages are missing).
QUICK_VARIANTS = ("bert-padded:saved_model", "bert-dynamic:saved_model", "power:saved_model",
                  "power-dynamic:saved_model", "peer-ort-dynamic:ort_optimized")
# Speedup references: the spec's variants 1, 2 and 4, the SavedModel runtime preferred, and the
# strongest float32 and int8 peers.
REFERENCES = {"1": ("bert-padded:saved_model", "bert-padded:keras"),
              "2": ("bert-dynamic:saved_model", "bert-dynamic:keras"),
              "4": ("bert-padded:onnx",),
              "peer": ("peer-ort-dynamic:ort_optimized",),
              "peer-int8": ("peer-ort-int8-dynamic:ort_int8",)}


def select_variants(spec=None, quick=False):
    """Variants named by `spec` (comma-separated or a list): ids, groups, runtimes or item numbers.

    None selects all (quick: `QUICK_VARIANTS`). Raises ValueError naming an unknown name.
    """
    if spec is None:
        return [BY_ID[i] for i in QUICK_VARIANTS] if quick else list(VARIANTS)
    names = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    chosen = set()
    for name in names:
        hits = {v.id for v in VARIANTS if name in (v.id, v.group, v.runtime, v.item)}
        if not hits:
            raise ValueError(f"unknown variant {name!r}; use ids ({', '.join(BY_ID)}), groups, "
                             f"runtimes or item numbers 1-9")
        chosen |= hits
    return [v for v in VARIANTS if v.id in chosen]


def reference_ids(variants):
    """{"1"|"2"|"4": variant id} of the references present among `variants`."""
    present = {v.id for v in variants}
    refs = {}
    for label, candidates in REFERENCES.items():
        found = next((c for c in candidates if c in present), None)
        if found:
            refs[label] = found
    return refs


# === Batches ===

@dataclasses.dataclass
class Batches:
    """Pre-sliced int32 inputs of one pass, the example indices of each batch and its (B, T)."""

    inputs: list
    indices: list
    shapes: list

    def distinct_shape_batches(self):
        """Index of the first batch of every distinct shape (what a warm-up must call)."""
        seen, first = set(), []
        for i, shape in enumerate(self.shapes):
            if shape not in seen:
                seen.add(shape)
                first.append(i)
        return first


def make_batches(features, batch_size, dynamic, length_multiple=1):
    """Split (n, N) features into batches; `dynamic`: sort by length, trim each to its longest
    (rounded up to `length_multiple`, at most N).

    The sort is stable, so equal lengths keep file order; fixed batches keep file order.
    """
    lengths = features["attention_mask"].sum(axis=1)
    n = lengths.shape[0]
    order = np.argsort(lengths, kind="stable") if dynamic else np.arange(n)
    batches = Batches([], [], [])
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size]
        full = features["input_ids"].shape[1]
        width = min(-(-int(lengths[idx].max()) // length_multiple) * length_multiple, full) if dynamic else full
        batches.inputs.append({name: np.ascontiguousarray(features[name][idx, :width], np.int32)
                               for name in INPUT_NAMES})
        batches.indices.append(idx)
        batches.shapes.append((len(idx), width))
    return batches


# === Exports (cached under one directory, keyed on the source models) ===

def code_fingerprint():
    """sha256 of the sources that shape an export (`powerbert_tf`, `serving`): a cached export
    made by other code is made again."""
    digest = hashlib.sha256()
    for package in (powerbert_tf, serving):
        root = os.path.dirname(package.__file__)
        for folder, _, files in sorted(os.walk(root)):
            for name in sorted(f for f in files if f.endswith(".py")):
                path = os.path.join(folder, name)
                digest.update(os.path.relpath(path, root).encode())
                with open(path, "rb") as f:
                    digest.update(f.read())
    return digest.hexdigest()


_ARTIFACTS = {  # artifact -> (model, or for conversions the artifact converted, kind)
    "bert": ("bert", "saved_model"), "power": ("power", "saved_model"),
    "bert-xla": ("bert", "xla_saved_model"), "power-xla": ("power", "xla_saved_model"),
    "bert-dynamic": ("bert", "dynamic_saved_model"), "power-dynamic": ("power", "dynamic_saved_model"),
    "bert-dynamic-xla": ("bert", "xla_dynamic_saved_model"), "power-dynamic-xla": ("power", "xla_dynamic_saved_model"),
    "power-la-dynamic": ("power-la", "dynamic_saved_model"),
    "bert.onnx": ("bert", "onnx"), "power.onnx": ("power", "onnx"),
    "bert.tflite": ("bert", "tflite"), "power.tflite": ("power", "tflite"),
    "bert.int8.tflite": ("bert", "tflite_int8"), "power.int8.tflite": ("power", "tflite_int8"),
    "bert-dynamic.tflite": ("bert-dynamic", "tflite"), "power-dynamic.tflite": ("power-dynamic", "tflite"),
    "bert-dynamic.int8.tflite": ("bert-dynamic", "tflite_int8"),
    "power-dynamic.int8.tflite": ("power-dynamic", "tflite_int8"),
    "bert.ort-optimized.onnx": ("bert", "ort_optimized"), "bert.ort-int8.onnx": ("bert", "ort_int8"),
}
_SAVED_MODEL_KINDS = ("saved_model", "xla_saved_model", "dynamic_saved_model", "xla_dynamic_saved_model")
_RUNTIME_FILE = {"tflite_int8": "int8.tflite", "ort_optimized": "ort-optimized.onnx", "ort_int8": "ort-int8.onnx"}


def artifact_for(variant):
    """The cached artifact a variant runs (None: in-memory models, `keras` and `torch_eager`)."""
    if variant.runtime in ("keras", "torch_eager"):
        return None
    if variant.runtime == "saved_model":
        return f"{variant.group}" if variant.dynamic else variant.model
    if variant.runtime == "xla":
        return f"{variant.group if variant.dynamic else variant.model}-xla"
    source = variant.group if variant.dynamic and variant.runtime.startswith("tflite") else variant.model
    return f"{source}.{_RUNTIME_FILE.get(variant.runtime, variant.runtime)}"


class Exports:
    """Creates (or reuses) the exported and converted models the variants need.

    `directory/fingerprint.json` records the size and mtime of the source `.keras` files, the
    retention and `code_fingerprint()`; when they change, the cached artifacts are deleted and
    made again.
    `seconds[artifact]` is how long each took to make; `reused` lists those found in the cache.
    """

    def __init__(self, directory, models, fingerprint, log=print):
        self.directory, self.models, self.log = directory, models, log
        self.seconds, self.reused = {}, []
        os.makedirs(directory, exist_ok=True)
        marker = os.path.join(directory, "fingerprint.json")
        old = None
        if os.path.isfile(marker):
            with open(marker) as f:
                old = json.load(f)
        fingerprint = dict(fingerprint, code=code_fingerprint())
        if old != fingerprint:
            for name in _ARTIFACTS:
                path = os.path.join(directory, name)
                if os.path.isdir(path):
                    shutil.rmtree(path)
                elif os.path.exists(path):
                    os.remove(path)
            with open(marker, "w") as f:
                json.dump(fingerprint, f, indent=2)

    def path(self, artifact):
        model, kind = _ARTIFACTS[artifact]
        target = os.path.join(self.directory, artifact)
        if kind in _SAVED_MODEL_KINDS:
            target = os.path.join(target, "1")
        if os.path.exists(target):
            if artifact not in self.seconds and artifact not in self.reused:
                self.reused.append(artifact)
            return target
        started = time.perf_counter()
        self.log(f"  making {artifact} ({kind}) ...")
        if kind in _SAVED_MODEL_KINDS:
            self.models.export(model, os.path.dirname(target), jit_compile=kind.startswith("xla"),
                               dynamic_length="dynamic" in kind)
        elif kind == "ort_optimized":
            peers.export_ort_optimized(self.models.get(model), target)
        elif kind == "ort_int8":
            peers.quantize_int8(self.path(f"{model}.ort-optimized.onnx"), target)
        else:
            from serving import convert

            source = self.path(model)
            if kind == "onnx":
                convert.convert_onnx(source, target)
            else:
                convert.convert_tflite(source, target, int8=kind == "tflite_int8")
        self.seconds[artifact] = time.perf_counter() - started
        return target


# === Runners: batch dict of int32 arrays -> logits (numpy) ===

def make_runner(variant, models, exports, threads):
    """A callable timing code can call on a batch; it returns the logits as a numpy array."""
    if variant.runtime == "keras":
        from benchmarks.timing import keras_runner

        return keras_runner(models.get(variant.model), None if variant.dynamic else models.max_length)
    if variant.runtime == "torch_eager":
        return peers.torch_runner(models.get(variant.model), threads)
    if variant.runtime in peers.PEER_KINDS:
        return peers.ort_runner(exports.path(artifact_for(variant)), threads)
    from serving.convert import load_runner

    runner = load_runner(exports.path(artifact_for(variant)), num_threads=threads)
    return lambda batch: runner(batch)["logits"]
