"""`model.fit` in checkpointed chunks: best-dev checkpoint, TensorBoard, resume after a kill.

A step of T optimizer steps runs as `fit` "epochs" of K steps each. After each chunk the dev set
is evaluated, the best model is kept (`best.keras`), and the model with its optimizer state is
saved (`checkpoint.keras`) with the number of steps done. A re-run loads that checkpoint and
skips the batches already trained on, so an interrupted step continues where it stopped.

Under a `tf.distribute` strategy (`training.distribute.Workers`) the model is built, compiled and
trained in its scope on the same global batches; every worker evaluates the whole selection set,
so all choose the same best checkpoint, and waits for the others after each chunk's files.
"""

import math
import os
import time

import keras
import numpy as np

from training.distribute import Workers
from training.metrics import compute_metrics
from training.atomic_files import read_json, save_model_atomically, write_json


def best_model_path(step_dir):
    """The step's best-so-far model (by dev metric), kept beside its resumable checkpoint."""
    return os.path.join(step_dir, "best.keras")


def chunking(total_steps, target_chunk):
    """(chunks, steps per chunk) with chunks * steps >= total_steps and at most chunks-1 extra."""
    chunks = max(1, math.ceil(total_steps / max(target_chunk, 1)))
    return chunks, math.ceil(total_steps / chunks)


def predict_logits(model, dev_ds):
    """(logits, labels) of every batch of `dev_ds`, the forward pass run as one graph.

    Traced once per call for the dataset's own (relaxed) feature shapes: eagerly the forward took
    about twice as long (MiniLM, batches of 32 at N 48-128), and a chunk-end evaluation of RACE's
    held-out questions took minutes."""
    import tensorflow as tf

    forward = tf.function(lambda features: model(features, training=False),
                          input_signature=[dev_ds.element_spec[0]])
    logits, labels = [], []
    for features, y in dev_ds:
        logits.append(forward(features).numpy())
        labels.append(y.numpy())
    return np.concatenate(logits), np.concatenate(labels)


def evaluate(model, dev_ds, task):
    logits, labels = predict_logits(model, dev_ds)
    if task.is_regression:  # the pipeline carries scores as (B, 1), like the regression head's output
        labels = labels.reshape(-1)
    return compute_metrics(task, labels, logits)


class _ChunkEnd(keras.callbacks.Callback):
    """After each chunk: dev metrics, best model, resumable checkpoint (in that order), then
    `sync()` (every worker waits there until the chief's files are complete).

    `step_dir`: where this process writes them."""

    def __init__(self, step_dir, dev_ds, task, steps_per_chunk, progress, writer, name="dev", sync=None):
        super().__init__()
        self.step_dir, self.dev_ds, self.task, self.name = step_dir, dev_ds, task, name
        self.steps_per_chunk, self.progress, self.writer = steps_per_chunk, progress, writer
        self.sync = sync or (lambda: None)
        self.chunk_started = None

    def on_epoch_begin(self, epoch, logs=None):
        self.chunk_started = time.time()

    def on_epoch_end(self, epoch, logs=None):
        import tensorflow as tf

        trained = time.time()
        metrics = evaluate(self.model, self.dev_ds, self.task)
        steps_done = (epoch + 1) * self.steps_per_chunk
        # train_seconds: the chunk's training alone (its first chunk also traces the train step).
        entry = {"step": steps_done, "loss": float((logs or {}).get("loss", float("nan"))),
                 "dev": metrics, "time": time.time(), "train_seconds": round(trained - self.chunk_started, 3)}
        self.progress["history"].append(entry)
        with self.writer.as_default():
            for name, value in metrics.items():
                tf.summary.scalar(f"{self.name}/{name}", value, step=steps_done)
        if self.progress["best"] is None or metrics["primary"] > self.progress["best"]["dev"]["primary"]:
            save_model_atomically(self.model, best_model_path(self.step_dir))
            self.progress["best"] = entry
        self.progress["steps_done"] = steps_done
        save_model_atomically(self.model, os.path.join(self.step_dir, "checkpoint.keras"))
        write_json(os.path.join(self.step_dir, "progress.json"), self.progress)
        print(f"  step {steps_done}: {self.name} {self.task.primary_metric} = {metrics['primary']:.4f} "
              f"(best {self.progress['best']['dev']['primary']:.4f})", flush=True)
        self.sync()


def checkpointed_fit(build_model, make_stream, total_steps, dev_ds, task, step_dir, log_dir,
                     checkpoint_every, verbose=1, selection_name="dev", workers=None, write_dir=None):
    """Train with `model.fit` for `total_steps`, resuming from `step_dir` if a checkpoint is there.

    Args:
        build_model: total_steps -> compiled model (its LR schedule spans the steps actually run,
            rounded up to whole chunks), used when there is nothing to resume.
        make_stream: skip -> `tf.data.Dataset` of training batches with the first `skip` batches
            removed (deterministic order).
        dev_ds: the data that chooses the best checkpoint (dev, or training data held out);
            `selection_name` labels it in the log and TensorBoard.
        workers: a `training.distribute.Workers` to train under (default: no strategy).
        write_dir: where this process writes the step's files (default `step_dir`; a non-chief
            worker's scratch copy). A resume reads `step_dir`.
    Returns:
        the progress dict (`best` entry with dev metrics, `history`).
    """
    import tensorflow as tf

    workers = workers or Workers()
    write_dir = write_dir or step_dir
    os.makedirs(write_dir, exist_ok=True)
    progress = read_json(os.path.join(step_dir, "progress.json"))
    checkpoint = os.path.join(step_dir, "checkpoint.keras")
    with workers.scope():
        if progress and os.path.exists(checkpoint):
            # The chunk size the step started with (its LR schedule spans those chunks), whatever
            # --checkpoint-every says now.
            per_chunk = progress.get("steps_per_chunk") or chunking(total_steps, checkpoint_every)[1]
            chunks = progress["total_steps"] // per_chunk
            model = keras.saving.load_model(checkpoint)
            print(f"  resuming from step {progress['steps_done']} of {chunks * per_chunk}", flush=True)
        else:
            chunks, per_chunk = chunking(total_steps, checkpoint_every)
            model = build_model(chunks * per_chunk)
            progress = {"steps_done": 0, "best": None, "history": [], "total_steps": chunks * per_chunk,
                        "steps_per_chunk": per_chunk}
        workers.prepare_fit(model)
        done_chunks = progress["steps_done"] // per_chunk
        if done_chunks < chunks:
            writer = tf.summary.create_file_writer(os.path.join(log_dir, "validation"))
            chunk_end = _ChunkEnd(write_dir, dev_ds, task, per_chunk, progress, writer, selection_name,
                                  sync=workers.barrier)
            # Repeated before skipping: the last chunk rounds the steps up past the stream's end
            # and goes on from its start, in a resumed run as in an uninterrupted one.
            stream = make_stream(0).repeat().skip(progress["steps_done"])
            model.fit(workers.distribute(stream), initial_epoch=done_chunks,
                      epochs=chunks, steps_per_epoch=per_chunk, verbose=verbose, shuffle=False,
                      callbacks=[chunk_end, keras.callbacks.TensorBoard(log_dir=log_dir, update_freq=50)])
    return progress
