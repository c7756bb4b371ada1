"""SavedModel facts that export, conversion and the server share: signature and asset names,
reading `saved_model.pb`, TF Serving's numeric version directories, tensorflow-text's ops.

Light to import: TensorFlow's protos are imported inside the functions that read them.
"""

import os

SERVING_SIGNATURE = "serving_default"  # TF Serving's default signature name
TEXT_SIGNATURE = "classify_text"       # raw strings in, tokenized in the graph (tensorflow-text)
METADATA_FILE = "powerbert.json"       # assets/powerbert.json: task, N, labels, retention
# A TFLite form of serving_default beside saved_model.pb: TF Serving serves it instead when started
# with --prefer_tflite_model (and so does `powerbert serve`).
TFLITE_FILE = "model.tflite"
DT_STRING = 7                          # tensorflow.DataType enum of a string tensor

# TF Serving reads a version directory name as a 64-bit integer; it skips longer names.
_MAX_VERSION_DIGITS = 18


class SavedModelError(ValueError):
    """A directory is not a readable SavedModel; the message names the path."""


def read_saved_model(path):
    """The `SavedModel` proto of a version directory (`saved_model.pb`, else `.pbtxt`).

    Raises:
        SavedModelError: no such directory, no `saved_model.pb(txt)`, or an unreadable proto.
    """
    from google.protobuf import text_format
    from tensorflow.core.protobuf import saved_model_pb2

    binary, text = os.path.join(path, "saved_model.pb"), os.path.join(path, "saved_model.pbtxt")
    proto = saved_model_pb2.SavedModel()
    try:
        if os.path.isfile(binary):
            with open(binary, "rb") as f:
                proto.ParseFromString(f.read())
        elif os.path.isfile(text):
            with open(text) as f:
                text_format.Parse(f.read(), proto)
        else:
            raise SavedModelError(f"{path} is not a SavedModel (no saved_model.pb)")
    except SavedModelError:
        raise
    except Exception as err:  # protobuf's DecodeError / ParseError
        raise SavedModelError(f"{path} is not a readable SavedModel: {err}") from None
    return proto


def signature_defs(path):
    """{name: SignatureDef} of a version directory, without TF's internal `__...` entries."""
    return {name: sig for meta in read_saved_model(path).meta_graphs
            for name, sig in meta.signature_def.items() if not name.startswith("__")}


def list_versions(base):
    """[(version, path)] of the version directories of `base`, in name order, as TF Serving
    reads them: ASCII digits, at most 18 of them, a directory. Two names of one number ("1",
    "01") both appear; callers decide.

    Raises:
        OSError: `base` cannot be listed.
    """
    found = []
    for name in sorted(os.listdir(base)):
        path = os.path.join(base, name)
        if name.isascii() and name.isdigit() and len(name) <= _MAX_VERSION_DIGITS and os.path.isdir(path):
            found.append((int(name), path))
    return found


def version_dirs(base):
    """{version: path} of `base` (first name wins for a repeated number); {} if `base` is missing."""
    if not os.path.isdir(base):
        return {}
    versions = {}
    for version, path in list_versions(base):
        versions.setdefault(version, path)
    return versions


def import_tf_text():
    """Register tensorflow-text's ops (`classify_text` needs them); None where it is missing."""
    try:
        import tensorflow_text
    except ImportError:
        return None
    return tensorflow_text


def non_core_ops(path):
    """Sorted op types in the SavedModel that core TensorFlow does not define (TF-Text's).

    A serving binary must link these ops to load the model (the stock `tensorflow/serving`
    binary links tensorflow-text's op library; see the README). `tf.raw_ops` lists exactly the
    core ops; ops loaded from a custom-op library are registered but never added to it.
    """
    import tensorflow as tf

    return sorted(op for op in op_types(path) if not hasattr(tf.raw_ops, op))


def op_types(path):
    """The set of op types in the SavedModel's graphs and their function library."""
    ops = set()
    for graph in read_saved_model(path).meta_graphs:
        ops.update(node.op for node in graph.graph_def.node)
        for function in graph.graph_def.library.function:
            ops.update(node.op for node in function.node_def)
    return ops
