"""Import TensorFlow without its C++ start-up lines on the terminal.

On a CPU machine TensorFlow 2.21 prints oneDNN and CUDA-probing lines, among them `E0000 ...
failed call to cuInit: CUDA error`, which a user reads as a failure. They are written before
absl logging is initialised, so `TF_CPP_MIN_LOG_LEVEL` does not hide them: the file descriptor
itself is pointed at a temporary file while TensorFlow loads and probes its devices. If the
import fails, what was captured is printed, so nothing that explains a failure is lost.
"""

import os
import sys
import tempfile


def import_tensorflow_quietly(verbose=False):
    """Import TensorFlow and list its devices; hide the native start-up log unless `verbose`."""
    if verbose:
        import tensorflow as tf

        tf.config.list_physical_devices()
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # later C++ INFO/WARNING lines
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()  # the CUDA probe (cuInit) happens here
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
