"""Linear warm-up then linear decay to zero (BERT's AdamW schedule), as a Keras schedule."""

import keras
import tensorflow as tf

from powerbert_tf.serialization import register


@register
class WarmupLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """`peak * step / warmup` for `step < warmup`, then linear decay to 0 at `total_steps`."""

    def __init__(self, peak, total_steps, warmup_fraction=0.1):
        self.peak = float(peak)
        self.total_steps = max(int(total_steps), 1)
        self.warmup_fraction = float(warmup_fraction)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warmup = max(self.warmup_fraction * self.total_steps, 1.0)
        up = step / warmup
        down = (self.total_steps - step) / max(self.total_steps - warmup, 1.0)
        return self.peak * tf.maximum(tf.minimum(up, down), 0.0)

    def get_config(self):
        return {"peak": self.peak, "total_steps": self.total_steps,
                "warmup_fraction": self.warmup_fraction}
