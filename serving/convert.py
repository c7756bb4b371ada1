"""Convert an exported version's `serving_default` to TFLite, ONNX or TF-TRT; run any format alike.

Input: a SavedModel version directory (`<base>/<version>/saved_model.pb`, as `serving.export`
writes it). Only `serving_default` converts: `classify_text` tokenizes with tensorflow-text ops,
which neither TFLite builtins, ONNX nor TensorRT have.

- `convert_tflite`: TFLITE_BUILTINS only. A graph that would need Flex (TF Select) ops fails with a
  `ConversionError` naming them: Python LiteRT interpreters cannot run Flex ops.
- `convert_onnx`: tf2onnx, output names kept (`logits`, `probabilities`, `label`).
- `convert_tftrt`: TrtGraphConverterV2 (`serving.tftrt`); needs a TensorRT-enabled TF build and a
  GPU, so here it fails with a `ConversionError`.

`load_runner(path)` returns a callable `runner(dict of int32 (B, N) arrays) -> dict of numpy
outputs` for a `.tflite` file, an `.onnx` file or a SavedModel directory, so one benchmark or
check code times or compares every format. `verify_conversion` gives the max abs difference of
each output against the SavedModel.

Default outputs sit beside the version directory as files (`<base>/<version>.tflite`,
`<base>/<version>.onnx`), which TF Serving ignores; TF-TRT writes a new base `<base>-tftrt-fp16/<version>/`.
"""

import os
import re

import numpy as np

from serving.savedmodel import SERVING_SIGNATURE, import_tf_text
from serving.signature_inputs import ConversionError, read_signature, sample_inputs, signature_inputs

FORMATS = ("tflite", "onnx", "tftrt")
_FILE_FORMATS = {".tflite": "tflite", ".onnx": "onnx"}


def default_output(saved_model_dir, to, precision="FP16"):
    """`<base>/<version>.tflite|.onnx`, or the new base `<base>-tftrt-<precision>/<version>`."""
    version_dir = os.path.normpath(os.path.abspath(saved_model_dir))
    base, version = os.path.split(version_dir)
    if to == "tftrt":
        return os.path.join(f"{base}-tftrt-{precision.lower()}", version)
    return os.path.join(base, f"{version}.{to}")


# === Converters ===

def convert_tflite(saved_model_dir, out_path, signature=SERVING_SIGNATURE, int8=False):
    """Write a TFLite model of `signature` with builtin ops only; returns `out_path`.

    The file has one signature, always called `serving_default` (TFLite's convention).
    `int8`: dynamic-range quantization (`tf.lite.Optimize.DEFAULT`): int8 weights, activations
    quantized on the fly by the kernels that support it; float32 inputs and outputs stay.
    """
    import tensorflow as tf

    read_signature(saved_model_dir, signature)
    import_tf_text()
    # Not `from_saved_model`: for a SavedModel that tracks Keras 3 variables (not the tf.Variables
    # the signature captures) it keeps VAR_HANDLE ops that nothing initializes, and the model
    # silently returns NaN. Converting the loaded concrete function freezes the weights.
    loaded = tf.saved_model.load(os.fspath(saved_model_dir))
    converter = tf.lite.TFLiteConverter.from_concrete_functions([loaded.signatures[signature]], loaded)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if int8:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    try:
        flatbuffer = converter.convert()
    except Exception as err:  # tf.lite's ConverterError; its message is pages of MLIR
        raise ConversionError(_tflite_failure(err)) from None
    _write(out_path, flatbuffer)
    return os.fspath(out_path)


def _tflite_failure(err):
    ops = {e.operator.name.removeprefix("tf.") for e in getattr(err, "errors", []) if e.operator.name}
    for found in re.finditer(r"(?:TF Select|Custom) ops: ([^\n]+)", str(err)):
        ops.update(op.strip() for op in found.group(1).split(","))
    ops = sorted(ops)
    if ops:
        return (f"TFLite conversion needs ops outside TFLITE_BUILTINS: {', '.join(ops)}. Flex (TF "
                f"Select) ops cannot run in the Python LiteRT interpreter; rewrite them with "
                f"builtin-friendly ops (e.g. matmul instead of einsum, expand_dims instead of "
                f"x[:, None] on dynamic shapes)")
    lines = [line for line in str(err).splitlines() if "error" in line.lower()]
    return f"TFLite conversion failed: {(lines or [str(err)])[0][:500]}"


def convert_onnx(saved_model_dir, out_path, opset=17, signature=SERVING_SIGNATURE):
    """Write an ONNX model of `signature` with tf2onnx, keeping input and output names."""
    read_signature(saved_model_dir, signature)
    import_tf_text()
    try:
        from tf2onnx import convert, tf_loader
    except ImportError:
        raise ConversionError("ONNX conversion needs tf2onnx: pip install tf2onnx==1.17.0 onnx") from None
    graph_def, inputs, outputs, tensors_to_rename = tf_loader.from_saved_model(
        os.fspath(saved_model_dir), None, None, tag=["serve"], signatures=[signature],
        return_tensors_to_rename=True)
    try:
        model, _ = convert.from_graph_def(graph_def, name=signature, input_names=inputs,
                                          output_names=outputs, opset=opset,
                                          tensors_to_rename=tensors_to_rename,
                                          custom_op_handlers={"Erfc": (_erfc_as_one_minus_erf, [])})
    except Exception as err:
        raise ConversionError(f"tf2onnx could not convert {signature!r}: {err}") from None
    _check_onnx_ops(model)
    _write(out_path, model.SerializeToString())
    return os.fspath(out_path)


def _erfc_as_one_minus_erf(ctx, node, name, args):
    """tf2onnx 1.17 has no Erfc, which TF's exact GELU uses (tensorflow-onnx#2347): 1 - Erf(x)."""
    from tf2onnx import utils

    dtype = utils.map_onnx_to_numpy_type(ctx.get_dtype(node.input[0]))
    one = ctx.make_const(utils.make_name(f"{name}_one"), np.array(1, dtype))
    node.type = "Erf"
    ctx.insert_new_node_on_output("Sub", node.output[0], name=utils.make_name(f"{name}_one_minus"),
                                  inputs=[one.output[0], node.output[0]])


def _check_onnx_ops(model):
    """tf2onnx writes unmapped TF ops into the graph as they are; refuse such a model."""
    import onnx

    unknown = sorted({n.op_type for n in model.graph.node if not onnx.defs.has(n.op_type, n.domain)})
    if unknown:
        raise ConversionError(f"tf2onnx has no ONNX mapping for the TF ops {', '.join(unknown)}")


def convert_tftrt(saved_model_dir, out_dir, precision="FP16", signature=SERVING_SIGNATURE, **kwargs):
    """TF-TRT SavedModel (GPU, TensorRT-enabled TF only); see `serving.tftrt.convert_tftrt`."""
    from serving import tftrt

    return tftrt.convert_tftrt(saved_model_dir, out_dir, precision=precision, signature=signature,
                               **kwargs)


def convert(saved_model_dir, to, out=None, **kwargs):
    """Convert to one of `FORMATS`; `out` defaults to `default_output`. Returns the output path."""
    if to not in FORMATS:
        raise ConversionError(f"unknown format {to!r}; choose one of {', '.join(FORMATS)}")
    converter = {"tflite": convert_tflite, "onnx": convert_onnx, "tftrt": convert_tftrt}[to]
    out = out or default_output(saved_model_dir, to, kwargs.get("precision", "FP16"))
    return converter(saved_model_dir, out, **kwargs)


def _write(path, data):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


# === Runners ===

class Runner:
    """`runner(inputs) -> {output name: numpy array}` for one model file or directory.

    Attributes:
        format: "tflite", "onnx" or "saved_model".
        input_names, output_names: sorted names.
    """

    def __init__(self, fmt, fn, input_names, output_names):
        self.format, self._fn = fmt, fn
        self.input_names, self.output_names = sorted(input_names), sorted(output_names)

    def __call__(self, inputs):
        missing = sorted(set(self.input_names) - set(inputs))
        extra = sorted(set(inputs) - set(self.input_names))
        if missing or extra:
            raise ConversionError(f"{self.format} model inputs are {self.input_names}; missing "
                                  f"{missing}, unexpected {extra}")
        return self._fn({name: np.asarray(inputs[name], np.int32) for name in self.input_names})


def load_runner(path, signature=SERVING_SIGNATURE, num_threads=None):
    """A `Runner` for a `.tflite` or `.onnx` file or a SavedModel directory.

    Args:
        num_threads: intra-op threads for LiteRT and onnxruntime (None: the runtime's default);
            onnxruntime also gets `session.intra_op.allow_spinning=0` so timings stay stable
            when other processes share the cores.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        return _saved_model_runner(path, signature)
    if not os.path.isfile(path):
        raise ConversionError(f"{path} does not exist")
    fmt = _format(path)
    if fmt is None:
        raise ConversionError(f"{path}: expected a .tflite or .onnx file or a SavedModel directory")
    return (_tflite_runner if fmt == "tflite" else _onnx_runner)(path, signature, num_threads)


def _format(path):
    """"tflite" or "onnx" from a file name; None for anything else."""
    return _FILE_FORMATS.get(os.path.splitext(os.fspath(path))[1].lower())


def _saved_model_runner(path, signature):
    import tensorflow as tf

    sig_def = read_signature(path, signature)
    import_tf_text()
    fn = tf.saved_model.load(path).signatures[signature]
    return Runner("saved_model", lambda x: {k: v.numpy() for k, v in fn(**x).items()},
                  sig_def.inputs, sig_def.outputs)


def load_tflite_interpreter(path, num_threads=None):
    """A LiteRT interpreter for a `.tflite` file (`tf.lite.Interpreter` without `ai-edge-litert`).

    Raises:
        ConversionError: the file is not a readable TFLite model.
    """
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # tf.lite.Interpreter works too but is deprecated
        import tensorflow as tf
        Interpreter = tf.lite.Interpreter
    try:
        return Interpreter(model_path=path, num_threads=num_threads)
    except ValueError as err:
        raise ConversionError(f"{path} is not a readable TFLite model: {err}") from None


def onnx_session(path, num_threads=None):
    """An onnxruntime CPU session with `num_threads` intra-op threads and spinning off (spinning
    threads steal the CPU from whatever else runs, e.g. the other variants of a benchmark).

    Raises:
        ConversionError: onnxruntime is missing or the file is not a readable ONNX model.
    """
    try:
        import onnxruntime as ort
    except ImportError:
        raise ConversionError("running ONNX needs onnxruntime: pip install onnxruntime==1.32.0") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = num_threads or 0
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime's InvalidProtobuf / Fail
        raise ConversionError(f"{path} is not a readable ONNX model: {err}") from None


def _tflite_runner(path, signature, num_threads):
    interpreter = load_tflite_interpreter(path, num_threads)
    signatures = interpreter.get_signature_list()
    if signature not in signatures:
        raise ConversionError(f"{path} has no signature {signature!r}; it has {sorted(signatures)}")
    runner = interpreter.get_signature_runner(signature)
    return Runner("tflite", lambda x: runner(**x), signatures[signature]["inputs"],
                  signatures[signature]["outputs"])


def _onnx_runner(path, signature, num_threads):
    session = onnx_session(path, num_threads)
    names = [o.name for o in session.get_outputs()]
    return Runner("onnx", lambda x: dict(zip(names, session.run(names, x))),
                  [i.name for i in session.get_inputs()], names)


def verify_conversion(saved_model_dir, converted_path, inputs=None, signature=SERVING_SIGNATURE,
                      reference=None, relative=False):
    """{output name: max abs difference} of the converted model against the SavedModel.

    With `relative=True`, each difference is divided by the output's largest magnitude in the
    SavedModel (at least 1e-12): float errors scale with the logits, not with a fixed number.

    Args:
        converted_path: a `.tflite` / `.onnx` file, a SavedModel directory, or a `Runner`.
        inputs: dict of int32 (B, N) arrays; default `sample_inputs(saved_model_dir)`.
        reference: a SavedModel `Runner` to reuse (loading one takes seconds).

    Raises:
        ConversionError: an output of the SavedModel is missing or has another shape.
    """
    inputs = sample_inputs(saved_model_dir, signature=signature) if inputs is None else inputs
    expected = (reference or load_runner(saved_model_dir, signature))(inputs)
    converted = converted_path
    if not isinstance(converted, Runner):  # a converted .tflite names its one signature serving_default
        converted = load_runner(converted, SERVING_SIGNATURE if _format(converted) else signature)
    actual = converted(inputs)
    diffs = {}
    for name, want in expected.items():
        got = actual.get(name)
        if got is None or np.shape(got) != np.shape(want):
            raise ConversionError(f"output {name!r}: expected shape {np.shape(want)}, got "
                                  f"{'nothing' if got is None else np.shape(got)}")
        diff = float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64)), initial=0))
        scale = max(float(np.max(np.abs(want.astype(np.float64)), initial=0)), 1e-12)
        diffs[name] = diff / scale if relative else diff
    return diffs


# === CLI: `powerbert convert VERSION_DIR --to tflite|onnx|tftrt` ===

def add_convert_parser(subparsers):
    import argparse

    parser = subparsers.add_parser(
        "convert", help="convert an exported version's serving_default to TFLite, ONNX or TF-TRT",
        description="Convert the token-id signature of an exported SavedModel version and print "
                    "the max abs difference of each output against the SavedModel on random "
                    "padded inputs. classify_text (in-graph tokenization) does not convert.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("version_dir", metavar="MODEL_VERSION_DIR", help="e.g. models/sst2/1")
    parser.add_argument("--to", required=True, choices=FORMATS, help="target format")
    parser.add_argument("--out", default=None,
                        help="output file (TF-TRT: directory); default <base>/<version>.tflite|.onnx, "
                             "TF-TRT <base>-tftrt-<precision>/<version>")
    parser.add_argument("--signature", default=SERVING_SIGNATURE, help="signature to convert")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset")
    parser.add_argument("--precision", default="FP16", choices=("FP32", "FP16"), help="TF-TRT precision")
    parser.add_argument("--int8", action="store_true",
                        help="TFLite: int8 weights (dynamic-range quantization); compare with "
                             "--tolerance around 0.1, the check cannot hold it to float32's")
    parser.add_argument("--verify-batch", type=int, default=4,
                        help="rows of random inputs for the check (0: skip the check)")
    parser.add_argument("--tolerance", type=float, default=1e-5,
                        help="fail when an output differs from the SavedModel by more than this "
                             "fraction of its largest magnitude (float32 conversions: ~1e-6)")
    return parser


def convert_main(args):
    kwargs = {"signature": args.signature}
    if args.to == "onnx":
        kwargs["opset"] = args.opset
    elif args.to == "tftrt":
        kwargs["precision"] = args.precision
    if args.int8:
        if args.to != "tflite":
            raise ConversionError(f"--int8 is for --to tflite, not {args.to}")
        kwargs["int8"] = True
    path = convert(args.version_dir, args.to, args.out, **kwargs)
    size = _size(path)
    print(f"wrote {path} ({size / 1e6:.1f} MB)")
    if args.verify_batch and args.to != "tftrt":  # TF-TRT verifies itself while building engines
        inputs = sample_inputs(args.version_dir, args.verify_batch, signature=args.signature)
        diffs = verify_conversion(args.version_dir, path, inputs, signature=args.signature, relative=True)
        print("max difference vs the SavedModel, relative to its largest output: "
              + ", ".join(f"{name} {value:.2e}" for name, value in sorted(diffs.items())))
        bad = sorted(name for name, value in diffs.items() if not value <= args.tolerance)  # NaN too
        if bad:
            raise ConversionError(f"{path} differs from the SavedModel by more than "
                                  f"{args.tolerance:g} (relative) in {', '.join(bad)}")
    return path


def _size(path):
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)
