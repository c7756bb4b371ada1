"""`powerbert export`: a run directory's final model (or a `.keras` file) as a SavedModel version.

Glue between the run directory (`training.run_dir.RunDir`: which model, its task, N and
vocabulary) and the export (`serving.export`, which knows nothing of runs or tasks).
"""

import os
from dataclasses import dataclass

import keras

from powerbert_tf import load_tokenizer
from serving.config_protos import BATCHING_FIELDS
from serving.deploy_kit import merged_config, write_files
from serving.export import ExportError, export_saved_model
from training.run_dir import RunDir
from training.tasks import get_task


def export_run(source, base, version=None, *, init=None, task=None, max_length=None, jit_compile=False,
               dynamic_length=False, tflite=None):
    """Export a run directory's final model (re-trained, else fine-tuned) or a `.keras` file.

    A run directory supplies its task (`task.json`: a user task's labels and names too), N and the
    pretrained vocabulary (`config.json`); a `max_length` other than the run's N is refused (the
    model was trained at that N). For a bare `.keras` file pass `task` (a built-in task's name)
    and `init`; N defaults to the model's own (hard or soft extract), else the task's.

    Returns:
        the written version directory.

    Raises:
        ExportError, RunDirError (ValueErrors): bad source, missing model, N mismatch, ...
    """
    if os.path.isdir(source):
        run = RunDir(source)
        config, retention = run.check(need=())
        step = run.final_step()
        if max_length is not None and max_length != config.max_length:
            raise ExportError(f"{source} was trained at N={config.max_length}; it cannot be exported with "
                              f"--max-length {max_length} (omit --max-length)")
        model = run.load_checked_model(step, retention)
        spec = get_task(task) if task else run.read_task()
        init, max_length = init or config.init, config.max_length
    elif source.endswith(".keras") and os.path.isfile(source):
        if task is None or init is None:
            raise ExportError("exporting a .keras file needs --task and --init (for labels and vocabulary)")
        model = keras.saving.load_model(source, compile=False)  # inference only: no optimizer
        spec = get_task(task)
    else:
        raise ExportError(f"{source} is neither a run directory nor a .keras file")
    if max_length is None and model.encoder.elimination == "none":
        max_length = spec.max_length
    return export_saved_model(
        model, load_tokenizer(init), base=base, max_length=max_length,
        label_names=spec.label_names, task_name=spec.name, pair=spec.is_pair,
        version=version, jit_compile=jit_compile, dynamic_length=dynamic_length, tflite=tflite)


@dataclass
class ServingConfigEntry:
    """One model to put into the deployment kit's files in `directory` (`merged_config`: checked, not
    yet written)."""

    directory: str
    name: str
    base_path: str
    config: object  # ModelServerConfig
    batching: object  # BatchingParameters

    def write(self):
        """Writes the kit's files; returns their paths."""
        return list(write_files(self.directory, self.config, self.batching).values())


def serving_config_for(args):
    """The `ServingConfigEntry` of `powerbert export`'s `--serving-*` and batching flags (None without
    `--serving-config`): the model is named after the base's last part and lives at /models/NAME
    unless the flags say otherwise.

    Raises:
        ConfigError, ValueError: a bad name, a relative base path, a bad file already in the directory.
    """
    if not args.serving_config:
        given = [name for name in ("serving_name", "serving_base_path") + BATCHING_FIELDS if hasattr(args, name)]
        if given:
            raise ValueError(f"--{given[0].replace('_', '-')} is for the deployment kit: add --serving-config DIR")
        return None
    name = getattr(args, "serving_name", None) or os.path.basename(os.path.normpath(args.base))
    base_path = getattr(args, "serving_base_path", None) or f"/models/{name}"
    batching = {field: getattr(args, field) for field in BATCHING_FIELDS if hasattr(args, field)}
    config, batching = merged_config(args.serving_config, name, base_path, batching)
    return ServingConfigEntry(args.serving_config, name, base_path, config, batching)
