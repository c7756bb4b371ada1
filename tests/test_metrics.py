"""Tests for training.metrics against values worked out by hand on six-example cases."""

import math
import warnings

import numpy as np
import pytest

from training import metrics, tasks
from training.metrics import compute_metrics
from training.user_task import user_task

# Confusion counts of Y_PRED against Y_TRUE (positive class 1): TP 3, FP 1, FN 1, TN 1.
Y_TRUE = [1, 0, 1, 1, 0, 1]
Y_PRED = [1, 1, 1, 0, 0, 1]
TP, FP, FN, TN = 3, 1, 1, 1


def test_metric_registry_matches_task_names():
    assert set(metrics._METRICS) == set(tasks.METRIC_NAMES)


def test_mrpc_accuracy_and_f1():
    f1 = 2 * TP / (2 * TP + FP + FN)  # 6 / 8
    result = compute_metrics("mrpc", Y_TRUE, Y_PRED)
    assert result == pytest.approx({"accuracy": 4 / 6, "f1": f1, "primary": f1})
    assert f1 == 0.75


def test_cola_matthews_correlation():
    mcc = (TP * TN - FP * FN) / math.sqrt((TP + FP) * (TP + FN) * (TN + FP) * (TN + FN))  # 2/8
    result = compute_metrics(tasks.get_task("cola"), Y_TRUE, Y_PRED)
    assert result == pytest.approx({"accuracy": 4 / 6, "matthews_corrcoef": mcc, "primary": mcc})
    assert mcc == 0.25


def test_stsb_pearson_and_spearman():
    x = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    y = [0.5, 0.0, 2.0, 3.0, 5.0, 4.5]
    mx, my = sum(x) / 6, sum(y) / 6
    pearson = (sum((a - mx) * (b - my) for a, b in zip(x, y))
               / math.sqrt(sum((a - mx) ** 2 for a in x) * sum((b - my) ** 2 for b in y)))
    # Ranks of y are 2 1 3 4 6 5 against 1..6: squared rank differences sum to 4, no ties.
    spearman = 1 - 6 * 4 / (6 * (6 ** 2 - 1))
    result = compute_metrics("stsb", x, np.array(y)[:, None])  # (N, 1) model output
    assert result == pytest.approx({"pearson": pearson, "spearman": spearman,
                                    "primary": spearman})


def test_logits_are_argmaxed():
    logits = np.array([[0.2, 0.8], [2.0, -1.0], [0.1, 0.3]], np.float32)
    assert compute_metrics("rte", [1, 0, 0], logits) == pytest.approx(
        {"accuracy": 2 / 3, "primary": 2 / 3})


def test_constant_predictions_score_zero_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cola = compute_metrics("cola", Y_TRUE, np.ones(6, np.int64))
        stsb = compute_metrics("stsb", [0.0, 1.0, 2.0, 3.0, 4.0, 5.0], np.full(6, 2.5))
        mrpc = compute_metrics("mrpc", Y_TRUE, np.zeros(6, np.int64))
    assert cola["matthews_corrcoef"] == 0.0 and cola["accuracy"] == pytest.approx(4 / 6)
    assert stsb == {"pearson": 0.0, "spearman": 0.0, "primary": 0.0}
    assert mrpc["f1"] == 0.0


def test_multiclass_user_task_uses_macro_f1(tmp_path):
    task = user_task("three", test=str(tmp_path / "t.tsv"), text_column="t",
                           label_column="l", label_values=["a", "b", "c"],
                           metrics=("accuracy", "f1"), primary_metric="f1")
    # b and c are swapped once: a has TP 2; b and c each have TP 1, FP 1, FN 1.
    per_class = [2 * 2 / (2 * 2), 2 * 1 / (2 * 1 + 1 + 1), 2 * 1 / (2 * 1 + 1 + 1)]
    result = compute_metrics(task, [0, 0, 1, 1, 2, 2], [0, 0, 1, 2, 2, 1])
    assert result["f1"] == pytest.approx(sum(per_class) / 3)


@pytest.mark.parametrize("task,y_true,y_pred,message", [
    ("sst2", [0, 1], [0, 1, 1], r"y_true has shape \(2,\) but the predictions give \(3,\)"),
    ("sst2", [], [], "non-empty 1-D"),
    ("sst2", [0, 1], [0, 2], r"predictions contain class id 2, outside \[0, 2\)"),
    ("sst2", [0, 5], [0, 1], r"y_true contain class id 5"),
    ("sst2", [0, 1], [0.0, 1.0], "must be integer class ids"),
    ("rte", [0, 1], np.zeros((2, 3)), r"logits have 3 columns, the task has 2 labels"),
    ("stsb", [0.0, 1.0], [np.nan, 1.0], "nan or inf"),
])
def test_bad_inputs(task, y_true, y_pred, message):
    with pytest.raises(ValueError, match=message):
        compute_metrics(task, y_true, y_pred)


def test_constant_answer_is_the_most_frequent_training_label():
    # RTE's dev set has 146 "entailment" (id 0) of 277; train's majority is entailment.
    rte = metrics.constant_answer_metrics("rte", [0, 0, 1], [0] * 146 + [1] * 131)
    assert rte["primary"] == pytest.approx(146 / 277)
    # MRPC answering "equivalent" (id 1) on 3 of 4 positives: precision 3/4, recall 1, F1 6/7.
    assert metrics.constant_answer_metrics("mrpc", [1, 1, 0], [1, 1, 1, 0])["f1"] == pytest.approx(6 / 7)
    # A tie goes to the smaller id: answering 0 on a dev set of one 0 and three 1s.
    assert metrics.constant_answer_metrics("sst2", [0, 1], [0, 1, 1, 1])["accuracy"] == pytest.approx(1 / 4)
    assert metrics.constant_answer_metrics("cola", [1, 1, 0], [1, 0, 1])["matthews_corrcoef"] == 0.0
    assert metrics.constant_answer_metrics("stsb", [1.0, 2.0], [0.0, 3.0, 4.0])["spearman"] == 0.0
    assert metrics.constant_answer_metrics("race", [2, 2, 1, 3], [0, 1, 2, 2])["accuracy"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="no training labels"):
        metrics.constant_answer_metrics("rte", [], [0, 1])
    with pytest.raises(ValueError, match="train_labels"):
        metrics.constant_answer_metrics("rte", [0, 2], [0, 1])
