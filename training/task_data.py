"""`TaskData`: a run's examples and `tf.data` pipelines (train stream, selection and dev sets).

One owner for what the settings of a `TrainConfig` mean for the data (subsets, held-out
selection, bucketing, per-epoch shuffles), shared by the PoWER-BERT steps (`training.pipeline`)
and the baselines they are compared with (`training.baselines`).
"""

import functools

import keras

from powerbert_tf import PowerBertClassifier, PowerBertMultipleChoice, load_tokenizer
from training.data import holdout_indices
from training.input_pipeline import count_batches, epoch_stream, make_dataset
from training.task_source import load_examples


class TaskData:
    """The train, selection and dev examples of `task` under `config`, and their datasets.

    Args:
        config: a `TrainConfig` (max_length, batch_size, seed, subsets, selection_holdout,
            data_source, init for the tokenizer).
        task: a `TaskSpec`.
        cache_dir: where the local tfds builder prepares built-in tasks (a run's `tfds`).

    Attributes:
        train, dev: `Examples`; `selection`: the examples that choose checkpoints, the dev set
        itself (as the paper's code did, so dev figures are optimistic) or a seeded part of train
        held out from training (`config.selection_holdout`). `other_dev`: the examples of the
        task's `other_dev_splits` by name (MNLI's dev_mismatched), reported only.
    """

    def __init__(self, config, task, data_dir=None, cache_dir=None):
        self.config, self.task = config, task
        # Everything that can be wrong with the input is checked here, before any training.
        load = lambda split: load_examples(task, split, source=config.data_source, data_dir=data_dir,
                                           cache_dir=cache_dir)
        self.train, self.dev = load("train"), load("dev")
        self.other_dev = {split: load(split) for split in task.other_dev_splits}
        self.selection = self.dev
        if config.selection_holdout:
            keep, held = holdout_indices(len(self.train), config.selection_holdout, config.seed)
            self.train, self.selection = self.train.take(keep), self.train.take(held)

    @functools.cached_property
    def tokenizer(self):
        return load_tokenizer(self.config.init)

    @property
    def selection_name(self):
        """How logs and TensorBoard call the selection set."""
        return "dev" if self.selection is self.dev else "held-out"

    def pretrained_model(self):
        """A new model for the task on the config's pretrained encoder with a random head: a
        classifier (or regressor), or for multiple choice one score per option."""
        if self.task.is_multiple_choice:
            return PowerBertMultipleChoice.from_pretrained(self.config.init, dropout=self.config.dropout)
        return PowerBertClassifier.from_pretrained(self.config.init, num_classes=self.task.num_labels,
                                                   dropout=self.config.dropout)

    def loss(self, reduction="sum_over_batch_size"):
        if self.task.is_regression:
            return keras.losses.MeanSquaredError(reduction=reduction)
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=reduction)

    def dataset(self, examples, *, epoch=0, subset=None, bucket=False, shuffle=True, drop_remainder=False,
                batch_size=None):
        c = self.config
        return make_dataset(examples, self.tokenizer, c.max_length, batch_size or c.batch_size,
                            is_regression=self.task.is_regression, shuffle=shuffle, seed=c.seed + epoch,
                            subset=subset, subset_seed=c.seed, bucket=bucket, drop_remainder=drop_remainder)

    def dev_dataset(self, bucket=False, split="dev"):
        """The dev set, or another evaluation split of the task (`other_dev`)."""
        examples = self.dev if split == "dev" else self.other_dev[split]
        return self.dataset(examples, subset=self.config.dev_subset, shuffle=False, batch_size=64, bucket=bucket)

    def selection_dataset(self, bucket=False):
        if self.selection is self.dev:
            return self.dev_dataset(bucket)
        return self.dataset(self.selection, shuffle=False, batch_size=64, bucket=bucket)

    def train_size(self, step):
        """Training examples `step` uses (its subset, at most the whole training split)."""
        return min(self.config.subset_for(step) or len(self.train.text), len(self.train.text))

    def train_plan(self, step, bucket, drop_remainder):
        """(make_stream(skip), batches per epoch x epochs) of `step`'s subset and epochs."""
        subset = self.config.subset_for(step)
        epochs = self.config.epochs_for(step)
        make_epoch = lambda e: self.dataset(self.train, epoch=e, subset=subset, bucket=bucket,
                                            drop_remainder=drop_remainder)
        if bucket:  # partial batches per bucket: count them once
            per_epoch = int(make_epoch(0).reduce(0, lambda n, _: n + 1))
        else:
            per_epoch = count_batches(self.train_size(step), self.config.batch_size, drop_remainder)
        return (lambda skip: epoch_stream(make_epoch, epochs, skip)), per_epoch * epochs
