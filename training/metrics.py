"""Task metrics: accuracy, F1, Matthews correlation, Pearson and Spearman correlation.

The metrics come from scikit-learn and SciPy. Which ones a task reports is data in its
`TaskSpec` (`metrics`, `primary_metric`).
"""

from typing import Callable, Dict, Union

import numpy as np
import scipy.stats
from sklearn import metrics as skm

from training.tasks import TaskSpec, get_task


def _f1(y_true: np.ndarray, y_pred: np.ndarray, num_labels: int) -> float:
    # Binary F1 is of class id 1 (MRPC "equivalent"), as GLUE reports it; macro F1 otherwise.
    average = "binary" if num_labels == 2 else "macro"
    return skm.f1_score(y_true, y_pred, average=average, zero_division=0.0)


def _correlation(statistic: Callable) -> Callable:
    def correlation(y_true: np.ndarray, y_pred: np.ndarray, num_labels: int) -> float:
        # A constant side makes the correlation undefined (SciPy warns and returns nan); a model
        # that predicts one value has learned nothing, so 0.0 is the honest score.
        if np.ptp(y_true) == 0 or np.ptp(y_pred) == 0:
            return 0.0
        return statistic(y_true, y_pred).statistic

    return correlation


# Keys must equal training.tasks.METRIC_NAMES (tests/test_metrics.py checks this).
_METRICS: Dict[str, Callable[[np.ndarray, np.ndarray, int], float]] = {
    "accuracy": lambda y_true, y_pred, _: skm.accuracy_score(y_true, y_pred),
    "f1": _f1,
    # scikit-learn already returns 0.0, without a warning, when a side is constant.
    "matthews_corrcoef": lambda y_true, y_pred, _: skm.matthews_corrcoef(y_true, y_pred),
    "pearson": _correlation(scipy.stats.pearsonr),
    "spearman": _correlation(scipy.stats.spearmanr),
}


def compute_metrics(task: Union[str, TaskSpec], y_true, y_pred_or_logits) -> Dict[str, float]:
    """The task's metrics, plus `primary` (the value of `task.primary_metric`).

    Args:
        task: A `TaskSpec` or built-in task name.
        y_true: Label ids, shape (N,), or scores for regression tasks.
        y_pred_or_logits: For classification either integer class ids of shape (N,) or
            logits/probabilities of shape (N, num_labels) (argmax is taken). For regression,
            scores of shape (N,) or (N, 1). NumPy arrays, lists and eager tensors all work.

    Returns:
        `{metric name: float}`, e.g. for MRPC `{"accuracy": ..., "f1": ..., "primary": <f1>}`.
        An undefined correlation (a constant side) is reported as 0.0.

    Raises:
        ValueError: mismatched lengths, no examples, wrong shapes, non-finite values or class
            ids outside `[0, num_labels)`.
    """
    task = task if isinstance(task, TaskSpec) else get_task(task)
    y_true, y_pred = _prepare(task, y_true, y_pred_or_logits)
    results = {name: float(_METRICS[name](y_true, y_pred, task.num_labels))
               for name in task.metrics}
    results["primary"] = results[task.primary_metric]
    return results


def constant_answer_metrics(task: Union[str, TaskSpec], train_labels, dev_labels) -> Dict[str, float]:
    """The metrics of a model that ignores its input and always answers the most frequent label
    of `train_labels` (ties: the smaller id; regression: their mean score) on `dev_labels`.

    The floor a fine-tuned model must clear before its elimination cost means anything: a
    baseline at this score has learned nothing from the task, and a search then has no task
    signal to weigh against the mass penalty.

    Args:
        task: A `TaskSpec` or built-in task name.
        train_labels: Label ids (scores for regression), shape (N_train,).
        dev_labels: Label ids (scores), shape (N_dev,).

    Returns:
        As `compute_metrics` (an undefined correlation, as every constant answer's, is 0.0).
    """
    task = task if isinstance(task, TaskSpec) else get_task(task)
    train_labels = np.asarray(train_labels)
    if len(train_labels) == 0:
        raise ValueError(f"{task.name}: no training labels to take the most frequent answer from")
    if task.is_regression:
        answer = np.full(len(dev_labels), float(np.mean(train_labels)))
    else:
        _check_ids(task, "train_labels", train_labels)
        counts = np.bincount(train_labels.astype(np.int64), minlength=task.num_labels)
        answer = np.full(len(dev_labels), int(counts.argmax()), dtype=np.int64)
    return compute_metrics(task, dev_labels, answer)


def _prepare(task: TaskSpec, y_true, y_pred_or_logits):
    """Check the inputs and turn them into two 1-D arrays of equal length."""
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred_or_logits)
    if y_true.ndim != 1 or len(y_true) == 0:
        raise ValueError(f"{task.name}: y_true must be a non-empty 1-D array, got shape "
                         f"{y_true.shape}")
    if task.is_regression:
        if y_pred.ndim == 2 and y_pred.shape[1] == 1:
            y_pred = y_pred[:, 0]
        y_true, y_pred = y_true.astype(np.float64), y_pred.astype(np.float64)
        if not (np.isfinite(y_true).all() and np.isfinite(y_pred).all()):
            raise ValueError(f"{task.name}: scores contain nan or inf")
    else:
        y_pred = _class_ids(task, y_pred)
        _check_ids(task, "y_true", y_true)
    if y_pred.shape != y_true.shape:
        raise ValueError(f"{task.name}: y_true has shape {y_true.shape} but the predictions "
                         f"give {y_pred.shape}")
    return y_true, y_pred


def _class_ids(task: TaskSpec, y_pred: np.ndarray) -> np.ndarray:
    if y_pred.ndim == 2:
        if y_pred.shape[1] != task.num_labels:
            raise ValueError(f"{task.name}: logits have {y_pred.shape[1]} columns, the task has "
                             f"{task.num_labels} labels {list(task.label_names)}")
        return y_pred.argmax(axis=-1)
    # A 1-D float array could be ids, sigmoid probabilities or one-column logits; refuse to guess.
    _check_ids(task, "predictions", y_pred)
    return y_pred


def _check_ids(task: TaskSpec, what: str, ids: np.ndarray) -> None:
    if ids.ndim != 1 or not (np.issubdtype(ids.dtype, np.integer) or ids.dtype == bool):
        raise ValueError(f"{task.name}: {what} must be integer class ids of shape (N,) or "
                         f"logits of shape (N, {task.num_labels}); got dtype {ids.dtype}, "
                         f"shape {ids.shape}")
    bad = ids[(ids < 0) | (ids >= task.num_labels)]
    if bad.size:
        raise ValueError(f"{task.name}: {what} contain class id {bad[0]}, outside "
                         f"[0, {task.num_labels}) for labels {list(task.label_names)}")
