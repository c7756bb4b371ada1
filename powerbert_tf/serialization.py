"""One place that registers the package's Keras objects for `.keras` (de)serialization."""

import keras

PACKAGE = "powerbert"


def register(cls):
    """Register `cls` under the `powerbert>` prefix so `keras.saving.load_model` finds it."""
    return keras.saving.register_keras_serializable(package=PACKAGE)(cls)
