"""`RunModels`: the benchmark's view of a run directory's models (read through `RunDir`)."""

import os
import time

from benchmarks.machine import rss_kb
from benchmarks.settings import BenchError
from serving.export import export_saved_model
from training.run_dir import RunDir, RunDirError

# Benchmark model name -> the run step whose model it is.
MODEL_STEPS = {"bert": "finetune", "power": "retrain"}


class RunModels:
    """Loads the run's fine-tuned (`bert`) and re-trained (`power`) models on first use, and
    builds `power-la` (the re-trained weights with length-aware retention). A multiple-choice
    model is loaded as its option scorer: it is timed on the option sequences one by one.

    Args:
        run_dir: a `powerbert train --out` directory.
        needed: model names the chosen variants use; checked before anything is timed.

    Attributes:
        config: the run's `TrainConfig`; `retention`: its `RetentionConfig` (None if not needed).
        `load_seconds[name]` and `load_rss_mb[name]` record what each load cost.

    Raises:
        BenchError: `RunDir.check` failed (missing step, retention for another N, ...).
    """

    def __init__(self, run_dir, tokenizer, task, needed=("bert", "power")):
        self.run = RunDir(run_dir)
        self.tokenizer, self.task = tokenizer, task
        steps = sorted({MODEL_STEPS["power" if n == "power-la" else n] for n in needed})
        try:
            self.config, self.retention = self.run.check(need=steps)
        except RunDirError as err:
            raise BenchError(str(err)) from None
        self.max_length = self.config.max_length
        self.load_seconds, self.load_rss_mb, self._models = {}, {}, {}

    def model_path(self, name):
        return self.run.model_path(MODEL_STEPS[name])

    def fingerprint(self):
        stats = {name: [os.path.getsize(self.model_path(name)), os.stat(self.model_path(name)).st_mtime_ns]
                 for name in MODEL_STEPS if self.run.has_model(MODEL_STEPS[name])}
        return {"models": stats, "max_length": self.max_length,
                "retention": list(self.retention.lengths) if self.retention else None}

    def get(self, name):
        if name not in self._models:
            before, started = rss_kb(), time.perf_counter()
            self._models[name] = self._build_length_aware() if name == "power-la" else self._load(name)
            self.load_seconds[name] = time.perf_counter() - started
            self.load_rss_mb[name] = (rss_kb() - before) / 1024
        return self._models[name]

    def _load(self, name):
        try:
            model = self.run.load_checked_model(MODEL_STEPS[name], self.retention)
        except RunDirError as err:
            raise BenchError(str(err)) from None
        return model.option_scorer() if self.task.is_multiple_choice else model

    def _build_length_aware(self):
        return self.get("power").with_elimination(elimination="hard", retention=self.retention,
                                                  length_aware=True)

    def export(self, name, base, jit_compile=False, dynamic_length=False):
        """`serving.export.export_saved_model` of model `name` as version 1 of `base`."""
        model = self.get(name)
        labels = list(self.task.label_names) if model.num_classes > 1 else []
        return export_saved_model(model, self.tokenizer, base=base, max_length=self.max_length,
                                  label_names=labels, task_name=self.task.name, pair=self.task.is_pair,
                                  version=1, jit_compile=jit_compile, dynamic_length=dynamic_length)
