"""Step 2, configuration search: a custom training loop with soft extract and the mass penalty.

loss = task loss + lambda * sum_j j * mass(r_j). BERT weights (and the head) train with AdamW at
LR_BERT, the retention weights with Adam at LR_SOFT_EXTRACT, each with warm-up then linear decay;
the retention weights are clipped to [0, 1] after every update (their Keras constraint). The loop
runs under a `tf.distribute` strategy: per-example losses are summed and divided by the *global*
batch, and the penalty by the number of replicas, so the summed replica losses equal the
single-device loss and the all-reduced gradients are the single-device gradients.

Under mixed_float16 both optimizers are wrapped in `keras.optimizers.LossScaleOptimizer`, as
`fit` wraps its one, and the loss is scaled once, so small float16 gradients do not underflow.
"""

import os
import time

import keras
import tensorflow as tf

from powerbert_tf.elimination.retention import mass_penalty
from training.atomic_files import read_json, write_json
from training.schedules import WarmupLinearDecay


def is_retention(variable):
    return variable.path.endswith("retention")


class ConfigurationSearch:
    """Owns the model, the two optimizers and a compiled (distributed) train step."""

    def __init__(self, model, loss_fn, *, lam, lr_bert, lr_soft, total_steps, global_batch,
                 warmup_fraction=0.1, weight_decay=0.01, strategy=None):
        self.strategy = strategy or tf.distribute.get_strategy()
        self.model, self.loss_fn, self.lam, self.global_batch = model, loss_fn, lam, global_batch
        with self.strategy.scope():
            self.bert_variables = [v for v in model.trainable_variables if not is_retention(v)]
            self.retention_variables = [v for v in model.trainable_variables if is_retention(v)]
            self.bert_optimizer = keras.optimizers.AdamW(
                WarmupLinearDecay(lr_bert, total_steps, warmup_fraction), weight_decay=weight_decay)
            self.soft_optimizer = keras.optimizers.Adam(
                WarmupLinearDecay(lr_soft, total_steps, warmup_fraction))
            # The rule `Model.compile` follows: float16 compute needs loss scaling.
            self.loss_scaled = model.dtype_policy.name == "mixed_float16"
            if self.loss_scaled:
                self.bert_optimizer = keras.optimizers.LossScaleOptimizer(self.bert_optimizer)
                self.soft_optimizer = keras.optimizers.LossScaleOptimizer(self.soft_optimizer)
            self.bert_optimizer.build(self.bert_variables)
            self.soft_optimizer.build(self.retention_variables)
        # Length-bucketed batches (relative retention) come in many widths: after the first few
        # traces TF generalises to (batch, None) instead of tracing every width again.
        self._step = tf.function(self._distributed_step, reduce_retracing=True)

    def penalty(self):
        return mass_penalty(self.model.encoder.retention_masses(), self.lam)

    def _replica_step(self, features, labels):
        replicas = tf.distribute.get_replica_context().num_replicas_in_sync
        with tf.GradientTape() as tape:
            logits = self.model(features, training=True)
            task_loss = tf.reduce_sum(self.loss_fn(labels, logits)) / self.global_batch
            penalty = self.penalty() / replicas
            loss = task_loss + penalty
            if self.loss_scaled:
                loss = self.bert_optimizer.scale_loss(loss)
        grads = tape.gradient(loss, self.bert_variables + self.retention_variables)
        split = len(self.bert_variables)
        bert_grads, soft_grads = grads[:split], grads[split:]
        if self.loss_scaled:
            # The loss carries the BERT wrapper's scale, and each wrapper divides by its own (and
            # skips its update when a gradient is not finite): bring the retention gradients to
            # their wrapper's scale. Both scales are powers of two, so this is exact.
            ratio = self.soft_optimizer.dynamic_scale / self.bert_optimizer.dynamic_scale
            soft_grads = [g * ratio for g in soft_grads]
        self.bert_optimizer.apply_gradients(zip(bert_grads, self.bert_variables))
        self.soft_optimizer.apply_gradients(zip(soft_grads, self.retention_variables))
        return task_loss, penalty

    def _distributed_step(self, features, labels):
        task_loss, penalty = self.strategy.run(self._replica_step, args=(features, labels))
        reduce = lambda t: self.strategy.reduce(tf.distribute.ReduceOp.SUM, t, axis=None)
        return reduce(task_loss), reduce(penalty)

    def train_step(self, features, labels):
        """One update on a global batch; returns (task loss, penalty) as floats."""
        task_loss, penalty = self._step(features, labels)
        return float(task_loss), float(penalty)

    def masses(self):
        return [float(m) for m in self.model.encoder.retention_masses()]

    def checkpoint(self):
        return tf.train.Checkpoint(model=self.model, bert_optimizer=self.bert_optimizer,
                                   soft_optimizer=self.soft_optimizer)


def run_search(search, make_stream, total_steps, step_dir, log_dir, checkpoint_every,
               evaluate_dev=None, verbose=1, write_dir=None, sync=None):
    """Run `total_steps` updates with progress bar, TensorBoard scalars and resumable checkpoints.

    Args:
        make_stream: skip -> dataset of (features, labels) without its first `skip` batches.
        evaluate_dev: optional () -> metrics dict, run at each checkpoint.
        write_dir: where this process writes the checkpoints (default `step_dir`; a non-chief
            worker's scratch copy). A resume reads `step_dir`.
        sync: optional () -> None after each checkpoint (`training.distribute.Workers.barrier`).
    Returns:
        progress dict with `steps_done`, `history` (loss, penalty, masses, dev per checkpoint).
    """
    write_dir = write_dir or step_dir
    os.makedirs(write_dir, exist_ok=True)
    manager = tf.train.CheckpointManager(search.checkpoint(), os.path.join(write_dir, "ckpt"), max_to_keep=2)
    progress = read_json(os.path.join(step_dir, "progress.json"), {"steps_done": 0, "history": []})
    if progress["steps_done"]:
        # The checkpoint that progress.json names, not simply the newest: a kill between saving a
        # checkpoint and writing progress.json must not skip or replay batches.
        search.checkpoint().restore(
            os.path.join(step_dir, "ckpt", f"ckpt-{progress['steps_done']}")).expect_partial()
        print(f"  resuming the search from step {progress['steps_done']} of {total_steps}", flush=True)
    writer = tf.summary.create_file_writer(log_dir)
    stream = make_stream(progress["steps_done"])
    # Each worker builds the whole stream and keeps its part of every global batch (the stream is
    # made in memory: there are no files to share out).
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    stream = search.strategy.experimental_distribute_dataset(stream.with_options(options))
    bar = keras.utils.Progbar(total_steps, stateful_metrics=["mass_last", "penalty"], verbose=verbose)
    step = progress["steps_done"]
    bar.update(step)
    for features, labels in stream:
        if step >= total_steps:
            break
        task_loss, penalty = search.train_step(features, labels)
        step += 1
        masses = search.masses()
        bar.update(step, [("task_loss", task_loss), ("penalty", penalty), ("mass_last", masses[-1])])
        with writer.as_default():
            tf.summary.scalar("search/task_loss", task_loss, step=step)
            tf.summary.scalar("search/loss", task_loss + penalty, step=step)
            tf.summary.scalar("search/penalty", penalty, step=step)
            for j, mass in enumerate(masses, start=1):
                tf.summary.scalar(f"mass/layer_{j}", mass, step=step)
        if step % checkpoint_every == 0 or step == total_steps:
            entry = {"step": step, "task_loss": task_loss, "penalty": penalty, "masses": masses,
                     "time": time.time()}
            if evaluate_dev is not None:
                entry["dev"] = evaluate_dev()
                with writer.as_default():
                    for name, value in entry["dev"].items():
                        tf.summary.scalar(f"dev/{name}", value, step=step)
            manager.save(checkpoint_number=step)
            progress["steps_done"] = step
            progress["history"].append(entry)
            write_json(os.path.join(write_dir, "progress.json"), progress)
            if sync is not None:
                sync()
    return progress
