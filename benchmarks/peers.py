"""The deployments a user could pick instead of PoWER-BERT, built from the run's fine-tuned BERT.

- `torch_eager`: Hugging Face `BertForSequenceClassification` in PyTorch (eager attention), the
  fine-tuned weights copied in (`powerbert_tf.checkpoints.huggingface.hf_state_dict`).
- `ort_optimized`: that model exported to ONNX (TorchScript exporter, dynamic batch and length)
  and rewritten by ONNX Runtime's transformer optimizer (`onnxruntime.transformers.optimizer`,
  model type "bert"), which fuses embeddings + LayerNorm, attention, bias + GELU and skip +
  LayerNorm into single kernels. Without a fused `Attention` the graph is not the peer (the
  optimizer found nothing to fuse), and the variant is refused.
- `ort_int8`: the optimized graph with int8 weights (`onnxruntime.quantization.quantize_dynamic`;
  activations quantized at run time), the fastest plain-BERT deployment found on CPUs with VNNI.

The packages (`torch`, `transformers`) are optional (`requirements-bench.txt`); a missing one
raises `PeerUnavailable` (a `ConversionError`), so the benchmark skips the variant and says why.
"""

import json
import logging
import os
import warnings

import numpy as np

from powerbert_tf.checkpoints.huggingface import hf_state_dict
from powerbert_tf.encoder import INPUT_NAMES
from serving.convert import onnx_session
from serving.signature_inputs import ConversionError

PEER_KINDS = ("ort_optimized", "ort_int8")
# Fused operators the optimizer reports; Attention is the one that defines the peer.
_REQUIRED_FUSION = "Attention"


class PeerUnavailable(ConversionError):
    """A peer deployment cannot be built here (missing package, failed export or fusion)."""


def _import(name):
    try:
        return __import__(name)
    except ImportError as err:
        raise PeerUnavailable(f"{name} is not installed ({err}); pip install -r requirements-bench.txt") from None


def hf_classifier(model):
    """`transformers.BertForSequenceClassification` (eager attention, eval mode) with the weights
    of a `PowerBertClassifier` without elimination."""
    torch, transformers = _import("torch"), _import("transformers")
    if model.encoder.elimination != "none":
        raise PeerUnavailable(f"peers are built from plain BERT, not a {model.encoder.elimination!r} model")
    c = model.encoder.bert_config
    config = transformers.BertConfig(
        vocab_size=c.vocab_size, hidden_size=c.hidden_size, num_hidden_layers=c.num_hidden_layers,
        num_attention_heads=c.num_attention_heads, intermediate_size=c.intermediate_size,
        hidden_act=c.hidden_act, max_position_embeddings=c.max_position_embeddings,
        type_vocab_size=c.type_vocab_size, layer_norm_eps=c.layer_norm_eps, num_labels=model.num_classes,
        # The exporter emits the attention pattern the ONNX Runtime optimizer fuses only from
        # the eager implementation (transformers 5 defaults to SDPA).
        attn_implementation="eager")
    hf = transformers.BertForSequenceClassification(config)
    state = {name: torch.from_numpy(value) for name, value in hf_state_dict(model.encoder).items()}
    state["classifier.weight"] = torch.from_numpy(np.ascontiguousarray(model.head.kernel.numpy().T))
    state["classifier.bias"] = torch.from_numpy(model.head.bias.numpy())
    missing, unexpected = hf.load_state_dict(state, strict=False)
    missing = [m for m in missing if not m.endswith("position_ids")]
    if missing or unexpected:
        raise PeerUnavailable(f"weights do not fit BertForSequenceClassification: missing {missing}, "
                              f"unexpected {unexpected}")
    return hf.eval()


def torch_runner(model, threads):
    """Batch dict of int32 arrays -> logits, by PyTorch eager inference."""
    torch = _import("torch")
    torch.set_num_threads(threads)
    hf = hf_classifier(model)

    def run(batch):
        with torch.inference_mode():
            args = {name: torch.from_numpy(batch[name]).long() for name in INPUT_NAMES}
            return hf(**args).logits.numpy()
    return run


def fused_operators_path(onnx_path):
    return onnx_path + ".fused.json"


def export_ort_optimized(model, target):
    """Write the optimized ONNX graph of `model` to `target` and `fused_operators_path(target)`.

    Returns:
        {fused operator: count} as reported by the optimizer.

    Raises:
        PeerUnavailable: a package is missing, or no `Attention` was fused.
    """
    torch = _import("torch")
    _import("onnxruntime")
    from onnxruntime.transformers import optimizer

    hf = hf_classifier(model)
    c = model.encoder.bert_config
    example = tuple(torch.ones((2, 8), dtype=torch.long) for _ in INPUT_NAMES)
    axes = {name: {0: "batch", 1: "sequence"} for name in INPUT_NAMES}
    raw = target + ".raw.onnx"
    os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
    with torch.inference_mode(), warnings.catch_warnings():
        # The TorchScript exporter: the optimizer's BERT fusions match its graphs. Its tracer
        # warnings (deprecation, Python booleans of shapes) concern code paths BERT does not take.
        warnings.simplefilter("ignore")
        torch.onnx.export(hf, example, raw, input_names=list(INPUT_NAMES), output_names=["logits"],
                          dynamic_axes={**axes, "logits": {0: "batch"}}, opset_version=17, dynamo=False)
    optimized = optimizer.optimize_model(raw, model_type="bert", num_heads=c.num_attention_heads,
                                         hidden_size=c.hidden_size)
    fused = {op: n for op, n in optimized.get_fused_operator_statistics().items() if n}
    os.remove(raw)
    if fused.get(_REQUIRED_FUSION, 0) < c.num_hidden_layers:
        raise PeerUnavailable(f"the ONNX Runtime optimizer fused {fused}: no {_REQUIRED_FUSION} in every "
                              f"layer, so this is not ONNX Runtime's optimized BERT")
    optimized.save_model_to_file(target)
    with open(fused_operators_path(target), "w") as f:
        json.dump(fused, f, indent=2)
    return fused


def quantize_int8(source, target):
    """int8 weights of an ONNX graph (`quantize_dynamic`), fused-operator list carried over."""
    _import("onnxruntime")
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Shape inference does not type the outputs of the fused com.microsoft operators; they are
    # float32, which is what DefaultTensorType tells the quantizer.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # its advice to pre-process concerns static quantization
    try:
        quantize_dynamic(source, target, weight_type=QuantType.QInt8,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    finally:
        root.setLevel(level)
    if os.path.exists(fused_operators_path(source)):
        with open(fused_operators_path(source)) as f:
            fused = json.load(f)
        with open(fused_operators_path(target), "w") as f:
            json.dump(fused, f, indent=2)


def read_fused_operators(onnx_path):
    """{operator: count} written next to a peer graph, or None."""
    path = fused_operators_path(onnx_path)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def ort_runner(path, threads):
    """Batch dict of int32 arrays -> logits, by an onnxruntime session on a peer graph (int64 ids)."""
    session = onnx_session(path, threads)

    def run(batch):
        return session.run(None, {name: batch[name].astype(np.int64) for name in INPUT_NAMES})[0]
    return run
