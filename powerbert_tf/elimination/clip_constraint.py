"""Weight constraint that clips retention parameters to [0, 1] after every optimizer update."""

import keras
import tensorflow as tf

from powerbert_tf.serialization import register


@register
class ClipToUnitInterval(keras.constraints.Constraint):
    """Clips a weight to `[0, 1]` (Keras optimizers apply constraints after each update)."""

    def __call__(self, w):
        return tf.clip_by_value(w, 0.0, 1.0)

    def get_config(self):
        return {}
