"""The Pareto baselines: distillation losses on hand-computed values, head importance against
finite differences, physical head removal against zeroed heads, layer selection against running
the chosen layers by hand, the pruning and pairing rules, and the Pareto summaries."""

import dataclasses
import math

import numpy as np
import pytest
import tensorflow as tf

from benchmarks.pareto import pareto_front, summarize_groups
from powerbert_tf import PowerBertClassifier
from powerbert_tf.compression import evenly_spaced_layers, prune_heads, select_layers
from powerbert_tf.loading import build_encoder
from tests.conftest import random_inputs
from tests.test_search import NO_DROPOUT
from training.baselines.distillation_losses import (hard_loss, patient_loss, soft_cross_entropy, soft_loss,
                                                    softened_kl)
from training.baselines.distiller import Distiller
from training.baselines.head_pruning import head_importance, head_mask_gradients, heads_to_keep
from training.baselines.students import StudentSettings, pkd_layer_pairs

# === Losses, by hand ===
# Teacher logits (0, 0): p_t = (1/2, 1/2). Student logits (ln 3, 0): p_s = (3/4, 1/4) at T = 1;
# at T = 2 the logits halve, p_s = (sqrt3, 1) / (sqrt3 + 1).
TEACHER = tf.constant([[0.0, 0.0]])
STUDENT = tf.constant([[math.log(3.0), 0.0]])


def test_softened_kl_by_hand():
    # T = 1: KL = 1/2 ln(1/2 / 3/4) + 1/2 ln(1/2 / 1/4) = 1/2 ln(4/3).
    assert float(softened_kl(TEACHER, STUDENT, 1.0)) == pytest.approx(0.5 * math.log(4 / 3), rel=1e-5)
    # T = 2: KL = 1/2 ln(1/4 / (p1 p2)) with p1 p2 = sqrt3 / (sqrt3 + 1)^2; times T^2 = 4.
    p1p2 = math.sqrt(3) / (math.sqrt(3) + 1) ** 2
    assert float(softened_kl(TEACHER, STUDENT, 2.0)) == pytest.approx(4 * 0.5 * math.log(0.25 / p1p2), rel=1e-5)
    assert float(softened_kl(STUDENT, STUDENT, 3.0)) == pytest.approx(0.0, abs=1e-6)


def test_soft_cross_entropy_by_hand():
    # -(1/2 ln 3/4 + 1/2 ln 1/4)
    assert float(soft_cross_entropy(TEACHER, STUDENT, 1.0)) == pytest.approx(
        -0.5 * (math.log(0.75) + math.log(0.25)), rel=1e-5)
    # Batch mean: a second row whose student agrees with a uniform teacher costs ln 2.
    both = soft_cross_entropy(tf.zeros((2, 2)), tf.constant([[math.log(3.0), 0.0], [0.0, 0.0]]), 1.0)
    assert float(both) == pytest.approx(0.5 * (-0.5 * (math.log(0.75) + math.log(0.25)) + math.log(2)), rel=1e-5)


def test_patient_loss_by_hand():
    # (3, 4)/5 - (4, 3)/5 = (-0.2, 0.2): squared norm 0.08, whatever the vectors' lengths.
    s, t = tf.constant([[3.0, 4.0]]), tf.constant([[40.0, 30.0]])
    assert float(patient_loss([s], [t])) == pytest.approx(0.08, rel=1e-5)
    # Two pairs add; a batch averages: second row identical directions (0).
    s2, t2 = tf.constant([[3.0, 4.0], [1.0, 0.0]]), tf.constant([[4.0, 3.0], [5.0, 0.0]])
    assert float(patient_loss([s, s2], [t, t2])) == pytest.approx(0.08 + 0.04, rel=1e-5)
    with pytest.raises(ValueError, match="2 student states for 1"):
        patient_loss([s, s2], [t])


def test_hard_and_regression_losses_by_hand():
    assert float(hard_loss(tf.constant([0]), STUDENT, False)) == pytest.approx(-math.log(0.75), rel=1e-5)
    assert float(hard_loss(tf.constant([[1.0], [3.0]]), tf.constant([[2.0], [2.0]]), True)) == pytest.approx(1.0)
    # Regression has no distribution to soften: squared error to the teacher, any kind or T.
    assert float(soft_loss("kl", tf.constant([[1.0]]), tf.constant([[3.0]]), 5.0, True)) == pytest.approx(4.0)


# Larger random weights than BERT's 0.02, so that every layer and head visibly moves the logits.
TINY_BERT = dataclasses.replace(NO_DROPOUT, initializer_range=0.3)


def _tiny_classifier(num_classes=2, seed=0, **mode):
    tf.keras.utils.set_random_seed(seed)
    model = PowerBertClassifier(build_encoder(TINY_BERT, **mode), num_classes=num_classes, dropout=0.0)
    model.build()
    return model


def test_distiller_objective_combines_the_terms_with_its_weights():
    teacher, student = _tiny_classifier(seed=0), select_layers(_tiny_classifier(seed=1), (0, 2))
    x = random_inputs(4, 10)
    labels = tf.constant([0, 1, 1, 0])
    distiller = Distiller(student, teacher, soft_kind="cross_entropy", temperature=5.0, alpha=0.3, beta=7.0,
                          layer_pairs=[(0, 1)])
    t_out = teacher.encoder(x, return_hidden_states=True)
    s_out = student.encoder(x, return_hidden_states=True)
    t_logits, s_logits = teacher(x), student(x)
    expected = (0.3 * soft_cross_entropy(t_logits, s_logits, 5.0) + 0.7 * hard_loss(labels, s_logits, False)
                + 7.0 * patient_loss([s_out["hidden_states"][0][:, 0]], [t_out["hidden_states"][1][:, 0]]))
    assert float(distiller.objective(x, labels, training=False)) == pytest.approx(float(expected), rel=1e-5)
    with pytest.raises(ValueError, match="outputs"):
        Distiller(_tiny_classifier(num_classes=3), teacher)


def test_distiller_trains_only_the_student_also_after_a_reload():
    teacher, student = _tiny_classifier(seed=0), select_layers(_tiny_classifier(seed=1), (0, 2))
    distiller = Distiller(student, teacher)
    reloaded = Distiller.from_config(distiller.get_config())
    for model in (distiller, reloaded):
        # The optimizer of a resumed fit is built on these: the teacher's must not be among them.
        assert len(model.trainable_variables) == len(model.student.trainable_variables) > 0


# === Students: which layers ===

def test_student_layer_rules():
    assert evenly_spaced_layers(6, 3) == (0, 2, 4)  # DistilBERT: one layer out of two
    assert evenly_spaced_layers(6, 2) == (0, 3)
    assert evenly_spaced_layers(12, 6) == (0, 2, 4, 6, 8, 10)
    assert evenly_spaced_layers(6, 6) == tuple(range(6))
    # PKD-Skip, 12 -> 6: teacher layers {2, 4, 6, 8, 10} (1-based) for student layers 1..5.
    assert pkd_layer_pairs(12, 6) == ((0, 1), (1, 3), (2, 5), (3, 7), (4, 9))
    assert pkd_layer_pairs(6, 3) == ((0, 1), (1, 3))
    assert pkd_layer_pairs(6, 1) == ()
    with pytest.raises(ValueError):
        evenly_spaced_layers(6, 7)
    assert StudentSettings("pkd", 3).resolved().beta == 100.0
    assert StudentSettings("distilbert", 3).resolved().alpha == 1.0
    with pytest.raises(ValueError, match="student method"):
        StudentSettings("tinybert", 3).resolved()


def test_select_layers_equals_running_those_layers_by_hand():
    teacher = _tiny_classifier()
    student = select_layers(teacher, (0, 2))
    assert student.encoder.bert_config.num_hidden_layers == 2
    x = random_inputs(3, 12)
    enc = teacher.encoder
    hidden = enc.embeddings(tf.constant(x["input_ids"]), tf.constant(x["token_type_ids"]))
    mask = tf.constant(x["attention_mask"])
    for j in (0, 2):
        hidden = enc.encoder_layers[j](hidden, mask)["hidden"]
    expected = teacher.head(enc.pooler(hidden[:, 0, :]))
    np.testing.assert_allclose(student(x).numpy(), expected.numpy(), atol=1e-6)
    # ... and differs from the full teacher (the middle layer does something).
    assert np.abs(student(x).numpy() - teacher(x).numpy()).max() > 1e-2


# === Head pruning ===

def test_removed_heads_equal_zeroed_heads():
    model = _tiny_classifier()
    x = random_inputs(4, 10, seed=3)
    kept = [[0, 2], [1, 2, 3], [3]]
    pruned = prune_heads(model, kept)
    assert pruned.encoder.attention_heads == (2, 3, 1)
    masks = [tf.constant([1.0 if h in k else 0.0 for h in range(4)]) for k in kept]
    zeroed = model.head(model.encoder(x, head_mask=masks)["pooled_output"])
    # Narrower matmuls sum in another order than masked full ones: float32 rounding reaches 1e-6,
    # a wrong head moves the logits by 1e-2 and more.
    np.testing.assert_allclose(pruned(x).numpy(), zeroed.numpy(), atol=1e-5)
    assert np.abs(pruned(x).numpy() - model(x).numpy()).max() > 1e-2  # the removed heads mattered
    # The removed heads' weights are gone: 3 of 12 heads' query/key/value/output rows.
    size = NO_DROPOUT.hidden_size // NO_DROPOUT.num_attention_heads
    removed = 12 - 6
    assert model.count_params() - pruned.count_params() == removed * size * (4 * NO_DROPOUT.hidden_size + 3)
    # Pruning again indexes the current heads: layer 1 keeps its middle one of (1, 2, 3) = head 2.
    again = prune_heads(pruned, [[0], [1], [0]])
    masks = [tf.constant(m) for m in ([1.0, 0, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 1.0])]
    np.testing.assert_allclose(again(x).numpy(), model.head(model.encoder(x, head_mask=masks)["pooled_output"]).numpy(),
                               atol=1e-5)
    with pytest.raises(ValueError, match="at least one"):
        prune_heads(model, [[0], [], [1]])


def test_head_importance_matches_finite_differences():
    model = _tiny_classifier()
    x = random_inputs(6, 10, seed=5)
    labels = tf.constant([0, 1, 0, 1, 1, 0])
    loss_fn = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    grads = head_mask_gradients(model, x, labels, loss_fn)

    def loss_at(mask):
        pooled = model.encoder(x, head_mask=[tf.constant(m, tf.float32) for m in mask])["pooled_output"]
        return float(loss_fn(labels, model.head(pooled)))

    eps = 1e-2
    for j in range(3):
        for h in range(4):
            up = [np.ones(4) for _ in range(3)]
            down = [np.ones(4) for _ in range(3)]
            up[j][h] += eps
            down[j][h] -= eps
            estimate = (loss_at(up) - loss_at(down)) / (2 * eps)
            assert grads[j][h] == pytest.approx(estimate, rel=2e-2, abs=2e-4), (j, h)
    assert max(abs(g).max() for g in grads) > 1e-3  # the check is not 0 == 0
    # Importance: mean |gradient| over batches, each layer scaled to unit L2 norm.
    batches = [(x, labels), (random_inputs(6, 10, seed=6), tf.constant([1, 1, 0, 0, 1, 0]))]
    second = head_mask_gradients(model, *batches[1], loss_fn)
    raw = [(np.abs(a) + np.abs(b)) / 2 for a, b in zip(grads, second)]
    scores = head_importance(model, batches, loss_fn)
    for got, want in zip(scores, raw):
        np.testing.assert_allclose(got, want / np.linalg.norm(want), rtol=1e-5)


def test_heads_to_keep_removes_the_least_important_but_never_a_layers_last():
    importance = [np.array([0.1, 0.5]), np.array([0.2, 0.05, 0.9])]
    assert heads_to_keep(importance, 0) == [[0, 1], [0, 1, 2]]
    assert heads_to_keep(importance, 2) == [[1], [0, 2]]
    assert heads_to_keep(importance, 3) == [[1], [2]]
    with pytest.raises(ValueError, match="cannot remove 4"):
        heads_to_keep(importance, 4)


# === Pareto summaries ===

def test_pareto_front_by_hand():
    points = [(1.0, 0.80), (2.0, 0.85), (1.5, 0.78), (3.0, 0.84), (0.5, 0.70), (2.0, 0.86)]
    # (1.5, .78) loses to (1.0, .80); (3.0, .84) and (2.0, .85) lose to (2.0, .86).
    assert pareto_front(points) == [4, 0, 5]


def test_summarize_groups_averages_seeds_per_setting():
    rows = [{"method": "pkd", "setting": "3 layers", "seed": s, "metric": m,
             "ms_per_example": {"padded": p, "dynamic": d}}
            for s, m, p, d in ((0, 0.80, 1.0, 0.5), (1, 0.84, 3.0, 0.7), (2, 0.82, 2.0, 0.6))]
    rows.append({"method": "pkd", "setting": "2 layers", "seed": 0, "metric": 0.7,
                 "ms_per_example": {"padded": 1.0, "dynamic": 0.4}})
    three, two = summarize_groups(rows)
    assert three["seeds"] == [0, 1, 2]
    assert three["metric_mean"] == pytest.approx(0.82)
    assert three["metric_std"] == pytest.approx(0.02)  # sample std of .80, .84, .82
    assert (three["ms_padded"], three["ms_dynamic"]) == (pytest.approx(2.0), pytest.approx(0.6))
    assert two["metric_std"] is None
