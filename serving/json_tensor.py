"""JSON <-> tensors for TF Serving's REST predict API, validated before TensorFlow sees them.

Request (TF Serving's `api_rest.md`, "Predict API"):
- row format: `{"instances": [...]}`, a list of per-instance values, or of objects
  `{input name: value}` when the signature has several inputs;
- columnar format: `{"inputs": value}` or `{"inputs": {input name: value}}`;
- optional `"signature_name"` (default `serving_default`); bytes as `{"b64": "..."}`.

Response: row requests get `{"predictions": ...}`, the bare values when the signature has one
output, else a list of one object per instance; columnar requests get `{"outputs": ...}`, the bare
value when there is one output, else an object of output name -> nested list. Strings are JSON
strings; outputs whose name ends in `_bytes` are `{"b64": ...}` objects.

Messages follow TF Serving's (`util/json_tensor.cc`) where it has one. The rules shared with the
gRPC API (shapes, empty batches, batch sizes, value ranges) are `serving.signature_checks`'.
"""

import base64
import binascii
import json

import numpy as np
import tensorflow as tf

from serving.errors import UNIMPLEMENTED, ServingError
from serving.savedmodel import SERVING_SIGNATURE
from serving.signature_checks import check_batch, check_shape, format_shape

_MAX_UNKNOWN_RANK = 32


def parse_json_object(body):
    """Request bytes -> dict; any problem is a 400 (non-UTF-8, bad JSON, too deep, not an object)."""
    if not body.strip():
        raise ServingError("JSON Parse error: The document is empty")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ServingError(f"JSON Parse error: Invalid encoding in string (not UTF-8) at offset: {e.start}")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ServingError(f"JSON Parse error: {e.msg} at offset: {e.pos}")
    except RecursionError:
        raise ServingError("JSON Parse error: nesting is too deep")
    except ValueError as e:  # e.g. an integer literal of more than 4300 digits
        raise ServingError(f"JSON Parse error: {e}")
    if not isinstance(value, dict):
        raise ServingError("Is not object")
    return value


def split_predict_request(request):
    """(signature name, "row" or "columnar", the instances / inputs value) of a parsed request."""
    signature = request.get("signature_name", SERVING_SIGNATURE)
    if not isinstance(signature, str):
        raise ServingError("'signature_name' key must be a string value.")
    has_rows, has_columns = "instances" in request, "inputs" in request
    if has_rows and has_columns:
        raise ServingError("Invalid request: expecting only one of 'inputs' or 'instances' keys")
    if not has_rows and not has_columns:
        raise ServingError("Missing 'inputs' or 'instances' key")
    if has_rows:
        return signature or SERVING_SIGNATURE, "row", request["instances"]
    return signature or SERVING_SIGNATURE, "columnar", request["inputs"]


def decode_request_tensors(fmt, value, specs, value_ranges=None):
    """Instances / inputs -> {input name: numpy array} matching `specs`.

    Args:
        fmt: "row" or "columnar".
        value: the `instances` or `inputs` JSON value.
        specs: {input name: tf.TensorSpec} of the signature.
        value_ranges: {input name: (low, high exclusive or None, reason)} for integer inputs.

    Raises:
        ServingError: 400 for anything that does not match the signature, 501 for a dtype the
            REST API cannot express.
    """
    arrays = _decode_rows(value, specs) if fmt == "row" else _decode_columns(value, specs)
    check_batch(arrays, specs, value_ranges)
    return arrays


def encode_response(outputs, fmt):
    """{output name: numpy array} -> the `predictions` (row) or `outputs` (columnar) response."""
    names = sorted(outputs)
    values = {name: _to_json_value(outputs[name], name) for name in names}
    if fmt == "columnar":
        return {"outputs": values[names[0]] if len(names) == 1 else values}
    if len(names) == 1:
        return {"predictions": values[names[0]]}
    batch = None
    for name in names:
        array = outputs[name]
        if array.ndim == 0:
            raise ServingError(f"Tensor name: {name} has no shape information; use the columnar "
                               "'inputs' format for this signature")
        if batch is None:
            batch = array.shape[0]
        elif array.shape[0] != batch:
            raise ServingError(f"Tensor name: {name} has inconsistent batch size: {array.shape[0]} "
                               f"expecting: {batch}")
    return {"predictions": [{name: values[name][i] for name in names} for i in range(batch)]}


def dumps(payload):
    """Compact JSON that, like TF Serving, writes NaN / Infinity literals for non-finite floats."""
    return json.dumps(payload, allow_nan=True, separators=(",", ":"), ensure_ascii=False)


# === Request side ===

def _is_b64(value):
    return isinstance(value, dict) and len(value) == 1 and "b64" in value


def _json_type(value):
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "string", list: "list", dict: "object", type(None): "null"}.get(type(value), "value")


def _decode_rows(instances, specs):
    if not isinstance(instances, list):
        raise ServingError("Expecting 'instances' to be an list/array")
    if not instances:
        raise ServingError("No values in 'instances' array")
    names = sorted(specs)
    if isinstance(instances[0], dict) and not _is_b64(instances[0]):
        columns = {name: [] for name in names}
        for i, item in enumerate(instances):
            if not isinstance(item, dict) or _is_b64(item):
                raise ServingError(f"Expecting object but got {_json_type(item)} at item {i}")
            if set(item) != set(names):
                raise ServingError(f"Failed to process element: {i} of 'instances' list. JSON object: "
                                   f"keys must be equal to: {','.join(names)} (got: "
                                   f"{','.join(sorted(map(str, item)))[:200]})")
            for name in names:
                columns[name].append(item[name])
        return {name: _to_array(columns[name], specs[name], name) for name in names}
    if len(names) != 1:
        raise ServingError("instances is a plain list, but expecting list of objects as multiple "
                           f"input tensors required as per tensorinfo_map: {','.join(names)}")
    for i, item in enumerate(instances):
        if isinstance(item, dict) and not _is_b64(item):
            raise ServingError(f"Expecting value/list but got object at item {i}")
    return {names[0]: _to_array(instances, specs[names[0]], names[0])}


def _decode_columns(inputs, specs):
    names = sorted(specs)
    if isinstance(inputs, dict) and not _is_b64(inputs):
        for name in names:
            if name not in inputs:
                raise ServingError(f"Missing named input: {name} in 'inputs' object.")
        for key in inputs:
            if key not in specs:
                raise ServingError(f"Unexpected named input: {str(key)[:100]} in 'inputs' object; "
                                   f"the signature's inputs are: {','.join(names)}")
        return {name: _to_array(inputs[name], specs[name], name) for name in names}
    if len(names) != 1:
        raise ServingError("'inputs' is not an object, but the signature has several inputs: "
                           f"{','.join(names)}")
    return {names[0]: _to_array(inputs, specs[names[0]], names[0])}


def _to_array(value, spec, name):
    expected = spec.shape
    max_rank = expected.rank if expected.rank is not None else _MAX_UNKNOWN_RANK
    shape, leaves = _flatten(value, name, max_rank, expected)
    check_shape(name, shape, spec)
    return _leaves_to_array(leaves, spec.dtype, name).reshape(shape)


def _flatten(value, name, max_rank, expected):
    """(shape, flat list of leaves) of a nested list; ragged or mixed nesting is a 400."""
    shape, level = [], [value]
    while level and isinstance(level[0], list):
        size = len(level[0])
        for item in level:
            if not isinstance(item, list):
                raise ServingError(f"Input '{name}': mixed lists and values at depth {len(shape)}")
            if len(item) != size:
                raise ServingError(f"Input '{name}' is ragged: Expecting tensor size: {size} but "
                                   f"got: {len(item)} at depth {len(shape)}")
        shape.append(size)
        if len(shape) > max_rank:
            want = format_shape(expected.as_list()) if expected.rank is not None else f"rank <= {max_rank}"
            raise ServingError(f"Input '{name}' is nested deeper than the signature's shape {want}")
        level = [leaf for item in level for leaf in item]
    for leaf in level:
        if isinstance(leaf, list):
            raise ServingError(f"Input '{name}': mixed lists and values at depth {len(shape)}")
    return shape, level


def _type_error(leaf, dtype):
    shown = json.dumps(leaf)[:80] if not isinstance(leaf, float) else repr(leaf)
    return ServingError(f"JSON Value: {shown} Type: {_json_type(leaf)} is not of expected type: "
                        f"{dtype.name}")


def _leaves_to_array(leaves, dtype, name):
    np_dtype = dtype.as_numpy_dtype
    if dtype == tf.string:
        return np.array([_string_leaf(leaf, name) for leaf in leaves], dtype=object)
    if dtype.is_bool:
        kinds = (bool,)
    elif dtype.is_integer:
        kinds = (int,)
    elif dtype.is_floating:
        kinds = (int, float)
    else:
        raise ServingError(f"Input '{name}' has dtype {dtype.name}, which the REST API does not "
                           "support", UNIMPLEMENTED)
    for leaf in leaves:
        if type(leaf) not in kinds:
            raise _type_error(leaf, dtype)
    if dtype.is_integer and leaves:
        info = np.iinfo(np_dtype)
        for bound in (min(leaves), max(leaves)):
            if not info.min <= bound <= info.max:
                raise ServingError(f"JSON Value: {str(bound)[:40]} is out of range for type: {dtype.name}")
        return np.array(leaves, dtype=np_dtype)
    if dtype.is_floating:
        try:
            wide = np.array(leaves, dtype=np.float64)
        except OverflowError:
            raise ServingError(f"Input '{name}': an integer is too large for type: {dtype.name}")
        with np.errstate(over="ignore"):  # TF Serving also turns float overflow into +-inf
            return wide.astype(np_dtype)
    return np.array(leaves, dtype=np_dtype)


def _string_leaf(leaf, name):
    if type(leaf) is str:
        try:
            return leaf.encode("utf-8")
        except UnicodeEncodeError:
            raise ServingError(f"Input '{name}': string is not valid UTF-8 (unpaired surrogate escape)")
    if _is_b64(leaf):
        encoded = leaf["b64"]
        if not isinstance(encoded, str):
            raise ServingError(f"JSON Value: {json.dumps(encoded)[:80]} not formatted correctly for "
                               "base64 data")
        try:
            return base64.b64decode(encoded.encode("ascii"), validate=True)
        except (binascii.Error, ValueError, UnicodeEncodeError):
            raise ServingError(f"Unable to base64 decode {json.dumps(encoded)[:80]} of input '{name}'")
    raise _type_error(leaf, tf.string)


# === Response side ===

def _to_json_value(array, name):
    array = np.asarray(array)
    if array.dtype == object or array.dtype.kind == "S":
        as_b64 = name.endswith("_bytes")
        flat = [_string_out(x, as_b64) for x in array.reshape(-1)]
        out = np.empty(len(flat), dtype=object)
        out[:] = flat
        return out.reshape(array.shape).tolist()
    if array.dtype.kind in "biu":
        return array.tolist()
    if array.dtype.kind == "f" or str(array.dtype) == "bfloat16":
        return array.astype(np.float64 if array.dtype == np.float64 else np.float32).tolist()
    raise ServingError(f"Failed to write JSON value for tensor type: {array.dtype}")


def _string_out(value, as_b64):
    if not isinstance(value, bytes):
        value = bytes(value)
    if not as_b64:
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            pass  # not text: send it the lossless way
    return {"b64": base64.b64encode(value).decode("ascii")}
