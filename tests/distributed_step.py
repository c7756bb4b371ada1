"""Run one search step on the same batch with one replica and with two (logical CPU) replicas.

Runs in its own process: logical devices must be configured before TensorFlow initialises them.
Prints JSON with both losses and the largest difference of the weight updates. The updates are
compared under SGD: Adam's first step is lr * g / (|g| + eps), which turns float-rounding noise in
near-zero gradients into visible differences, so it would not tell whether the gradients agree.
"""

import json

import tensorflow as tf

tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0],
    [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])

import keras  # noqa: E402
import numpy as np  # noqa: E402

from tests.test_search import batches, make_search  # noqa: E402


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


if __name__ == "__main__":
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    single_loss, _ = one_step(tf.distribute.get_strategy())
    double_loss, _ = one_step(mirrored)
    _, single_update = one_step(tf.distribute.get_strategy(), sgd=True)
    _, double_update = one_step(mirrored, sgd=True)
    print(json.dumps({"replicas": mirrored.num_replicas_in_sync, "single_loss": single_loss,
                      "mirrored_loss": double_loss,
                      "max_update": max(float(np.abs(u).max()) for u in single_update),
                      "max_update_diff": max(float(np.abs(a - b).max())
                                             for a, b in zip(single_update, double_update))}))
