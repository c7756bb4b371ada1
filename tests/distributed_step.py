"""Run one search step and one `model.fit` step on the same batch with one replica and with two
(logical CPU) replicas.

Runs in its own process: logical devices must be configured before TensorFlow initialises them.
Prints JSON with both losses and the largest difference of the weight updates. The updates are
compared under SGD: Adam's first step is lr * g / (|g| + eps), which turns float-rounding noise in
near-zero gradients into visible differences, so it would not tell whether the gradients agree.
The `fit` step trains on a batch of 7, split 3 + 4 over the replicas (`training.distribute`).
"""

import json

import tensorflow as tf

tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0],
    [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])

import keras  # noqa: E402
import numpy as np  # noqa: E402

from powerbert_tf import PowerBertClassifier  # noqa: E402
from powerbert_tf.loading import build_encoder  # noqa: E402
from tests.conftest import random_inputs  # noqa: E402
from tests.test_search import N, NO_DROPOUT, batches, make_search  # noqa: E402
from training.distribute import Workers  # noqa: E402


def one_step(strategy, sgd=False):
    with strategy.scope():
        search = make_search(seed=0)
        search.strategy = strategy
        if sgd:
            search.bert_optimizer, search.soft_optimizer = keras.optimizers.SGD(1.0), keras.optimizers.SGD(1.0)
            search.bert_optimizer.build(search.bert_variables)
            search.soft_optimizer.build(search.retention_variables)
        search._step = tf.function(search._distributed_step)
    before = [v.numpy() for v in search.model.weights]
    x, y = batches(1)[0]
    dataset = tf.data.Dataset.from_tensors((x, y))
    features, labels = next(iter(strategy.experimental_distribute_dataset(dataset)))
    task_loss, penalty = search.train_step(features, labels)
    return task_loss + penalty, [v.numpy() - b for v, b in zip(search.model.weights, before)]


def one_fit_step(strategy):
    """Weight updates of one SGD `fit` step on 7 examples, as `training.fit_step` trains."""
    workers = Workers(strategy)
    with workers.scope():
        keras.utils.set_random_seed(0)
        model = PowerBertClassifier(build_encoder(NO_DROPOUT), num_classes=2, dropout=0.0)
        model.build()
        model.compile(optimizer=keras.optimizers.SGD(1.0),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        before = [v.numpy() for v in model.weights]
        workers.prepare_fit(model)
        x = random_inputs(7, N, seed=3)
        batch = tf.data.Dataset.from_tensors((x, (x["input_ids"] == 7).any(axis=1).astype(np.int32)))
        model.fit(workers.distribute(batch.repeat()), epochs=1, steps_per_epoch=1, verbose=0)
    return [v.numpy() - b for v, b in zip(model.weights, before)]


def largest_difference(a, b):
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b))


if __name__ == "__main__":
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    single_loss, _ = one_step(tf.distribute.get_strategy())
    double_loss, _ = one_step(mirrored)
    _, single_update = one_step(tf.distribute.get_strategy(), sgd=True)
    _, double_update = one_step(mirrored, sgd=True)
    fit_single, fit_double = one_fit_step(None), one_fit_step(mirrored)
    print(json.dumps({"replicas": mirrored.num_replicas_in_sync, "single_loss": single_loss,
                      "mirrored_loss": double_loss,
                      "max_update": max(float(np.abs(u).max()) for u in single_update),
                      "max_update_diff": largest_difference(single_update, double_update),
                      "fit_max_update": max(float(np.abs(u).max()) for u in fit_single),
                      "fit_max_update_diff": largest_difference(fit_single, fit_double),
                      "workers": Workers(mirrored).num_workers}))
