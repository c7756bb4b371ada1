"""Linear warm-up then linear decay to zero (BERT's AdamW schedule), as a Keras schedule."""

import keras
import tensorflow as tf

from powerbert_tf.serialization import register


def finetuning_optimizer(config, total_steps):
    """BERT's AdamW for `config` (a `TrainConfig`: lr_bert, warmup_fraction, weight_decay) over
    `total_steps` (the fine-tune and re-train steps, and the distilled students)."""
    return keras.optimizers.AdamW(WarmupLinearDecay(config.lr_bert, total_steps, config.warmup_fraction),
                                  weight_decay=config.weight_decay)


@register
class WarmupLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """`peak * (step + 1) / warmup` during warm-up, then linear decay to 0 at `total_steps`.

    `step + 1` so the first update (optimizer iteration 0) is not wasted at a rate of 0.
    """

    def __init__(self, peak, total_steps, warmup_fraction=0.1):
        self.peak = float(peak)
        self.total_steps = max(int(total_steps), 1)
        self.warmup_fraction = float(warmup_fraction)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warmup = max(self.warmup_fraction * self.total_steps, 1.0)
        up = (step + 1.0) / warmup
        down = (self.total_steps - step) / max(self.total_steps - warmup, 1.0)
        return self.peak * tf.maximum(tf.minimum(up, down), 0.0)

    def get_config(self):
        return {"peak": self.peak, "total_steps": self.total_steps,
                "warmup_fraction": self.warmup_fraction}
