"""Crash-safe file writes: atomic JSON and `.keras` saves (a killed process leaves the old file or the new one, never half)."""

import json
import os
import tempfile


def write_json(path, data):
    """Write JSON atomically (a killed process leaves the old file or the new one, never half)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
    os.replace(tmp, path)


def read_json(path, default=None):
    if not os.path.exists(path):
        return default
    with open(path) as f:
        return json.load(f)


def save_model_atomically(model, path):
    """`model.save(path)` through a temporary file, so an interrupted save keeps the old file."""
    tmp = path + ".partial.keras"
    model.save(tmp)
    os.replace(tmp, path)
