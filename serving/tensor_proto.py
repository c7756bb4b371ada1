"""TensorProto <-> numpy for TF Serving's gRPC Predict API, validated before TensorFlow sees them.

Inputs: the request's `{alias: TensorProto}` must name exactly the signature's inputs (TF Serving's
messages from `predict_util.cc` and `saved_model/util.cc`). Each tensor's dtype and declared shape
are checked against the signature first (`serving.signature_checks`, the rules of the REST API
too), then it is decoded by `tf.make_ndarray`: from `tensor_content` or the typed field of its
dtype (`int_val`, `float_val`, `string_val`, ...). As in TensorFlow's `Tensor::FromProto`, a typed
field with fewer values than the shape is filled with its last value (zeros when empty), so a few
bytes can declare a huge tensor; a tensor is refused before decoding when it would hold more values
than a message of `--grpc_max_message_size` bytes could carry.

Outputs are written as TF Serving writes them by default (`Tensor::AsProtoField`): the typed field,
not `tensor_content`, so clients that read `outputs["probabilities"].float_val` work as with TF
Serving (and `tf.make_ndarray` reads both).
"""

import math

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2

from serving.errors import ServingError
from serving.signature_checks import check_batch, check_dtype, check_shape

# The TensorProto field `Tensor::AsProtoField` writes each dtype to.
_FIELDS = {tf.float32: "float_val", tf.float64: "double_val", tf.int32: "int_val", tf.int16: "int_val",
           tf.int8: "int_val", tf.uint8: "int_val", tf.uint16: "int_val", tf.int64: "int64_val",
           tf.uint32: "uint32_val", tf.uint64: "uint64_val", tf.bool: "bool_val", tf.string: "string_val",
           tf.float16: "half_val", tf.bfloat16: "half_val", tf.complex64: "scomplex_val",
           tf.complex128: "dcomplex_val"}


def decode_inputs(protos, specs, value_ranges, max_bytes):
    """A `PredictRequest.inputs` map -> {input name: numpy array} matching `specs`.

    Args:
        protos: {alias: TensorProto} of the request.
        specs: {input name: tf.TensorSpec} of the signature.
        value_ranges: {input name: (low, high exclusive or None, reason)} for integer inputs.
        max_bytes: `--grpc_max_message_size`: no tensor may expand beyond what it could carry.

    Raises:
        ServingError: INVALID_ARGUMENT for anything that does not match the signature.
    """
    sent, expected = sorted(protos), sorted(specs)
    if len(sent) != len(expected):
        extra = [name for name in sent if name not in specs]
        missing = [name for name in expected if name not in protos]
        raise ServingError(
            f"input size does not match signature: {len(sent)}!={len(expected)} len({{{','.join(sent)}}}) "
            f"!= len({{{','.join(expected)}}}). Sent extra: {{{','.join(extra)}}}. "
            f"Missing but required: {{{','.join(missing)}}}.")
    for name in sent:
        if name not in specs:
            raise ServingError(f"input tensor alias not found in signature: {name}. Inputs expected to be "
                               f"in the set {{{','.join(expected)}}}.")
    arrays = {name: _to_array(name, protos[name], specs[name], max_bytes) for name in expected}
    check_batch(arrays, specs, value_ranges)
    return arrays


def to_tensor_proto(array):
    """A numpy output -> TensorProto with its values in the typed field, as TF Serving answers."""
    array = np.asarray(array)
    dtype = tf.string if array.dtype == object or array.dtype.kind == "S" else tf.as_dtype(array.dtype)
    field = _FIELDS.get(dtype)
    if field is None:
        raise ServingError(f"Failed to write tensor type: {dtype.name}", code="INTERNAL")
    proto = tensor_pb2.TensorProto(dtype=dtype.as_datatype_enum,
                                   tensor_shape=tf.TensorShape(array.shape).as_proto())
    flat = array.reshape(-1)
    if dtype == tf.string:
        values = [value if isinstance(value, bytes) else bytes(value) for value in flat]
    elif field == "half_val":  # the bit pattern, as TensorFlow stores 16-bit floats
        values = flat.view(np.uint16).tolist()
    elif dtype.is_complex:  # real and imaginary parts interleaved
        values = flat.view(np.float32 if dtype == tf.complex64 else np.float64).tolist()
    else:
        values = flat.tolist()
    getattr(proto, field).extend(values)
    return proto


def _to_array(name, proto, spec, max_bytes):
    try:
        dtype = tf.as_dtype(proto.dtype)
    except TypeError:  # DT_INVALID or a number that is no dtype
        raise ServingError(f"tensor parsing error: {name}")
    check_dtype(name, dtype, spec)
    shape_proto = proto.tensor_shape
    if shape_proto.unknown_rank or any(dim.size < 0 for dim in shape_proto.dim):
        raise ServingError(f"tensor parsing error: {name}")
    shape = [dim.size for dim in shape_proto.dim]
    check_shape(name, shape, spec)
    if math.prod(shape) * (1 if dtype == tf.string else dtype.size) > max_bytes:
        raise ServingError(f"Input '{name}' declares {math.prod(shape)} values, more than a message of "
                           f"--grpc_max_message_size ({max_bytes} bytes) can carry")
    try:
        return tf.make_ndarray(proto)
    except (ValueError, TypeError):  # content of the wrong size, more values than the shape holds
        raise ServingError(f"tensor parsing error: {name}")
