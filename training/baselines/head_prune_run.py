"""Head-Prune from a fine-tuned teacher run: one point per pruning level, each evaluated on dev.

As in Michel et al., the pruned models are not re-trained; the importance is estimated on a
seeded subset of the run's training examples (never the dev set), with the task's loss.
"""

import dataclasses
import time

from training.baselines.baseline_dir import BaselineDir, read_teacher
from training.baselines.head_pruning import progressive_pruning
from training.fit_step import evaluate
from training.run_dir import RunDir
from training.task_data import TaskData


def run_head_prune(teacher_run, out, step_fraction=0.1, levels=6, importance_examples=2000, seed=0,
                   data_dir=None, log=print, command=None):
    """Prune `step_fraction` of the teacher's heads per level, `levels` times, into `out`.

    Returns: the list of point infos (level 0 is the unpruned teacher).
    """
    run = RunDir(teacher_run)
    config, task, teacher = read_teacher(run)
    total_heads = sum(teacher.encoder.attention_heads)
    step_heads = max(1, round(step_fraction * total_heads))
    if step_heads * levels > total_heads - len(teacher.encoder.attention_heads):
        raise ValueError(f"{levels} levels of {step_heads} heads would remove more than the "
                         f"{total_heads - len(teacher.encoder.attention_heads)} heads that can go "
                         f"(every layer keeps one of its {teacher.encoder.attention_heads})")
    directory = BaselineDir(out)
    settings = {"step_fraction": step_fraction, "step_heads": step_heads, "levels": levels,
                "importance_examples": importance_examples, "seed": seed}
    directory.start({"method": "head-prune", "teacher": run.path, "task": task.name, "settings": settings,
                     "command": command})
    data = TaskData(dataclasses.replace(config, seed=seed), task, data_dir=data_dir, cache_dir=run.data_cache(config))
    importance_data = data.dataset(data.train, subset=importance_examples, shuffle=False, bucket=True, batch_size=32)
    loss = data.loss()
    points = []
    started = time.time()
    for removed, model, kept in progressive_pruning(teacher, importance_data, loss, step_heads, levels):
        info = {"heads_removed": removed, "heads": sum(len(k) for k in kept), "of_heads": total_heads,
                "kept_heads": kept, "dev": evaluate(model, data.dev_dataset(), task),
                "wall_seconds": round(time.time() - started, 1)}
        directory.add_point(f"head-prune-{removed:02d}", model, info)
        log(f"  {removed} of {total_heads} heads removed: dev {task.primary_metric} {info['dev']['primary']:.4f}")
        points.append(info)
    return points
