"""The `tf.distribute` strategy of a training command, and each worker's part in the job.

`--strategy` names one of `training.config.STRATEGIES`:
- "default": no strategy, one device: the plain path, unchanged;
- "mirrored": `tf.distribute.MirroredStrategy` over this machine's devices;
- "multi-worker": `tf.distribute.MultiWorkerMirroredStrategy` over the machines the standard
  `TF_CONFIG` environment variable lists (`read_tf_config`); the same command runs on each.

Batches: every step trains on global batches of the config's batch size, whatever the number of
replicas. `Workers.distribute` gives each replica one piece of each global batch of n examples
(piece sizes differ by at most one) with per-example weights that make the replicas' summed
losses the mean over all n, as on one device: Keras divides each replica's loss by its own piece
and by the number of replicas, which over-weights the examples of the smaller pieces of the short
batches a length-bucketed epoch ends with.

Files (the standard multi-worker pattern; a filesystem shared by the workers is assumed): every
worker runs the same program, because saving a compiled Keras model reads its metrics' on-read
variables, an all-reduce that needs every worker. The chief writes the run directory; the other
workers read it and write their copies into a scratch directory of their own
(`Workers.scratch`, removed when the process ends), and wait at `Workers.barrier` until what the
chief wrote is complete before they read it.

Failures: a worker that dies stops sending heartbeats to the coordination service (TensorFlow's
default: 10 s without one), which aborts the collectives the others wait in; collectives that get
no answer give up after `COLLECTIVE_TIMEOUT_SECONDS`. `Workers.lost_worker_check` turns either
into `WorkerLost`, which says how to resume.
"""

import contextlib
import json
import os
import tempfile

from training.config import STRATEGIES

TF_CONFIG = "TF_CONFIG"
# A collective waits this long for the other workers before it fails. Long: a worker waits in one
# while another still prepares its data or writes a checkpoint; a dead worker is found sooner by
# the coordination service's heartbeats.
COLLECTIVE_TIMEOUT_SECONDS = 1800.0
# The jobs `MultiWorkerMirroredStrategy` trains with ("ps" and "evaluator" belong to other setups).
_TRAINING_JOBS = ("chief", "worker")
_EXAMPLE = ('{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
            '"task": {"type": "worker", "index": 0}}')


class DistributeError(ValueError):
    """`--strategy multi-worker` without a usable `TF_CONFIG`."""


class WorkerLost(RuntimeError):
    """A multi-worker job lost a worker (or cannot reach one) while training."""


def read_tf_config(environ=None):
    """The cluster and this process's task from `TF_CONFIG`, checked.

    Args:
        environ: the environment to read (default `os.environ`).

    Returns:
        The parsed dict: `cluster` ({"worker": ["host:port", ...], optionally "chief": [one]})
        and `task` ({"type": "worker" or "chief", "index": i}).

    Raises:
        DistributeError: naming TF_CONFIG: unset, not JSON, or a cluster or task that does not
            describe a multi-worker job this process is part of.
    """
    environ = os.environ if environ is None else environ
    text = environ.get(TF_CONFIG, "").strip()
    if not text:
        raise DistributeError(
            f"--strategy multi-worker reads the cluster from the {TF_CONFIG} environment variable, "
            f"which is not set; set it on every worker, e.g. {TF_CONFIG}='{_EXAMPLE}' (index 1 on "
            f"the second machine)")
    try:
        config = json.loads(text)
    except json.JSONDecodeError as err:
        raise DistributeError(f"{TF_CONFIG} is not valid JSON ({err}): {text!r}") from None
    if not isinstance(config, dict):
        raise DistributeError(f"{TF_CONFIG} must be a JSON object like {_EXAMPLE}, got {text!r}")
    _check_cluster(config.get("cluster"))
    _check_task(config.get("task"), config["cluster"])
    return config


def _check_cluster(cluster):
    if not isinstance(cluster, dict) or not cluster:
        raise DistributeError(f'{TF_CONFIG} needs "cluster": {{"worker": ["host:port", ...]}}, got {cluster!r}')
    for job, addresses in cluster.items():
        if job not in _TRAINING_JOBS:
            raise DistributeError(f'{TF_CONFIG}: job {job!r} in "cluster" is not one of {_TRAINING_JOBS} '
                                  f"(multi-worker training has no parameter servers or evaluators)")
        if not isinstance(addresses, list) or not addresses:
            raise DistributeError(f'{TF_CONFIG}: "cluster" {job!r} must be a non-empty list of "host:port", '
                                  f"got {addresses!r}")
        for address in addresses:
            host, _, port = str(address).rpartition(":")
            if not isinstance(address, str) or not host or not port.isdigit():
                raise DistributeError(f'{TF_CONFIG}: {job} address {address!r} is not "host:port"')
    if len(cluster.get("chief", [])) > 1:
        raise DistributeError(f"{TF_CONFIG}: a cluster has at most one chief, got {cluster['chief']}")


def _check_task(task, cluster):
    if not isinstance(task, dict):
        raise DistributeError(f'{TF_CONFIG} needs "task": {{"type": "worker", "index": i}} (this '
                              f"process's place in the cluster), got {task!r}")
    kind, index = task.get("type"), task.get("index")
    if kind not in cluster:
        raise DistributeError(f'{TF_CONFIG}: task type {kind!r} is not a job of "cluster" ({sorted(cluster)})')
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(cluster[kind]):
        raise DistributeError(f"{TF_CONFIG}: task index {index!r} is not one of the {len(cluster[kind])} "
                              f"{kind} addresses")


def make_strategy(name):
    """The strategy `--strategy name` asks for; None for "default".

    Create it before anything else touches TensorFlow: "multi-worker" starts this process's
    collective server, which must happen before TensorFlow initialises its devices.

    Raises:
        DistributeError: an unknown name, or "multi-worker" without a usable `TF_CONFIG`.
    """
    if name not in STRATEGIES:
        raise DistributeError(f"unknown strategy {name!r}; choose one of {STRATEGIES}")
    if name == "default":
        return None
    import tensorflow as tf

    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    read_tf_config()
    options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=COLLECTIVE_TIMEOUT_SECONDS)
    return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)


class Workers:
    """This process's part in training under `strategy` (None: no strategy, one process).

    Attributes:
        strategy: the `tf.distribute` strategy, or None.
        num_replicas: replicas in sync over all workers.
        num_workers: processes of the job (1 without "multi-worker").
        is_chief: this process writes the run directory.
        scratch: where a non-chief worker writes its copies instead (None on the chief).
    """

    def __init__(self, strategy=None):
        self.strategy = strategy
        self.num_replicas = strategy.num_replicas_in_sync if strategy is not None else 1
        resolver = getattr(strategy, "cluster_resolver", None)  # multi-worker strategies only
        jobs = resolver.cluster_spec().as_dict() if resolver is not None else {}
        self.num_workers = max(1, sum(len(jobs.get(job, ())) for job in _TRAINING_JOBS))
        self.is_chief = strategy is None or strategy.extended.should_checkpoint
        self._scratch = None
        if not self.is_chief:
            self._scratch = tempfile.TemporaryDirectory(
                prefix=f"powerbert-{resolver.task_type}{resolver.task_id}-")
        self.scratch = self._scratch.name if self._scratch else None
        self._barrier = None

    def scope(self):
        """The strategy's scope (nothing without a strategy): models built, compiled and trained in
        it have their variables on every replica."""
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()

    def barrier(self):
        """Wait until every worker gets here (nothing to wait for in one process)."""
        if self.num_workers == 1:
            return
        if self._barrier is None:
            import tensorflow as tf

            strategy = self.strategy

            def one():
                return tf.constant(1.0)

            def all_reduce():
                return strategy.reduce("SUM", strategy.run(one), axis=None)

            # Traced: run eagerly, the all-reduce warns of its overhead.
            self._barrier = tf.function(all_reduce, autograph=False)
        self._barrier()

    def distribute(self, dataset):
        """`dataset` of global batches `(features, labels)` as `model.fit` takes it under the
        strategy: per replica `(features, labels, weights)`, one piece of each global batch (see
        the module docstring). Without a strategy, `dataset` itself."""
        if self.strategy is None:
            return dataset
        return self.strategy.distribute_datasets_from_function(
            lambda context: _replica_pieces(dataset, context))

    def prepare_fit(self, model):
        """Make `model.fit` train the compiled `model` under the strategy (nothing without one).

        Keras 3.15's `fit` fails under `MultiWorkerMirroredStrategy` twice (keras-team/keras#20585):
        before training it reduces a first batch across replicas to build the compiled state
        (`strategy.reduce("MEAN", (features, labels))`: that strategy cannot reduce a structure,
        nor `MirroredStrategy` pieces of different sizes), and it reduces each step's scalar logs
        along an axis they lack. Our models are built and their compiled loss has no state, so
        only the optimizer is built here, Keras' build is skipped, and `fit` gets a train function
        that reduces the logs over the replicas as they are.
        """
        if self.strategy is None:
            return
        import tensorflow as tf

        strategy = self.strategy
        with strategy.scope():
            if not model.optimizer.built:
                model.optimizer.build(model.trainable_variables)
        model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None

        @tf.function(reduce_retracing=True, autograph=False)  # as Keras traces its own
        def train_step(data):
            logs = strategy.run(model.train_step, args=(data,))
            return {name: strategy.reduce("MEAN", value, axis=None) for name, value in logs.items()}

        model.train_function = lambda iterator: train_step(next(iterator))

    @contextlib.contextmanager
    def lost_worker_check(self, what):
        """Turn the errors of a lost worker inside the block into `WorkerLost` (with several
        workers; one process keeps TensorFlow's errors as they are)."""
        if self.num_workers == 1:
            yield
            return
        import tensorflow as tf

        try:
            yield
        except (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.AbortedError,
                tf.errors.CancelledError) as err:
            raise WorkerLost(
                f"the {self.num_workers}-worker job lost a worker during {what} ({_cause(err)}); the run "
                f"directory keeps the last checkpoint: start the same command on every worker again to "
                f"resume from it") from err


def _cause(err):
    """The informative line of a collective's error (TensorFlow puts it after its trace)."""
    lines = [line.strip() for line in str(err.message).splitlines() if line.strip()]
    for i, line in enumerate(lines):
        if "aborted by:" in line:
            cause = line.split("aborted by:", 1)[1].strip()
            if i + 1 < len(lines) and lines[i + 1].startswith("/job:"):
                cause += " " + lines[i + 1]  # the task that stopped
            return cause
    return f"{type(err).__name__}: {lines[0] if lines else ''}"


def _replica_pieces(dataset, context):
    """This input pipeline's pieces of each global batch in `dataset`, one per local replica, in
    replica order (`distribute_datasets_from_function` hands a pipeline's elements to its
    replicas in turn).

    Piece r of a batch of n examples is rows [r * n // R, (r + 1) * n // R) of R replicas. Keras'
    loss on replica r is sum(w_i * loss_i) / (n_r * R) for its n_r rows, so w_i = R * n_r / n
    makes the replicas' sum the mean over the n examples.
    """
    import tensorflow as tf

    replicas = context.num_replicas_in_sync
    local = replicas // context.num_input_pipelines
    first = context.input_pipeline_id * local

    def pieces(features, labels):
        n = tf.shape(labels)[0]
        out = []
        for r in range(first, first + local):
            start, stop = r * n // replicas, (r + 1) * n // replicas
            weight = tf.cast(replicas * (stop - start), tf.float32) / tf.cast(n, tf.float32)
            out.append(({name: value[start:stop] for name, value in features.items()}, labels[start:stop],
                        tf.fill([stop - start], weight)))
        return tuple(out)

    def one_by_one(*per_replica):
        stream = tf.data.Dataset.from_tensors(per_replica[0])
        for piece in per_replica[1:]:
            stream = stream.concatenate(tf.data.Dataset.from_tensors(piece))
        return stream

    return dataset.map(pieces).flat_map(one_by_one)
