"""The three PoWER-BERT steps as one resumable run in a run directory (`training.run_dir`).

Every step runs under the run's `tf.distribute` strategy (`training.distribute`: one device, this
machine's devices, or several machines with the chief writing the run directory), and builds its
models under the Keras dtype policy of `--mixed-precision` (float32 by default). A saved model
keeps its policy (its layers carry it), so it loads and predicts in that precision anywhere.
"""

import contextlib
import functools
import sys
import time

import keras
import tensorflow as tf

from powerbert_tf import RetentionConfig
from powerbert_tf.loading import resolve_checkpoint
from powerbert_tf.bert_config import BertConfig
from training.config import STEPS, TrainConfig, differences_from_paper
from training.distribute import Workers
from training.fit_step import best_model_path, checkpointed_fit, evaluate
from training.plots import plot_retention
from training.run_dir import RunDir
from training.schedules import finetuning_optimizer
from training.search import ConfigurationSearch, run_search
from training.task_data import TaskData
from training.data import task_for_data
from training.tasks import get_task


class Pipeline:
    """Fine-tune, configuration search and re-train for one `TrainConfig` in `out_dir`."""

    def __init__(self, config: TrainConfig, out_dir, data_dir=None, task=None, strategy=None, verbose=1):
        """`task`: a `TaskSpec` for user data (`training.user_task.user_task`); default `config.task`
        in the layout the data directory holds (`training.data.task_for_data`). The run directory
        records it as `task.json`.

        `strategy`: the `tf.distribute` strategy of `config.strategy`
        (`training.distribute.make_strategy`), None for one device."""
        self.workers = Workers(strategy)
        self.config, self.verbose = config, verbose
        self.run_dir = RunDir(out_dir, scratch=self.workers.scratch)
        self.strategy = strategy or tf.distribute.get_strategy()
        if task is None:
            task = get_task(config.task) if config.data_source == "tfds" else task_for_data(config.task, data_dir)
        self.task = task
        self.data = TaskData(config, self.task, data_dir=data_dir, cache_dir=self.run_dir.data_cache(config))
        self.train, self.dev, self.selection = self.data.train, self.data.dev, self.data.selection
        source = resolve_checkpoint(config.init)
        bert = BertConfig.from_json_file(source.config_path)
        if config.max_length > bert.max_position_embeddings:
            raise ValueError(f"max_length={config.max_length} exceeds the {config.init} encoder's "
                             f"max_position_embeddings={bert.max_position_embeddings}")
        if config.retention is not None:
            config.retention_config.check_num_layers(bert.num_hidden_layers)
        self.tokenizer = self.data.tokenizer
        self.run_dir.start(config, self.task)

    # === Data ===
    def _loss(self, reduction="sum_over_batch_size"):
        return self.data.loss(reduction)

    def dev_dataset(self, bucket=False):
        return self.data.dev_dataset(bucket)

    # === Steps ===
    def run(self, steps=STEPS):
        with dtype_policy(self.config.mixed_precision):
            for step in steps:
                if self.run_dir.step_done(step):
                    print(f"[{step}] already complete, skipping", flush=True)
                    continue
                print(f"[{step}] starting", flush=True)
                # The seed reaches every source of randomness we control: the head's initial weights
                # and dropout (Python, NumPy and TF generators); subsets and shuffles use it too.
                keras.utils.set_random_seed(self.config.seed + STEPS.index(step))
                started = time.time()
                with self.workers.lost_worker_check(step):
                    info = getattr(self, f"_{step}")()
                    info["wall_seconds"] = round(time.time() - started, 1)
                    info["replicas"] = self.workers.num_replicas
                    self.run_dir.mark_done(step, info)
                    # The next step reads this one's model, which the chief has now written.
                    self.workers.barrier()
        return self.write_summary()

    def _compile(self, model, total_steps):
        model.compile(optimizer=finetuning_optimizer(self.config, total_steps), loss=self._loss())
        return model

    def _fit(self, step, build_model, bucket, dev_bucket=False):
        make_stream, total = self.data.train_plan(step, bucket=bucket, drop_remainder=False)
        progress = checkpointed_fit(
            lambda steps: self._compile(build_model(), steps), make_stream, total,
            self.data.selection_dataset(bucket=dev_bucket), self.task, self.run_dir.step_dir(step),
            self.run_dir.log_dir(step), self.config.checkpoint_every, self.verbose,
            selection_name=self.data.selection_name, workers=self.workers,
            write_dir=self.run_dir.step_write_dir(step))
        best = best_model_path(self.run_dir.step_dir(step))
        chosen_on = progress["best"]["dev"]
        # Loaded once, only if dev or another split needs it.
        best_model = functools.cache(lambda: keras.saving.load_model(best, compile=False))
        dev = chosen_on if self.selection is self.dev else evaluate(
            best_model(), self.dev_dataset(bucket=dev_bucket), self.task)
        other_dev = {split: evaluate(best_model(), self.data.dev_dataset(dev_bucket, split), self.task)
                     for split in self.task.other_dev_splits}
        self.run_dir.keep_best_model(step, best, dev)
        return {"dev": dev, "other_dev": other_dev, "selection": chosen_on, "steps": progress["steps_done"],
                "best_step": progress["best"]["step"]}

    def _finetune(self):
        return self._fit("finetune", self.data.pretrained_model, bucket=self.config.bucket_finetune)

    def _search(self):
        c = self.config
        finetuned = self.run_dir.load_model("finetune")
        # Relative retention weights cover fractions of each input, so padding does not matter and
        # the search runs on length-bucketed batches like fine-tuning.
        make_stream, total = self.data.train_plan("search", bucket=c.relative_retention, drop_remainder=True)
        with self.strategy.scope():
            model = finetuned.with_elimination(elimination="soft", sequence_length=c.max_length,
                                               relative_retention=c.relative_retention)
            search = ConfigurationSearch(
                model, self._loss(reduction="none"), lam=c.lambda_, lr_bert=c.lr_bert,
                lr_soft=c.lr_soft_extract, total_steps=total, global_batch=c.batch_size,
                warmup_fraction=c.warmup_fraction, weight_decay=c.weight_decay, strategy=self.strategy)
        dev = self.dev_dataset(bucket=c.relative_retention)
        progress = run_search(search, make_stream, total, self.run_dir.step_dir("search"), self.run_dir.log_dir("search"),
                              c.checkpoint_every, evaluate_dev=lambda: evaluate(model, dev, self.task),
                              verbose=self.verbose, write_dir=self.run_dir.step_write_dir("search"),
                              sync=self.workers.barrier)
        masses = search.masses()
        retention = RetentionConfig.from_masses(masses, c.max_length, rounding=c.rounding,
                                                relative=c.relative_retention)
        self.run_dir.save_model("search", model)
        self.run_dir.write_retention(retention, masses)
        plot_retention(retention, self.run_dir.write_path("retention.png"), masses=masses,
                       title=f"{self.task.name}: kept word vectors per layer "
                             f"(FLOP ratio {retention.flop_ratio:.2f}x)")
        dev_metrics = progress["history"][-1].get("dev") if progress["history"] else None
        return {"retention": retention.to_dict(), "masses": masses, "steps": progress["steps_done"],
                "dev_soft": dev_metrics}

    def _retrain(self):
        c = self.config
        if c.retention is not None:  # a configuration given on the command line wins
            retention = c.retention_config
            self.run_dir.write_retention(retention)
        else:
            retention = self.run_dir.read_retention()
        # Re-training without a search starts from the fine-tuned model.
        searched = self.run_dir.load_model("search" if self.run_dir.has_model("search") else "finetune")
        # Length-aware and relative models are trained and judged on length-bucketed batches: that
        # is how they are served (relative ones give the same answers at any padding).
        bucket = c.length_aware or retention.relative
        # Rand-WS draws its fixed per-layer priorities from the run's seed.
        return self._fit("retrain", lambda: searched.with_elimination(
            elimination="hard", retention=retention, length_aware=c.length_aware,
            word_selection=c.word_selection, selection_seed=c.seed),
            bucket=bucket, dev_bucket=bucket)

    # === Summary ===
    def write_summary(self):
        done = {step: self.run_dir.done_info(step) for step in STEPS}
        retention = self.run_dir.read_retention().to_dict() if self.run_dir.has_retention() else None
        summary = {
            "task": self.task.name, "metric": self.task.primary_metric, "init": self.config.init,
            "preset": self.config.preset, "max_length": self.config.max_length,
            # What the run actually used, and where that departs from Table 1 of the paper.
            "settings": self.config.to_dict(),
            "differs_from_paper": differences_from_paper(self.config, self.task),
            "baseline": done["finetune"]["dev"] if done["finetune"] else None,
            "power_bert": done["retrain"]["dev"] if done["retrain"] else None,
            # The task's other evaluation splits (MNLI's dev_mismatched), with each step's best model.
            "other_dev": {split: {"baseline": _other_dev(done["finetune"], split),
                                  "power_bert": _other_dev(done["retrain"], split)}
                          for split in self.task.other_dev_splits},
            "retention": retention["lengths"] if retention else None,
            "flop_ratio": retention["flop_ratio"] if retention else None,
            "wall_seconds": {s: d["wall_seconds"] for s, d in done.items() if d},
            "train_examples": {s: self.data.train_size(s) for s in STEPS},
            "dev_examples": min(self.config.dev_subset or len(self.dev.text), len(self.dev.text)),
            "other_dev_examples": {split: min(self.config.dev_subset or len(examples), len(examples))
                                   for split, examples in self.data.other_dev.items()},
            "checkpoints_chosen_on": (f"{len(self.selection)} training examples held out "
                                      f"({self.config.selection_holdout:.0%}, seed {self.config.seed})"
                                      if self.selection is not self.dev else "dev (the reported set)"),
            # The program's name without its directory: the summary names no path of this machine.
            "command": " ".join(["powerbert"] + sys.argv[1:]),
        }
        self.run_dir.write_summary(summary)
        return summary


@contextlib.contextmanager
def dtype_policy(mixed_precision):
    """Keras' global dtype policy for `--mixed-precision` ("bfloat16", "float16") while the block
    builds models ("mixed_bfloat16", ...), the previous one afterwards; None leaves it alone."""
    if mixed_precision is None:
        yield
        return
    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy(f"mixed_{mixed_precision}")
    try:
        yield
    finally:
        keras.mixed_precision.set_dtype_policy(previous)


def _other_dev(step_info, split):
    """A finished step's metrics on another evaluation split (None: not run, or a run recorded before
    the split was evaluated)."""
    return (step_info or {}).get("other_dev", {}).get(split)


def format_summary(summary):
    """The short table the CLI prints at the end."""
    metric = summary["metric"]
    shown = lambda metrics: f"{metrics['primary']:.4f}" if metrics else "-"
    rows = [("task", summary["task"]),
            (f"baseline dev {metric}", shown(summary["baseline"])),
            (f"PoWER-BERT dev {metric}", shown(summary["power_bert"]))]
    for split, results in summary.get("other_dev", {}).items():
        rows += [(f"baseline {split} {metric}", shown(results["baseline"])),
                 (f"PoWER-BERT {split} {metric}", shown(results["power_bert"]))]
    rows += [("retention (l_1..l_L)", ",".join(map(str, summary["retention"])) if summary["retention"] else "-"),
             ("FLOP ratio L*N/sum(l_j)", f"{summary['flop_ratio']:.2f}x" if summary["flop_ratio"] else "-"),
             ("differs from Table 1", ", ".join(f"{k}={v['used']}" for k, v in summary["differs_from_paper"].items())
              or "nothing")]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)
