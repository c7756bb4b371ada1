"""The rules a request's input tensors must meet before TensorFlow runs, whatever API they came by.

The REST decoder (`serving.json_tensor`) and the gRPC one (`serving.tensor_proto`) both call these,
so that a tensor refused over one API is refused over the other with the same message:
- the shape matches the signature's (rank, and every fixed dimension);
- the dtype is the signature's (gRPC only: JSON has no dtypes, its leaves are checked instead);
- no batch-major input is empty, and batch-major inputs agree on the batch size (TensorFlow
  might broadcast them into a wrong answer);
- BERT-style integer inputs are in range (`Servable.value_ranges`): an id out of the vocabulary
  would be clamped or fail inside the graph, differently on CPU and GPU.
"""

import numpy as np

from serving.errors import ServingError


def format_shape(shape):
    return "[" + ", ".join("-1" if d is None else str(d) for d in shape) + "]"


def shape_mismatch(shape, spec):
    """Whether `shape` (a list of ints) does not fit the signature's `spec` shape."""
    expected = spec.shape
    return expected.rank is not None and (
        len(shape) != expected.rank
        or any(d is not None and d != s for d, s in zip(expected.as_list(), shape)))


def check_shape(name, shape, spec):
    if shape_mismatch(shape, spec):
        raise ServingError(f"Input '{name}' has shape {format_shape(shape)} but the signature "
                           f"expects {format_shape(spec.shape.as_list())} (-1: any size)")


def check_dtype(name, dtype, spec):
    """`dtype` (a tf.DType) must be the signature's: TF Serving does not cast inputs either."""
    if dtype != spec.dtype:
        raise ServingError(f"Input '{name}' has dtype {dtype.name} but the signature expects "
                           f"{spec.dtype.name}")


def check_batch(arrays, specs, value_ranges=None):
    """Empty batches, disagreeing batch sizes and out-of-range values of decoded `arrays`.

    Args:
        arrays: {input name: numpy array}, each already of its spec's shape.
        specs: {input name: tf.TensorSpec} of the signature.
        value_ranges: {input name: (low, high exclusive or None, reason)} for integer inputs.
    """
    for name, array in arrays.items():
        spec_shape = specs[name].shape
        if spec_shape.rank and spec_shape[0] is None and array.ndim and array.shape[0] == 0:
            raise ServingError(f"Empty batch: input '{name}' has no rows")
    if _batch_major(specs):
        rows = {name: array.shape[0] for name, array in arrays.items()}
        if len(set(rows.values())) > 1:
            sizes = ", ".join(f"{name}: {n}" for name, n in sorted(rows.items()))
            raise ServingError(f"Inputs must have the same batch size (0-th dimension); got {sizes}")
    for name, (low, high, reason) in (value_ranges or {}).items():
        array = arrays.get(name)
        if array is None or array.size == 0 or array.dtype.kind not in "iu":
            continue
        bad = array < low if high is None else (array < low) | (array >= high)
        if bad.any():
            index = tuple(int(i) for i in np.argwhere(bad)[0])
            where = ",".join(map(str, index))
            limit = f"[{low}, {high})" if high is not None else f"[{low}, inf)"
            raise ServingError(f"{name}[{where}] = {array[index]} is not in {limit} ({reason})")


def batch_rows(arrays, specs):
    """The rows of checked `arrays` if the request can join a server-side batch, else None (some
    input of the signature is not batch-major, so requests cannot be concatenated)."""
    if not _batch_major(specs):
        return None
    sizes = {array.shape[0] if array.ndim else None for array in arrays.values()}
    return sizes.pop() if len(sizes) == 1 and None not in sizes else None


def _batch_major(specs):
    return all(spec.shape.rank and spec.shape[0] is None for spec in specs.values())
