"""`RunDir`: the only code that reads or writes a run directory's files.

Layout of `<run>/`:
- `config.json`: the resolved `TrainConfig` (`training.config`).
- `task.json`: the run's `TaskSpec` (`TaskSpec.to_dict`): its files, columns and labels, so a
  resume and the export need no data flags (runs started before it existed: the built-in task
  named in `config.json`).
- `finetune/`, `search/`, `retrain/`: one directory per step with `model.keras`, `metrics.json`
  and, once complete, `done.json`; inside, the step's resumable checkpoint (`training.fit_step`
  and `training.search` own those files) and the search's `masses.json`.
- `retention.json`: the `RetentionConfig` the search found (or `--retention` gave).
- `retention.png`, `summary.json`, `logs/` (TensorBoard).

`RunDir.check()` is the one consistency check every reader uses (export, benchmark, serving
results): the config reads, the retention is for the config's N, and the re-trained model keeps
what `retention.json` says.

In a multi-worker job only the chief writes here: the other workers read these files and write
their own copies into a scratch directory (`RunDir(path, scratch=...)`, `training.distribute`).
"""

import os
import shutil

from powerbert_tf import RetentionConfig, RetentionError
from training.atomic_files import read_json, write_json
from training.config import STEPS, TrainConfig
from training.tasks import TaskSpec, UnknownTaskError, get_task

CONFIG_FILE, RETENTION_FILE, SUMMARY_FILE = "config.json", "retention.json", "summary.json"
TASK_FILE = "task.json"
MODEL_FILE, DONE_FILE, METRICS_FILE, MASSES_FILE = "model.keras", "done.json", "metrics.json", "masses.json"

# The steps each setting changes. A setting that differs from the saved config blocks a resume
# only when one of its steps has started: that step's saved progress was made with the old value.
# Settings not listed change every step.
_STEPS_OF_SETTING = {
    "search_epochs": ("search",), "lr_soft_extract": ("search",), "lambda_": ("search",),
    "rounding": ("search",), "search_subset": ("search",),
    "retrain_epochs": ("retrain",), "retrain_subset": ("retrain",), "length_aware": ("retrain",),
    "word_selection": ("retrain",),
    "relative_retention": ("search", "retrain"),
    "retention": ("retrain",), "bucket_finetune": ("finetune",),
    # The machines a command runs on: every replica count trains on the same global batches, so a
    # run started on several workers may resume on one, or the other way round.
    "strategy": (),
    # How often progress is saved: a started step keeps the interval it started with.
    "checkpoint_every": (),
    # A label: the values a preset sets are settings of their own, compared one by one.
    "preset": (),
}


class RunDirError(ValueError):
    """The directory is not a (complete enough) run directory, or its files disagree."""


class RunConfigMismatch(RunDirError):
    """The run directory was started with settings that change a step already started."""


class RunDir:
    """A `powerbert train --out` directory.

    Args:
        path: the directory (need not exist before `start`).
        scratch: where this process writes instead of `path` (a non-chief worker of a multi-worker
            job); None: it writes `path` itself. Reads always come from `path`.
    """

    def __init__(self, path, scratch=None):
        self.path = os.fspath(path)
        self.scratch = None if scratch is None else os.fspath(scratch)

    def data_cache(self, config):
        """Where built-in tasks read through the local tfds builder are prepared (so a run's
        prepared data always comes from its own data directory); None for `--data tfds`."""
        return self.write_path("tfds") if config.data_source == "local" else None

    def file(self, *parts):
        """A file of the run (what this process reads)."""
        return os.path.join(self.path, *parts)

    def write_path(self, *parts):
        """Where this process writes `file(*parts)`: that file, or its copy under `scratch`."""
        return os.path.join(self.scratch or self.path, *parts)

    def step_dir(self, step):
        return self.file(step)

    def step_write_dir(self, step):
        return self.write_path(step)

    def log_dir(self, step):
        return self.write_path("logs", step)

    # === Config ===

    def read_config(self):
        """The saved `TrainConfig`; settings added since the run started take their defaults.

        Raises:
            RunDirError: no such directory, or no readable `config.json`.
        """
        if not os.path.isdir(self.path):
            raise RunDirError(f"run directory {self.path!r} does not exist")
        saved = read_json(self.file(CONFIG_FILE))
        if saved is None:
            raise RunDirError(f"{self.path} is not a run directory (no {CONFIG_FILE}); pass the --out "
                              f"directory of `powerbert train`")
        try:
            return TrainConfig.from_dict(saved)
        except (TypeError, ValueError) as err:
            raise RunDirError(f"{self.file(CONFIG_FILE)}: {err}") from None

    def has_config(self):
        """True once a run has started here (`config.json` exists)."""
        return os.path.isfile(self.file(CONFIG_FILE))

    def start(self, config: TrainConfig, task: TaskSpec = None):
        """Create the directory or check a resume against it, then save `config` and `task`.

        Args:
            task: the run's task (default: the built-in task `config.task`).

        Raises:
            RunConfigMismatch: a changed setting, or other data, affects a step that has already
                started.
        """
        task = task or get_task(config.task)
        os.makedirs(self.write_path(), exist_ok=True)
        if self.has_config():
            self._check_same_task(task)  # first: other data also renames the task in the config
            self._check_same_settings(config)
        write_json(self.write_path(CONFIG_FILE), config.to_dict())
        write_json(self.write_path(TASK_FILE), task.to_dict())

    def _check_same_settings(self, config: TrainConfig):
        """Raise `RunConfigMismatch` if a setting of a started step differs from the saved one."""
        saved, current = self.read_config().to_dict(), config.to_dict()
        blocking = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k)
                          and any(self.step_started(s) for s in _STEPS_OF_SETTING.get(k, STEPS)))
        if blocking:
            raise RunConfigMismatch(
                f"{self.path} was started with different settings ({', '.join(blocking)}) and the "
                f"steps they change have started; re-run with the same options to resume, or "
                f"choose another --out")

    def _check_same_task(self, task: TaskSpec):
        """Raise `RunConfigMismatch` if a step has started on another task than `task` (the data
        changes every step)."""
        if not os.path.isfile(self.file(TASK_FILE)) or not any(self.step_started(s) for s in STEPS):
            return
        saved, current = self.read_task().to_dict(), task.to_dict()
        changed = [f"{k}: {saved[k]!r} -> {current[k]!r}" for k in sorted(saved) if saved[k] != current[k]]
        if changed:
            raise RunConfigMismatch(
                f"{self.path} was started on other data ({'; '.join(changed)}) and its steps have "
                f"started; resume without the data flags (the run's {TASK_FILE} is read back), or "
                f"choose another --out")

    def read_task(self) -> TaskSpec:
        """The run's `TaskSpec`: `task.json`, else (runs started before it was written) the
        built-in task named in `config.json`.

        Raises:
            RunDirError: not a run directory, a broken `task.json`, or neither it nor a built-in
                task.
        """
        saved = read_json(self.file(TASK_FILE))
        if saved is None:
            name = self.read_config().task
            try:
                return get_task(name)
            except UnknownTaskError:
                raise RunDirError(f"{self.path} has no {TASK_FILE} and its task {name!r} is not built "
                                  f"in; it cannot tell its files and labels") from None
        try:
            return TaskSpec.from_dict(saved)
        except ValueError as err:
            raise RunDirError(f"{self.file(TASK_FILE)}: {err}") from None

    # === Steps ===

    def step_started(self, step):
        directory = self.step_dir(step)
        return os.path.isdir(directory) and bool(os.listdir(directory))

    def step_done(self, step):
        return os.path.isfile(self.file(step, DONE_FILE))

    def mark_done(self, step, info):
        write_json(self.write_path(step, DONE_FILE), info)

    def done_info(self, step):
        """`done.json` of a completed step, else None."""
        return read_json(self.file(step, DONE_FILE))

    def model_path(self, step):
        return self.file(step, MODEL_FILE)

    def has_model(self, step):
        return os.path.isfile(self.model_path(step))

    def keep_best_model(self, step, best_path, metrics):
        """The step's best checkpoint becomes its `model.keras`, with its dev metrics."""
        shutil.copy(best_path, self.write_path(step, MODEL_FILE))
        write_json(self.write_path(step, METRICS_FILE), metrics)

    def adopt_model(self, step, model, metrics):
        """`model` becomes the step's `model.keras`, with its dev metrics (an imported model)."""
        os.makedirs(self.step_write_dir(step), exist_ok=True)
        self.save_model(step, model)
        write_json(self.write_path(step, METRICS_FILE), metrics)

    def save_model(self, step, model):
        model.save(self.write_path(step, MODEL_FILE))

    def load_model(self, step, compile=True):
        """The step's `model.keras` (`compile=False`: inference only, without the optimizer).

        Raises:
            RunDirError: the step has no model yet.
        """
        import keras

        self.require_model(step)
        return keras.saving.load_model(self.model_path(step), compile=compile)

    def require_model(self, step):
        """Raise `RunDirError`, saying which step to run, unless the step has its model."""
        if not self.has_model(step):
            raise RunDirError(f"{self.path} has no {step}/{MODEL_FILE} (the {step} step has not "
                              f"finished); run `powerbert train ... --out {self.path}` first")

    def final_step(self):
        """The step whose model is the run's result: "retrain", else "finetune".

        Raises:
            RunDirError: neither has a model yet.
        """
        for step in ("retrain", "finetune"):
            if self.has_model(step):
                return step
        raise RunDirError(f"{self.path} has no finished model yet (retrain/ or finetune/{MODEL_FILE})")

    # === Retention ===

    def has_retention(self):
        return os.path.isfile(self.file(RETENTION_FILE))

    def write_retention(self, retention: RetentionConfig, masses=None):
        write_json(self.write_path(RETENTION_FILE), retention.to_dict())
        if masses is not None:
            write_json(self.write_path("search", MASSES_FILE), list(masses))

    def read_retention(self):
        """The run's `RetentionConfig`.

        Raises:
            RunDirError: no `retention.json` (the search has not finished) or a broken one.
        """
        if not self.has_retention():
            raise RunDirError(f"{self.path} has no {RETENTION_FILE} (the search step has not finished)")
        try:
            return RetentionConfig.from_dict(read_json(self.file(RETENTION_FILE)))
        except (RetentionError, ValueError) as err:
            raise RunDirError(f"{self.file(RETENTION_FILE)}: {err}") from None

    # === Summary ===

    def write_summary(self, summary):
        write_json(self.write_path(SUMMARY_FILE), summary)

    def read_summary(self):
        return read_json(self.file(SUMMARY_FILE))

    # === The one consistency check ===

    def check(self, need=("finetune",)):
        """(config, retention or None) after checking the files agree.

        Args:
            need: steps whose model must exist ("retrain" also needs `retention.json`).

        Raises:
            RunDirError: a missing file, or a `retention.json` for another N than the config's.
        """
        config = self.read_config()
        for step in need:
            self.require_model(step)
        retention = None
        if self.has_retention() or "retrain" in need:
            retention = self.read_retention()
            if retention.sequence_length != config.max_length:
                raise RunDirError(f"{self.file(RETENTION_FILE)} is for N={retention.sequence_length} but "
                                  f"{CONFIG_FILE} has max_length={config.max_length}")
        return config, retention

    def check_model(self, step, model, retention):
        """Check a loaded re-trained model keeps what `retention.json` says.

        Raises:
            RunDirError: the model is not a hard-extract model at `retention`.
        """
        if step != "retrain":
            return model
        kept = model.encoder.retention
        if model.encoder.elimination != "hard" or kept is None:
            raise RunDirError(f"{self.model_path(step)} is not a hard-extract model")
        if retention is not None and (tuple(kept.lengths) != retention.lengths
                                      or kept.sequence_length != retention.sequence_length):
            raise RunDirError(f"{self.model_path(step)} keeps {list(kept.lengths)} word vectors per layer "
                              f"of N={kept.sequence_length} but {RETENTION_FILE} says "
                              f"{list(retention.lengths)} of N={retention.sequence_length}")
        return model

    def load_checked_model(self, step, retention=None):
        """`load_model(step, compile=False)` followed by `check_model`."""
        return self.check_model(step, self.load_model(step, compile=False), retention)
