"""`TrainConfig`: every setting of a pipeline run, from the task's Table-1 row, a preset and the CLI.

One source of truth: the task spec gives the paper's hyper-parameters, a preset (data, below)
overrides some of them, and command-line flags override both. The resolved config is written to
the run directory as `config.json`; a resumed run must use the same config.
"""

import dataclasses
import functools
from typing import Optional

from training.tasks import TaskSpec, get_task

STEPS = ("finetune", "search", "retrain")
# Where built-in tasks are read from (`training.task_source`): the local files through the local
# tfds builder, or tensorflow-datasets' own glue/* builders (online).
DATA_SOURCES = ("local", "tfds")
# `--strategy`: how many devices and machines train (`training.distribute`).
STRATEGIES = ("default", "mirrored", "multi-worker")
# `--mixed-precision`: the reduced precision of Keras' mixed policy ("mixed_bfloat16", ...); None
# trains in float32.
MIXED_PRECISIONS = ("bfloat16", "float16")

# Presets are data: field overrides applied on top of the task's defaults.
PRESETS = {
    # The paper's setup (supplementary Table 1): full training set, 3 epochs per step.
    "paper": {"epochs": 3},
    # Finishes the SST-2 pipeline with MiniLM in about 10 minutes on 2 CPU cores. The search has
    # only ~60 steps, so the retention weights need a far larger learning rate than Table 1's
    # to move: the full SST-2 run (500 search steps at 1e-2) reached a 3.1x FLOP ratio.
    "quick": {"epochs": 1, "train_subset": 4000, "search_subset": 2000, "retrain_subset": 3000,
              "dev_subset": 872, "batch_size": 32, "lr_bert": 5e-5, "lr_soft_extract": 8e-2},
}


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Resolved settings of one pipeline run (see `powerbert train --help` for each field)."""

    task: str
    init: str = "minilm-l6"
    preset: str = "paper"
    max_length: int = 128
    batch_size: int = 32
    epochs: int = 3
    search_epochs: Optional[int] = None
    retrain_epochs: Optional[int] = None
    lr_bert: float = 3e-5
    lr_soft_extract: float = 5e-4
    lambda_: float = 2e-4
    warmup_fraction: float = 0.1
    weight_decay: float = 0.01
    dropout: float = 0.1
    train_subset: Optional[int] = None
    search_subset: Optional[int] = None
    retrain_subset: Optional[int] = None
    dev_subset: Optional[int] = None
    bucket_finetune: bool = True
    length_aware: bool = False
    relative_retention: bool = False
    word_selection: str = "significance"
    data_source: str = "local"
    rounding: str = "ceil"
    retention: Optional[tuple] = None
    seed: int = 0
    selection_holdout: Optional[float] = None
    checkpoint_every: int = 200
    strategy: str = "default"
    mixed_precision: Optional[str] = None

    def __post_init__(self):
        if self.data_source not in DATA_SOURCES:
            raise ValueError(f"data_source must be one of {DATA_SOURCES}, got {self.data_source!r}")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if self.mixed_precision is not None and self.mixed_precision not in MIXED_PRECISIONS:
            raise ValueError(f"mixed_precision must be one of {MIXED_PRECISIONS} (or None: float32), "
                             f"got {self.mixed_precision!r}")
        if self.length_aware and self.relative_retention:
            raise ValueError("--length-aware (per batch) and --relative-retention (per input) scale "
                             "the counts in two different ways; choose one")
        if self.word_selection != "significance":
            self._check_static_word_selection()
        if self.selection_holdout is not None and not 0 < self.selection_holdout < 1:
            raise ValueError(f"selection_holdout must be a fraction between 0 and 1, got {self.selection_holdout}")
        if self.retention is not None:
            object.__setattr__(self, "retention", list(self.retention_config.lengths))

    def _check_static_word_selection(self):
        """Head-WS and Rand-WS re-train the paper's fixed-count hard mode (imports TensorFlow, so
        only when one is asked for)."""
        from powerbert_tf.elimination import WORD_SELECTIONS

        if self.word_selection not in WORD_SELECTIONS:
            raise ValueError(f"word_selection must be one of {WORD_SELECTIONS}, got {self.word_selection!r}")
        if self.length_aware or self.relative_retention:
            raise ValueError(f"--word-selection {self.word_selection} re-trains with fixed counts; it does not "
                             f"combine with --length-aware or --relative-retention")

    @functools.cached_property  # built once: __post_init__ validates with it, callers reuse it
    def retention_config(self):
        """`--retention` as a `RetentionConfig` at N = `max_length`, relative with
        `--relative-retention` (None when not given).

        Raises:
            RetentionError: the counts break the rules.
        """
        if self.retention is None:
            return None
        from powerbert_tf import RetentionConfig

        return RetentionConfig(tuple(self.retention), self.max_length, self.relative_retention)

    def epochs_for(self, step):
        explicit = {"search": self.search_epochs, "retrain": self.retrain_epochs}.get(step)
        return explicit or self.epochs

    def subset_for(self, step):
        """Training examples used by a step (None: the whole training set)."""
        specific = {"search": self.search_subset, "retrain": self.retrain_subset}.get(step)
        return specific or self.train_subset

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def defaults(cls):
        """{field: default} of the fields that have one."""
        return {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}

    @classmethod
    def from_dict(cls, data):
        """A config saved by an earlier version: settings added since take their defaults."""
        return cls(**{**cls.defaults(), **data})


def resolve_config(task, preset="paper", **overrides):
    """`task` (name or `TaskSpec`) defaults, then `PRESETS[preset]`, then the non-None `overrides`."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    spec = task if isinstance(task, TaskSpec) else get_task(task)
    values = {"task": spec.name, "preset": preset, "max_length": spec.max_length,
              "batch_size": spec.batch_size, "lr_bert": spec.lr_bert,
              "lr_soft_extract": spec.lr_soft_extract, "lambda_": spec.lambda_}
    values.update(PRESETS[preset])
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"unknown settings {unknown}")
    values.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig(**values)


# Settings that do not make a run depart from the paper's setup: names, where it starts from,
# how often it saves, the seed (every seed is the paper's protocol) and the machines it runs on
# (the same global batches on any number of replicas).
_NOT_SETUP = ("task", "preset", "init", "checkpoint_every", "seed", "data_source", "strategy")


def differences_from_paper(config: TrainConfig, task=None):
    """{setting: {"paper": value, "used": value}} where `config` departs from the paper's setup:
    its task's Table-1 row, 3 epochs per step, the full training set (`PRESETS["paper"]`).

    `task`: the `TaskSpec` for a user task (default: `config.task` by name).
    """
    paper_config = resolve_config(task or config.task, "paper")
    paper, used = paper_config.to_dict(), config.to_dict()
    # An unset step epoch count means "as many as fine-tuning"; compare the counts each step ran.
    for step in ("search", "retrain"):
        paper[f"{step}_epochs"], used[f"{step}_epochs"] = paper_config.epochs_for(step), config.epochs_for(step)
    return {k: {"paper": paper[k], "used": used[k]} for k in sorted(used)
            if k not in _NOT_SETUP and used[k] != paper[k]}
