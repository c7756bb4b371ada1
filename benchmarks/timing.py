"""Timing one pass of a runner over pre-made batches (shared by `powerbert bench` and the Pareto
comparison): warm-up first, then per-batch latencies, and the outputs put back in example order.

A *runner* is a callable from a batch dict of int32 arrays to a numpy array of logits.
"""

import time

import numpy as np


def keras_runner(model, width):
    """`model` in a `tf.function` with an input signature of int32 (batch, width) (width None: any)."""
    import tensorflow as tf

    from powerbert_tf.encoder import INPUT_NAMES

    spec = {name: tf.TensorSpec((None, width), tf.int32) for name in INPUT_NAMES}
    fn = tf.function(lambda x: model(x, training=False), input_signature=[spec])
    return lambda batch: fn(batch).numpy()


def time_pass(run, plan):
    latencies, outputs = np.empty(len(plan.inputs)), []
    for i, batch in enumerate(plan.inputs):
        t0 = time.perf_counter()
        outputs.append(run(batch))
        latencies[i] = time.perf_counter() - t0
    return latencies, outputs


def assemble(outputs, indices, n):
    logits = np.zeros((n,) + np.shape(outputs[0])[1:], np.float32)
    for out, idx in zip(outputs, indices):
        logits[idx] = out
    return logits


def warm_up(run, plan, dynamic):
    """Call each distinct shape twice (dynamic: the shortest and longest batch); the first call
    traces, compiles (XLA) or plans (onnxruntime); first minus second estimates that overhead."""
    picks = [0, len(plan.inputs) - 1] if dynamic else plan.distinct_shape_batches()
    first = overhead = 0.0
    for i in sorted(set(picks)):
        times = []
        for _ in range(2):
            t0 = time.perf_counter()
            run(plan.inputs[i])
            times.append(time.perf_counter() - t0)
        first += times[0]
        overhead += max(times[0] - times[1], 0.0)
    return {"shapes": len(set(picks)), "first_call_s": first, "overhead_s": overhead}
