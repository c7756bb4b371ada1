"""`RunDir`: the only code that reads or writes a run directory's files.

Layout of `<run>/`:
- `config.json`: the resolved `TrainConfig` (`training.config`).
- `finetune/`, `search/`, `retrain/`: one directory per step with `model.keras`, `metrics.json`
  and, once complete, `done.json`; inside, the step's resumable checkpoint (`training.fit_step`
  and `training.search` own those files) and the search's `masses.json`.
- `retention.json`: the `RetentionConfig` the search found (or `--retention` gave).
- `retention.png`, `summary.json`, `logs/` (TensorBoard).

`RunDir.check()` is the one consistency check every reader uses (export, benchmark, serving
results): the config reads, the retention is for the config's N, and the re-trained model keeps
what `retention.json` says.
"""

import os
import shutil

from powerbert_tf import RetentionConfig, RetentionError
from training.atomic_files import read_json, write_json
from training.config import STEPS, TrainConfig

CONFIG_FILE, RETENTION_FILE, SUMMARY_FILE = "config.json", "retention.json", "summary.json"
MODEL_FILE, DONE_FILE, METRICS_FILE, MASSES_FILE = "model.keras", "done.json", "metrics.json", "masses.json"

# The steps each setting changes. A setting that differs from the saved config blocks a resume
# only when one of its steps has started: that step's saved progress was made with the old value.
# Settings not listed change every step.
_STEPS_OF_SETTING = {
    "search_epochs": ("search",), "lr_soft_extract": ("search",), "lambda_": ("search",),
    "rounding": ("search",), "search_subset": ("search",),
    "retrain_epochs": ("retrain",), "retrain_subset": ("retrain",), "length_aware": ("retrain",),
    "relative_retention": ("search", "retrain"),
    "retention": ("retrain",), "bucket_finetune": ("finetune",),
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
    """

    def __init__(self, path):
        self.path = os.fspath(path)

    def file(self, *parts):
        return os.path.join(self.path, *parts)

    def step_dir(self, step):
        return self.file(step)

    def log_dir(self, step):
        return self.file("logs", step)

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

    def start(self, config: TrainConfig):
        """Create the directory or check a resume against it, then save `config`.

        Raises:
            RunConfigMismatch: a changed setting affects a step that has already started.
        """
        os.makedirs(self.path, exist_ok=True)
        if os.path.isfile(self.file(CONFIG_FILE)):
            saved, current = self.read_config().to_dict(), config.to_dict()
            blocking = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k)
                              and any(self.step_started(s) for s in _STEPS_OF_SETTING.get(k, STEPS)))
            if blocking:
                raise RunConfigMismatch(
                    f"{self.path} was started with different settings ({', '.join(blocking)}) and the "
                    f"steps they change have started; re-run with the same options to resume, or "
                    f"choose another --out")
        write_json(self.file(CONFIG_FILE), config.to_dict())

    # === Steps ===

    def step_started(self, step):
        directory = self.step_dir(step)
        return os.path.isdir(directory) and bool(os.listdir(directory))

    def step_done(self, step):
        return os.path.isfile(self.file(step, DONE_FILE))

    def mark_done(self, step, info):
        write_json(self.file(step, DONE_FILE), info)

    def done_info(self, step):
        """`done.json` of a completed step, else None."""
        return read_json(self.file(step, DONE_FILE))

    def model_path(self, step):
        return self.file(step, MODEL_FILE)

    def has_model(self, step):
        return os.path.isfile(self.model_path(step))

    def keep_best_model(self, step, best_path, metrics):
        """The step's best checkpoint becomes its `model.keras`, with its dev metrics."""
        shutil.copy(best_path, self.model_path(step))
        write_json(self.file(step, METRICS_FILE), metrics)

    def save_model(self, step, model):
        model.save(self.model_path(step))

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
        write_json(self.file(RETENTION_FILE), retention.to_dict())
        if masses is not None:
            write_json(self.file("search", MASSES_FILE), list(masses))

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
        write_json(self.file(SUMMARY_FILE), summary)

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
