"""A tensorflow-datasets builder for the local task files, registered as `powerbert_glue_local`.

Importing this module registers the builder; it never touches the network. One config per
built-in single-text or pair task in its official layout (`powerbert_glue_local/sst2`, ...,
`/imdb`; RACE and the substitute layouts of `training.tasks.TASK_LAYOUTS` are read directly by
`training.data`); the files are read from `manual_dir`,
laid out as the data directory (`glue/SST-2/train.tsv`, `imdb/...`), by `training.data`, so
parsing and checking are the same as for `read_split`.

    import tensorflow_datasets as tfds
    import training.tfds_glue_local  # registers the builder

    builder = tfds.builder("powerbert_glue_local/rte", data_dir="tfds_data")
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir="/path/to/shared/data"))
    dev = builder.as_dataset(split="validation")

The pipeline reads the built-in tasks through this builder with
`training.task_source.load_examples(..., source="local")`. tfds's own `glue` needs the internet:
offline, `tfds.load("glue/...")` retries the download for minutes before failing;
`load_examples(..., source="tfds")` checks the download host first and fails within seconds.
"""

import numpy as np
import tensorflow_datasets as tfds

from training import data
from training.tasks import TaskSpec, get_task, task_names

# tfds's split names for the project's splits (MNLI's extra dev split as tfds's glue/mnli names it).
TFDS_SPLITS = {"train": tfds.Split.TRAIN, "dev": tfds.Split.VALIDATION, "test": tfds.Split.TEST,
               "dev_mismatched": "validation_mismatched"}
# tfds's GLUE convention for the labels of unlabelled test files.
NO_LABEL = -1


class PowerbertGlueLocal(tfds.core.GeneratorBasedBuilder):
    """The PoWER-BERT tasks (GLUE subset and IMDB) from local files.

    Features: `text`, `text_b` (sentence-pair tasks only), `label` (ClassLabel with the task's
    label names, or float32 score for stsb; -1 for unlabelled GLUE test rows), `idx` (the
    position in the split) and `line` (the example's line in its file, as
    `training.data.Examples.lines`). Examples keep file order. Splits whose file is missing from
    `manual_dir` are left out (the shared QNLI copy is dev only).
    """

    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {
        "1.0.0": "First release.",
        "1.1.0": "Add `line`: the example's line in its file, for tracing a row back.",
    }
    BUILDER_CONFIGS = [
        tfds.core.BuilderConfig(name=name, description=f"PoWER-BERT task {name!r}.")
        for name in task_names() if not get_task(name).is_multiple_choice
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Pass DownloadConfig(manual_dir=...) pointing at the data directory that holds "
        "glue/<TASK>/{train,dev,test}.tsv and imdb/{train,test}_subset_5000.csv "
        "(the project's shared/data). See docs/data.md.")

    @property
    def _task(self) -> TaskSpec:
        return get_task(self.builder_config.name)

    def _info(self) -> tfds.core.DatasetInfo:
        # DatasetInfo is built directly: dataset_info_from_configs() wants README/CITATIONS
        # files beside this module.
        task = self._task
        features = {"text": tfds.features.Text()}
        if task.is_pair:
            features["text_b"] = tfds.features.Text()
        if task.is_regression:
            features["label"] = tfds.features.Scalar(dtype=np.float32)
        else:
            features["label"] = tfds.features.ClassLabel(names=list(task.label_names))
        features["idx"] = tfds.features.Scalar(dtype=np.int32)
        features["line"] = tfds.features.Scalar(dtype=np.int64)
        return tfds.core.DatasetInfo(
            builder=self,
            description=f"PoWER-BERT task {task.name} read from local files ({task.directory}).",
            features=tfds.features.FeaturesDict(features),
            # Keep file order, so the dataset lines up with training.data.read_split.
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager):
        task, root = self._task, dl_manager.manual_dir
        present = [s for s in task.splits if data.split_path(task, s, root).is_file()]
        if not present:
            expected = [str(data.split_path(task, s, root)) for s in task.splits]
            raise data.MissingDataError(
                f"no file of task {task.name!r} under manual_dir; expected any of {expected}")
        return {TFDS_SPLITS[s]: self._generate_examples(task, s, root) for s in present}

    def _generate_examples(self, task: TaskSpec, split: str, root):
        examples = data.read_split(task, split, root)
        for i in range(len(examples)):
            example = {"text": examples.text[i], "idx": i, "line": examples.lines[i].item()}
            if examples.text_b is not None:
                example["text_b"] = examples.text_b[i]
            example["label"] = (NO_LABEL if examples.labels is None
                                else examples.labels[i].item())
            yield i, example
