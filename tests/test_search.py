"""Configuration search loop: penalty, two learning rates, clipping, resume after a kill."""

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

from powerbert_tf import PowerBertClassifier, RetentionConfig
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


def test_retention_moves_and_stays_in_unit_interval():
    search = make_search()
    before = retention_values(search)
    for x, y in batches(6):
        search.train_step(x, y)
    after = retention_values(search)
    assert np.abs(after - before).max() > 0.05
    assert after.min() >= 0.0 and after.max() <= 1.0
    config = RetentionConfig.from_masses(search.masses(), N)
    assert config.num_layers == 3 and list(config.lengths) == sorted(config.lengths, reverse=True)


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
