"""Distilled students: DistilBERT-style and BERT-PKD, trained from a fine-tuned teacher run.

Both cut a student with fewer layers from the teacher (`powerbert_tf.compression.select_layers`)
and train it with `Distiller` in the teacher run's own fit loop and data: the same training
subset, epochs, batch size, learning-rate schedule and checkpoint selection (held-out training
data when the teacher run held some out), with the baseline's seed.
- DistilBERT-style (Sanh et al. 2019): one teacher layer out of L/K (6 -> 3 keeps 0, 2, 4), soft
  labels only (T^2-scaled KL, T = 2 as DistilBERT).
- BERT-PKD (Sun et al. 2019): the teacher's first K layers, (1 - alpha) hard + alpha soft
  cross-entropy at temperature T + beta * patient loss on the [CLS] states of PKD-Skip's layer
  pairs (student layer i with teacher layer (i + 1) * L / K - 1; 6 -> 3 pairs 0-1 and 1-3).
"""

import dataclasses
import time

import keras

from powerbert_tf.compression import evenly_spaced_layers, select_layers
from training.baselines.baseline_dir import BaselineDir, read_teacher
from training.baselines.distiller import Distiller
from training.fit_step import best_model_path, checkpointed_fit, evaluate
from training.run_dir import RunDir
from training.schedules import finetuning_optimizer
from training.task_data import TaskData

STUDENT_METHODS = ("distilbert", "pkd")


@dataclasses.dataclass(frozen=True)
class StudentSettings:
    """What a student run may change from the teacher run's settings (None: the teacher's)."""

    method: str
    layers: int
    seed: int = 0
    lr: float = None
    batch_size: int = None
    temperature: float = None  # default: 2 (DistilBERT), 10 (PKD, middle of {5, 10, 20})
    alpha: float = None  # default: 1 (DistilBERT), 0.5 (PKD, middle of {0.2, 0.5, 0.7})
    beta: float = None  # default: 0 (DistilBERT), 100 (PKD, from {10, 100, 500, 1000})
    epochs: int = None

    def resolved(self):
        if self.method not in STUDENT_METHODS:
            raise ValueError(f"student method must be one of {STUDENT_METHODS}, got {self.method!r}")
        pkd = self.method == "pkd"
        defaults = {"temperature": 10.0 if pkd else 2.0, "alpha": 0.5 if pkd else 1.0, "beta": 100.0 if pkd else 0.0}
        return dataclasses.replace(self, **{k: v for k, v in defaults.items() if getattr(self, k) is None})


def pkd_layer_pairs(teacher_layers, student_layers):
    """PKD-Skip's (student, teacher) layer pairs, 0-based: every layer of the student but its last
    learns from teacher layer (i + 1) * L / K - 1 (the last is matched through the logits)."""
    if not 1 <= student_layers <= teacher_layers:
        raise ValueError(f"a student keeps 1..{teacher_layers} layers, got {student_layers}")
    return tuple((i, (i + 1) * teacher_layers // student_layers - 1) for i in range(student_layers - 1))


def train_student(teacher_run, settings: StudentSettings, out, data_dir=None, verbose=1, command=None):
    """Train one student from `teacher_run`'s fine-tuned model into `out` (resumable).

    Returns:
        the point's info (dev metrics, selection metrics, layers, steps, seconds).
    """
    settings = settings.resolved()
    run = RunDir(teacher_run)
    teacher_config, task, teacher = read_teacher(run)
    total_layers = teacher.encoder.bert_config.num_hidden_layers
    if settings.method == "distilbert":
        layers, pairs, soft_kind = evenly_spaced_layers(total_layers, settings.layers), (), "kl"
    else:
        layers = tuple(range(settings.layers))
        pairs, soft_kind = pkd_layer_pairs(total_layers, settings.layers), "cross_entropy"
    config = dataclasses.replace(teacher_config, seed=settings.seed,
                                 lr_bert=settings.lr or teacher_config.lr_bert,
                                 batch_size=settings.batch_size or teacher_config.batch_size,
                                 epochs=settings.epochs or teacher_config.epochs_for("finetune"))
    directory = BaselineDir(out)
    directory.start({"method": settings.method, "teacher": run.path, "task": task.name,
                     "settings": dataclasses.asdict(settings), "command": command})
    data = TaskData(config, task, data_dir=data_dir, cache_dir=run.data_cache(config))
    keras.utils.set_random_seed(settings.seed)

    def build(total_steps):
        distiller = Distiller(select_layers(teacher, layers), teacher, soft_kind=soft_kind,
                              temperature=settings.temperature, alpha=settings.alpha, beta=settings.beta,
                              layer_pairs=pairs)
        distiller.build()
        distiller.compile(optimizer=finetuning_optimizer(config, total_steps))
        return distiller

    started = time.time()
    make_stream, total = data.train_plan("finetune", bucket=config.bucket_finetune, drop_remainder=False)
    progress = checkpointed_fit(build, make_stream, total, data.selection_dataset(), task, directory.train_dir,
                                directory.log_dir(), config.checkpoint_every, verbose,
                                selection_name=data.selection_name)
    student = keras.saving.load_model(best_model_path(directory.train_dir), compile=False).student
    info = {"layers": len(layers), "teacher_layers": list(layers), "layer_pairs": [list(p) for p in pairs],
            "dev": evaluate(student, data.dev_dataset(), task), "selection": progress["best"]["dev"],
            "checkpoints_chosen_on": data.selection_name, "steps": progress["steps_done"],
            "best_step": progress["best"]["step"],
            "train_examples": data.train_size("finetune"),
            "epochs": config.epochs_for("finetune"), "lr": config.lr_bert, "batch_size": config.batch_size,
            "wall_seconds": round(time.time() - started, 1)}
    directory.add_point(f"{settings.method}-{len(layers)}l-seed{settings.seed}", student, info)
    return info
