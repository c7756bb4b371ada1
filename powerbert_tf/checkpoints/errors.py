"""The one error type for unusable checkpoints."""


class CheckpointError(ValueError):
    """A checkpoint that is missing, corrupt, or does not fit the encoder (names the variable)."""
