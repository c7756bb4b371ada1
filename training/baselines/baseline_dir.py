"""`BaselineDir`: the one owner of a baseline's output directory.

    OUT/baseline.json        method, teacher run, settings, command, and one entry per point
    OUT/<point>/model.keras  the point's model (a `PowerBertClassifier`)
    OUT/train/, OUT/logs/    a student's resumable fit (`training.fit_step`) and TensorBoard logs

A *point* is one model of the accuracy/time trade-off: a distilled student is one point,
Head-Prune one point per pruning level.
"""

import os

import keras

from training.atomic_files import read_json, save_model_atomically, write_json


class BaselineDirError(ValueError):
    """The directory is not a finished baseline (or belongs to another method)."""


def read_teacher(run):
    """(config, task, fine-tuned model) of a teacher `RunDir`; the baselines are built for
    classification and regression, so a multiple-choice teacher is refused."""
    config, task = run.read_config(), run.read_task()
    if task.is_multiple_choice:
        raise BaselineDirError(f"{run.path} is a {task.name} run: the baselines (students, Head-Prune) are "
                               f"built for classification and regression tasks, not multiple choice")
    return config, task, run.load_model("finetune", compile=False)


class BaselineDir:
    def __init__(self, path):
        self.path = path

    def file(self, *parts):
        return os.path.join(self.path, *parts)

    @property
    def train_dir(self):
        return self.file("train")

    def log_dir(self, name="train"):
        return self.file("logs", name)

    def start(self, record):
        """Create the directory, or check that an existing one was started with the same record
        (method, teacher, settings) so a re-run resumes instead of mixing two baselines."""
        os.makedirs(self.path, exist_ok=True)
        old = read_json(self.file("baseline.json"))
        if old is not None:
            changed = sorted(k for k in ("method", "teacher", "settings") if old.get(k) != record.get(k))
            if changed:
                raise BaselineDirError(f"{self.path} holds a {old.get('method')} baseline with other "
                                       f"{', '.join(changed)}; use another --out")
            return old
        record = dict(record, points=[])
        write_json(self.file("baseline.json"), record)
        return record

    def add_point(self, name, model, info):
        """Save `model` as point `name` with `info` (dev metrics, layers, heads, ...)."""
        os.makedirs(self.file(name), exist_ok=True)
        save_model_atomically(model, self.file(name, "model.keras"))
        record = self.read()
        record["points"] = [p for p in record["points"] if p["name"] != name] + [dict(info, name=name)]
        write_json(self.file("baseline.json"), record)

    def read(self):
        record = read_json(self.file("baseline.json"))
        if record is None:
            raise BaselineDirError(f"{self.path} is not a baseline directory (no baseline.json); "
                                   f"make one with `powerbert baseline`")
        return record

    def points(self):
        """The info of every finished point (`load_point(info["name"])` loads its model)."""
        record = self.read()
        if not record["points"]:
            raise BaselineDirError(f"{self.path}: the {record['method']} baseline has no finished point yet")
        return record["points"]

    def load_point(self, name):
        from powerbert_tf import PowerBertClassifier  # noqa: F401  (registers the classes)

        return keras.saving.load_model(self.file(name, "model.keras"), compile=False)
