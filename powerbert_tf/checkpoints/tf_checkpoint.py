"""Finding and opening a TF checkpoint (name-based `tf.train` format), for every reader here.

Google's BERT directories and Model Garden's object-based checkpoints are both read through
`tf.train.load_checkpoint`; only which prefix a directory means differs (Google names its files
`bert_model.ckpt`, Model Garden keeps a `checkpoint` file).
"""

import os

import numpy as np

from powerbert_tf.checkpoints.errors import CheckpointError


def checkpoint_prefix(path, preferred=None):
    """The checkpoint prefix `path` names: itself when `path.index` exists; for a directory,
    `preferred` there if it exists, else the latest one its `checkpoint` file names, else its one
    `*.index`.

    Raises:
        CheckpointError: no checkpoint, or a directory with several and no `checkpoint` file.
    """
    import tensorflow as tf

    if os.path.isfile(path + ".index"):
        return path
    if not os.path.isdir(path):
        raise CheckpointError(f"no TF checkpoint at {path} (expected a directory or {path}.index)")
    if preferred and os.path.isfile(os.path.join(path, preferred + ".index")):
        return os.path.join(path, preferred)
    latest = tf.train.latest_checkpoint(path)
    if latest:
        return latest
    indexes = sorted(f[: -len(".index")] for f in os.listdir(path) if f.endswith(".index"))
    if len(indexes) == 1:
        return os.path.join(path, indexes[0])
    wanted = f"{preferred}.index, " if preferred else ""
    raise CheckpointError(f"{path}: expected one TF checkpoint ({wanted}a `checkpoint` file or one *.index), "
                          f"found {len(indexes)}")


class CheckpointFile:
    """The variables of the checkpoint at `prefix`: `shapes` ({name: shape}) and `tensor(name)`
    (float32). A file that is not a readable checkpoint -- on opening, or truncated data found on
    reading a tensor -- raises `CheckpointError` naming the prefix.
    """

    def __init__(self, prefix):
        import tensorflow as tf

        self.prefix = prefix
        self._errors = (tf.errors.OpError, ValueError, IndexError, RuntimeError)
        self._reader = self._call(tf.train.load_checkpoint, prefix)
        self.shapes = self._call(self._reader.get_variable_to_shape_map)

    def tensor(self, name):
        return np.asarray(self._call(self._reader.get_tensor, name), np.float32)

    def _call(self, function, *args):
        try:
            return function(*args)
        except self._errors as err:
            raise CheckpointError(f"{self.prefix} is not a readable TF checkpoint: {err.__class__.__name__}: "
                                  f"{getattr(err, 'message', err)}") from None
