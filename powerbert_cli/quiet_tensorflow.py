"""Keep TensorFlow's native log lines off the terminal unless asked for.

On a CPU machine TensorFlow 2.21 writes oneDNN and CUDA-probing lines to the process's stderr,
among them `E0000 ... failed call to cuInit: CUDA error` at start-up and `E0000 ... oneDNN
supports DT_INT64 only on platforms with AVX-512` during training, which a user reads as
failures. They are written by C++ before absl logging is initialised, so `TF_CPP_MIN_LOG_LEVEL`
does not hide them. So the file descriptor 2 itself goes through a filter thread that drops lines
in absl's log format and passes everything else (a native crash message, say) on; Python's own
`sys.stderr` keeps writing to the terminal directly.
"""

import atexit
import os
import re
import sys
import threading

# absl's native log line: severity letter, MMDD, time, thread id, file:line]; and its preamble.
_NATIVE_LOG = re.compile(rb"^([IWEF]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+:\d+\]|WARNING: All log messages before absl)")
# A native line continued on the next line (cpu_feature_guard's "To enable the following ...").
_CONTINUATION = re.compile(rb"^To enable the following instructions:")


def is_native_log_line(line):
    """True for a TensorFlow/absl log line (bytes) that the quiet mode hides."""
    return bool(_NATIVE_LOG.match(line) or _CONTINUATION.match(line))


def _forward(read_fd, terminal):
    with os.fdopen(read_fd, "rb") as lines:
        for line in lines:
            if not is_native_log_line(line):
                terminal.write(line)
                terminal.flush()


def _drain(forwarder):
    """At exit: close the pipe's write end so the last lines reach the terminal."""
    os.close(2)
    forwarder.join(timeout=2)


def import_tensorflow_quietly(verbose=False):
    """Import TensorFlow (and probe its devices) with native log lines hidden unless `verbose`."""
    if not verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        sys.stderr.flush()
        terminal = os.fdopen(os.dup(2), "wb", buffering=0)
        sys.stderr = open(terminal.fileno(), "w", buffering=1, closefd=False)
        read_fd, write_fd = os.pipe()
        os.dup2(write_fd, 2)
        os.close(write_fd)
        forwarder = threading.Thread(target=_forward, args=(read_fd, terminal), daemon=True)
        forwarder.start()
        atexit.register(_drain, forwarder)
    import tensorflow as tf

    tf.config.list_physical_devices()  # the CUDA probe (cuInit) happens here
