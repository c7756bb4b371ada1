"""Server-side batching like TF Serving's `SharedBatchScheduler`.

Requests to the same (model, version, signature) queue as tasks. A batch closes when the next task
would not fit in `max_batch_size` rows, or `batch_timeout_micros` after its first task arrived; with
the default timeout 0 a batch runs as soon as a batch thread is free, so tasks merge only while the
threads are busy. `num_batch_threads` threads run the oldest ready batch of any queue: one
TensorFlow call on the concatenated inputs, whose outputs are split back per task.

TF Serving's errors (`shared_batch_scheduler.h`): a task larger than `max_batch_size` is a 400
("Task size ... is larger than maximum input batch size ..."); a queue already holding
`max_enqueued_batches` batches rejects with 503 UNAVAILABLE.

If a merged call fails (one request with a value TensorFlow rejects), each task is re-run alone, so
only the faulty request gets the error.
"""

import concurrent.futures
import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from serving.errors import UNAVAILABLE, ServingError

log = logging.getLogger("serving")


@dataclass
class BatchingParameters:
    """TF Serving's `BatchingParameters` knobs, with its defaults."""

    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 10
    num_batch_threads: int = field(default_factory=lambda: os.cpu_count() or 1)

    def __post_init__(self):
        for name in ("max_batch_size", "max_enqueued_batches", "num_batch_threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_timeout_micros < 0:
            raise ValueError(f"batch_timeout_micros must be >= 0, got {self.batch_timeout_micros}")


class _Task:
    __slots__ = ("arrays", "size", "future")

    def __init__(self, arrays, size):
        self.arrays, self.size = arrays, size
        self.future = concurrent.futures.Future()


class _Batch:
    def __init__(self, key, run, task):
        self.key, self.run, self.tasks, self.size = key, run, [task], task.size
        self.opened = time.monotonic()


class BatchScheduler:
    """Batches tasks per key and runs them on `num_batch_threads` daemon threads.

    `submit(key, run, arrays, size)` returns a `concurrent.futures.Future` of the task's outputs;
    `run(arrays) -> {output: numpy}` is the TensorFlow call of the key's signature. `on_batch(key,
    rows)`, if given, is told of every batch as it starts running (metrics).
    """

    def __init__(self, params=None, on_batch=None):
        self.params = params or BatchingParameters()
        self._on_batch = on_batch
        self.batches_run = 0
        self.tasks_run = 0
        self._cv = threading.Condition()
        self._queues = {}
        self._stopped = False
        self._threads = [threading.Thread(target=self._work, name=f"batch-{i}", daemon=True)
                         for i in range(self.params.num_batch_threads)]
        for thread in self._threads:
            thread.start()

    def submit(self, key, run, arrays, size):
        limit = self.params.max_batch_size
        if size > limit:
            raise ServingError(f"Task size {size} is larger than maximum input batch size {limit}")
        task = _Task(arrays, size)
        with self._cv:
            if self._stopped:
                raise ServingError("The server is shutting down", UNAVAILABLE)
            queue = self._queues.setdefault(key, deque())
            if queue and queue[-1].size + size <= limit:
                queue[-1].tasks.append(task)
                queue[-1].size += size
            else:
                if len(queue) >= self.params.max_enqueued_batches:
                    raise ServingError("The batch scheduling queue to which this task was submitted "
                                       "is full", UNAVAILABLE)
                queue.append(_Batch(key, run, task))
            self._cv.notify()
        return task.future

    def stop(self, timeout=30):
        """Runs what is queued, then ends the threads."""
        with self._cv:
            self._stopped = True
            self._cv.notify_all()
        for thread in self._threads:
            thread.join(timeout=timeout)

    def stats(self):
        with self._cv:
            queued = sum(len(b.tasks) for q in self._queues.values() for b in q)
            return {"batches": self.batches_run, "tasks": self.tasks_run, "queued_tasks": queued,
                    **{k: getattr(self.params, k) for k in ("max_batch_size", "batch_timeout_micros",
                                                            "max_enqueued_batches", "num_batch_threads")}}

    def queue_depths(self):
        """{key: tasks waiting} of the keys with a queue."""
        with self._cv:
            return {key: sum(len(b.tasks) for b in queue) for key, queue in self._queues.items() if queue}

    # === Batch threads ===

    def _work(self):
        while True:
            with self._cv:
                while True:
                    batch, wait = self._take_ready()
                    if batch is not None:
                        break
                    if self._stopped and not self._queues:
                        return
                    self._cv.wait(timeout=wait)
            try:
                self._run(batch)
            except Exception as e:  # never lose a task: fail whatever is still pending
                log.exception("batch failed")
                for task in batch.tasks:
                    if not task.future.done():
                        task.future.set_exception(ServingError(f"Batch failed: {e}"))

    def _take_ready(self):
        """(oldest ready batch or None, seconds until the next one is ready or None)."""
        now, timeout = time.monotonic(), self.params.batch_timeout_micros / 1e6
        best_key, wait = None, None
        for key in list(self._queues):
            queue = self._queues[key]
            if not queue:
                del self._queues[key]
                continue
            head = queue[0]
            ready = (len(queue) > 1 or head.size >= self.params.max_batch_size
                     or now - head.opened >= timeout or self._stopped)
            if ready:
                if best_key is None or head.opened < self._queues[best_key][0].opened:
                    best_key = key
            else:
                remaining = timeout - (now - head.opened)
                wait = remaining if wait is None else min(wait, remaining)
        if best_key is None:
            return None, wait
        batch = self._queues[best_key].popleft()
        if not self._queues[best_key]:
            del self._queues[best_key]
        return batch, None

    def _run(self, batch):
        tasks = [t for t in batch.tasks if t.future.set_running_or_notify_cancel()]
        with self._cv:
            self.batches_run += 1
            self.tasks_run += len(tasks)
        if not tasks:
            return
        if self._on_batch is not None:
            self._on_batch(batch.key, sum(t.size for t in tasks))
        if len(tasks) == 1:
            return self._run_alone(batch.run, tasks[0])
        try:
            merged = {name: np.concatenate([t.arrays[name] for t in tasks]) for name in tasks[0].arrays}
        except ValueError:  # shapes that do not stack (variable-length inputs): run one by one
            return self._run_each(batch.run, tasks)
        try:
            outputs = batch.run(merged)
        except Exception:
            return self._run_each(batch.run, tasks)
        total = sum(t.size for t in tasks)
        if any(np.ndim(o) == 0 or np.shape(o)[0] != total for o in outputs.values()):
            return self._run_each(batch.run, tasks)  # an output is not batch-major: cannot split
        start = 0
        for task in tasks:
            end = start + task.size
            task.future.set_result({name: output[start:end] for name, output in outputs.items()})
            start = end

    def _run_each(self, run, tasks):
        for task in tasks:
            self._run_alone(run, task)

    @staticmethod
    def _run_alone(run, task):
        try:
            task.future.set_result(run(task.arrays))
        except Exception as e:
            task.future.set_exception(e)
