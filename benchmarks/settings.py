"""Defaults of `powerbert bench` and its error type (imported by the CLI without TensorFlow)."""

DEFAULT_BATCH_SIZES = (1, 8, 32, 128)
QUICK_BATCH_SIZES = (1, 32)
DEFAULT_REPEATS, QUICK_REPEATS = 3, 2
QUICK_EXAMPLES = 256


class BenchError(ValueError):
    """The benchmark cannot run as asked (bad run directory, missing models or data, options)."""
