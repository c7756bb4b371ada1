"""Configuration search loop: penalty, two learning rates, clipping, resume after a kill."""

import dataclasses
import functools

import keras
import numpy as np
import pytest
import tensorflow as tf

from powerbert_tf import PowerBertClassifier
from powerbert_tf.loading import build_encoder
from tests.conftest import TINY, random_inputs
from training.search import ConfigurationSearch, is_retention, run_search

N = 12
NO_DROPOUT = dataclasses.replace(TINY, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def make_search(lr_bert=1e-3, lr_soft=0.05, lam=0.01, total_steps=8, seed=0):
    keras.utils.set_random_seed(seed)
    model = PowerBertClassifier(build_encoder(NO_DROPOUT, elimination="soft", sequence_length=N),
                                num_classes=2, dropout=0.0)
    model.build()
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="none")
    return ConfigurationSearch(model, loss, lam=lam, lr_bert=lr_bert, lr_soft=lr_soft,
                               total_steps=total_steps, global_batch=8, warmup_fraction=0.0)


def batches(count=8, seed=1):
    out = []
    for i in range(count):
        x = random_inputs(8, N, seed=seed + i)
        out.append((x, (x["input_ids"] == 7).any(axis=1).astype(np.int32)))
    return out


def stream(data):
    return lambda skip: tf.data.Dataset.from_generator(
        lambda: iter(data), output_signature=(
            {k: tf.TensorSpec((8, N), tf.int32) for k in data[0][0]}, tf.TensorSpec((8,), tf.int32))
    ).skip(skip)


def retention_values(search):
    return np.stack([v.numpy() for v in search.retention_variables])


def test_penalty_equals_lambda_times_depth_weighted_mass_by_hand():
    search = make_search(lam=0.01)
    values = [np.linspace(0, 1, N), np.full(N, 0.5), np.r_[np.ones(3), np.zeros(N - 3)]]
    for variable, value in zip(search.retention_variables, values):
        variable.assign(value.astype(np.float32))
    expected = 0.01 * (1 * 6.0 + 2 * 6.0 + 3 * 3.0)  # masses 6, 6, 3
    assert float(search.penalty()) == pytest.approx(expected, rel=1e-6)


def train(search, steps):
    for x, y in batches(steps):
        search.train_step(x, y)
    return search


@functools.lru_cache(maxsize=None)
def masses_after_8_steps(lam):
    """Per-layer masses after 8 updates on one fixed batch, from the same seeded start."""
    x, y = batches(1)[0]
    search = make_search(lam=lam, total_steps=8)
    for _ in range(8):
        search.train_step(x, y)
    return np.array(search.masses())


# Adam scales every step to about the learning rate whatever the gradient's size, so once
# lambda * j dwarfs the task gradient every retention weight takes a full step down and lambda no
# longer matters: 0.05 * (1 + 1 + 6/7 + 5/7 + ... + 1/7) = 0.25 per weight over these 8 steps,
# mass 9 of 12 per layer. The task gradient on the retention weights of this random tiny model is
# ~1e-7 to 4e-6 (measured), so the lambdas that compete with it are this small; Table 1's lambdas
# compete with a fine-tuned model's.
LAMBDAS = (1e-7, 1e-6, 1e-5)
SATURATED_MASS = 3 * 9.0


def test_mass_penalty_lowers_the_mass():
    without, with_penalty = masses_after_8_steps(0.0), masses_after_8_steps(LAMBDAS[-1])
    # The task loss alone also moves some weights (Adam amplifies its tiny gradient), but the
    # penalty must take every layer much further down.
    assert np.all(with_penalty < without - 1.5), (without, with_penalty)


def test_larger_lambda_removes_more():
    totals = [masses_after_8_steps(lam).sum() for lam in LAMBDAS]
    # Strictly decreasing with a margin, so rounding noise cannot pass for an effect of lambda.
    assert all(a - b > 1.0 for a, b in zip(totals, totals[1:])), dict(zip(LAMBDAS, totals))
    assert totals[-1] > SATURATED_MASS + 0.5  # still competing, not already saturated


def test_deeper_layers_lose_more_mass():
    # The penalty weighs layer j by j: where it competes with the task loss, deeper layers must
    # end lighter. Without the penalty no such order exists (the task gradient is larger deeper).
    masses = masses_after_8_steps(1e-6)
    assert masses[0] - masses[1] > 0.1 and masses[1] - masses[2] > 0.1, masses


def gradients_of_one_step(search, x, y):
    """(BERT, retention) gradients as `_replica_step` hands them to the two optimizers."""
    recorded = []
    for optimizer, variables in ((search.bert_optimizer, search.bert_variables),
                                 (search.soft_optimizer, search.retention_variables)):
        slots = [tf.Variable(tf.zeros_like(v), trainable=False) for v in variables]
        recorded.append(slots)

        def recording_apply(grads_and_vars, apply=optimizer.apply_gradients, slots=slots):
            grads_and_vars = list(grads_and_vars)
            for slot, (grad, _) in zip(slots, grads_and_vars):
                slot.assign(grad)
            return apply(grads_and_vars)

        optimizer.apply_gradients = recording_apply  # before the first step traces the tf.function
    search.train_step(x, y)
    return [[slot.numpy() for slot in slots] for slots in recorded]


def test_step_gradient_adds_lambda_times_depth_to_each_layer():
    x, y = batches(1)[0]
    lam = 0.01
    search = make_search(lam=lam)
    bert, retention = gradients_of_one_step(search, x, y)
    bert_0, retention_0 = gradients_of_one_step(make_search(lam=0.0), x, y)
    assert len(retention) == NO_DROPOUT.num_hidden_layers
    # Same start, same batch: the task gradients agree, so the difference is the penalty's own,
    # d/dr_j[i] of lam * sum_j j * sum_i r_j[i] = lam * j for every rank i of layer j.
    for j, (g, g_0) in enumerate(zip(retention, retention_0), start=1):
        np.testing.assert_allclose(g - g_0, np.full(N, lam * j), rtol=1e-4, atol=1e-8,
                                   err_msg=f"layer {j}")
    # The penalty depends on the retention weights only.
    for g, g_0, variable in zip(bert, bert_0, search.bert_variables):
        np.testing.assert_allclose(g, g_0, atol=1e-7, err_msg=variable.path)


def test_retention_is_clipped_to_the_unit_interval():
    # lr 0.5: two full Adam steps down take a weight from 1 to 0, the next ones would overshoot.
    down = retention_values(train(make_search(lam=1e-2, lr_soft=0.5, total_steps=6), 6))
    assert down.min() == 0.0 and down.max() <= 1.0
    # Without the penalty some weights get a task gradient that pushes them above 1.
    up = retention_values(train(make_search(lam=0.0, lr_soft=0.5, total_steps=6), 6))
    assert up.max() == 1.0 and up.min() >= 0.0


@pytest.mark.parametrize("frozen", ["bert", "soft"])
def test_each_learning_rate_drives_only_its_variables(frozen):
    search = make_search(lr_bert=0.0 if frozen == "bert" else 1e-3, lr_soft=0.0 if frozen == "soft" else 0.05)
    assert not any(is_retention(v) for v in search.bert_variables)
    assert len(search.retention_variables) == 3 and all(is_retention(v) for v in search.retention_variables)
    bert_before = [v.numpy() for v in search.bert_variables]
    soft_before = retention_values(search)
    for x, y in batches(3):
        search.train_step(x, y)
    bert_changed = max(np.abs(v.numpy() - b).max() for v, b in zip(search.bert_variables, bert_before))
    soft_changed = np.abs(retention_values(search) - soft_before).max()
    if frozen == "bert":
        assert bert_changed == 0.0 and soft_changed > 0
    else:
        assert soft_changed == 0.0 and bert_changed > 0


class Killed(Exception):
    pass


def test_resume_after_kill_matches_uninterrupted_run(tmp_path):
    data = batches(8)
    reference = make_search()
    run_search(reference, stream(data), 8, str(tmp_path / "ref"), str(tmp_path / "logs_ref"), 2, verbose=0)

    first = make_search()
    original_step = first.train_step
    calls = []

    def dying_step(x, y):
        if len(calls) == 5:
            raise Killed()
        calls.append(1)
        return original_step(x, y)

    first.train_step = dying_step
    with pytest.raises(Killed):
        run_search(first, stream(data), 8, str(tmp_path / "run"), str(tmp_path / "logs"), 2, verbose=0)

    resumed = make_search(seed=123)  # a new process: different initial weights, restored from disk
    progress = run_search(resumed, stream(data), 8, str(tmp_path / "run"), str(tmp_path / "logs"), 2,
                          verbose=0)
    assert [h["step"] for h in progress["history"]] == [2, 4, 6, 8]
    np.testing.assert_allclose(retention_values(resumed), retention_values(reference), atol=1e-5)
    for a, b in zip(resumed.model.weights, reference.model.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5, err_msg=a.path)


def test_batches_of_many_widths_do_not_retrace_every_width():
    # Relative retention searches on length-bucketed batches: one trace per width would cost
    # seconds each on a real model.
    search = make_search(total_steps=9)
    x, y = batches(1)[0]
    for width in range(4, N + 1):
        search.train_step({k: v[:, :width] for k, v in x.items()}, y)
    assert search._step.experimental_get_tracing_count() <= 3
