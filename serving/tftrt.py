"""TF-TRT conversion of an exported version's `serving_default` (GPU machines only).

Needs a TensorFlow build with TensorRT (NVIDIA's TensorFlow container, or a source build with
TF_NEED_TENSORRT=1) and a GPU. The PyPI wheels (`tensorflow`, `tensorflow-cpu`) have no
TensorRT: `trt_convert` imports but `TrtGraphConverterV2` raises "Tensorflow has not been built
with TensorRT support", so here `convert_tftrt` raises a `ConversionError` before touching TF-TRT.

On a GPU machine:

    powerbert convert models/sst2/1 --to tftrt --precision FP16
    # or: python -m serving.tftrt models/sst2/1 --out models/sst2-tftrt-fp16/1

The result is a SavedModel with TRTEngineOps (dynamic shapes, one optimization profile covering
batch sizes 1..max_batch at the export's fixed N); engines are built before saving, so the first
request does not pay for them. Ops TensorRT lacks (e.g. TopKV2 of the hard extract, if
unsupported by the installed TensorRT) stay TensorFlow ops between engines.
"""

import argparse
import os
import sys

import numpy as np

from serving.savedmodel import SERVING_SIGNATURE, import_tf_text
from serving.signature_inputs import ConversionError, read_signature, sample_inputs

PRECISIONS = ("FP32", "FP16")


def tensorrt_available():
    """(bool, reason): whether this TensorFlow build can run TF-TRT."""
    import tensorflow as tf

    info = tf.sysconfig.get_build_info()
    if not info.get("is_tensorrt_build", False):
        return False, "this TensorFlow build has no TensorRT (is_tensorrt_build: False)"
    try:
        from tensorflow.python.compiler.tensorrt import trt_convert  # noqa: F401
    except ImportError as err:
        return False, f"TF-TRT does not import: {err}"
    return True, ""


def convert_tftrt(saved_model_dir, out_dir, precision="FP16", signature=SERVING_SIGNATURE,
                  max_batch=32):
    """Write a TF-TRT SavedModel of `signature` to `out_dir` (a new directory); returns it.

    Args:
        precision: "FP32" or "FP16" (INT8 needs calibration data, not supported here).
        max_batch: largest batch size of the TensorRT optimization profile.

    Raises:
        ConversionError: bad input directory or signature, `out_dir` exists, unsupported
            precision, or no TensorRT in this TensorFlow build.
    """
    read_signature(saved_model_dir, signature)
    precision = str(precision).upper()
    if precision not in PRECISIONS:
        raise ConversionError(f"TF-TRT precision must be one of {', '.join(PRECISIONS)}, got {precision!r}"
                              + (" (INT8 needs calibration data)" if precision == "INT8" else ""))
    if os.path.exists(out_dir):
        raise ConversionError(f"{out_dir} exists; choose a new --out directory")
    available, reason = tensorrt_available()
    if not available:
        raise ConversionError(
            f"TF-TRT conversion needs a TensorRT-enabled TensorFlow build (e.g. NVIDIA's TensorFlow "
            f"container) and a GPU: {reason}. Convert on a GPU machine, or use --to onnx / tflite")

    from tensorflow.python.compiler.tensorrt import trt_convert as trt

    import_tf_text()
    try:
        converter = trt.TrtGraphConverterV2(
            input_saved_model_dir=os.fspath(saved_model_dir),
            input_saved_model_signature_key=signature,
            precision_mode=precision,
            use_dynamic_shape=True,
            dynamic_shape_profile_strategy="Range")
        converter.convert()
        # "Range": one profile from the smallest to the largest shape seen while building.
        converter.build(input_fn=_build_inputs(saved_model_dir, signature, max_batch))
        converter.save(os.fspath(out_dir))
    except RuntimeError as err:  # e.g. TensorRT libraries missing at run time
        raise ConversionError(f"TF-TRT conversion failed: {err}") from None
    return out_dir


def _build_inputs(saved_model_dir, signature, max_batch):
    """input_fn for `converter.build`: batches of 1 and max_batch as keyword dicts."""
    batches = [sample_inputs(saved_model_dir, b, signature=signature) for b in sorted({1, max_batch})]

    def input_fn():
        for batch in batches:
            yield {name: np.asarray(value) for name, value in batch.items()}

    return input_fn


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m serving.tftrt", description=__doc__.split("\n")[0])
    parser.add_argument("version_dir", metavar="MODEL_VERSION_DIR")
    parser.add_argument("--out", required=True, help="new directory for the TF-TRT SavedModel")
    parser.add_argument("--precision", default="FP16", choices=PRECISIONS)
    parser.add_argument("--signature", default=SERVING_SIGNATURE)
    parser.add_argument("--max-batch", type=int, default=32)
    args = parser.parse_args(argv)
    try:
        path = convert_tftrt(args.version_dir, args.out, args.precision, args.signature, args.max_batch)
    except ConversionError as err:
        print(f"tftrt: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
