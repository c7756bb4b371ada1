"""The three-step pipeline end to end on a tiny task and encoder: learning, pruning, outputs,
resume, skip, mismatch."""

import dataclasses
import itertools
import json
import math
import os
import shutil

import keras
import numpy as np
import pytest

from tests.test_search import NO_DROPOUT
from tests.tiny_run import write_tiny_init, write_tiny_task_files
from training import fit_step
from training.config import resolve_config
from training.pipeline import Pipeline, format_summary
from training.run_dir import RunConfigMismatch, RunDir
from training.input_pipeline import make_dataset
from training.task_data import TaskData
from training.user_task import user_task

N = 16


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    keras.utils.set_random_seed(0)  # the same random "pretrained" encoder on every run
    init = write_tiny_init(str(root / "init"), NO_DROPOUT)
    files = write_tiny_task_files(str(root / "data"))
    task = user_task("tiny", train=files["train"], dev=files["dev"], text_column="sentence",
                     label_column="label", max_length=N, batch_size=8)
    return init, task


# Label 1 iff the sentence contains "good"; the dev split is 16 positive, 16 negative, so a model
# that learned nothing (one class for everything) scores 0.5. Models that learned score 1.0.
MIN_ACCURACY = 0.9


def make_config(tiny, **overrides):
    init, task = tiny
    # Fine-tuning: 16 epochs (192 steps) at 3e-3 reached dev accuracy 1.0 by step 48 for each of 8
    # random encoders tried; 4 or 8 epochs stayed at 0.5 for some (warm-up plus decay leave too few
    # steps near the peak rate). Steps are cheap at this size, chunks are not (a dev evaluation and
    # two model saves each), hence 48-step chunks.
    # Search: Adam moves each retention weight by about its learning rate per step whatever the
    # gradient's size, so the depth weight j only shows where lambda * j competes with the task
    # gradient (~1e-6 here); at Table 1's lambdas every layer of this model ends at the same mass.
    # With 3e-6, 24 steps ended at masses like 8.6, 7.8, 7.0 of 16 for each of 6 seeds tried.
    settings = dict(init=init, epochs=16, search_epochs=2, retrain_epochs=2, checkpoint_every=48,
                    lr_bert=3e-3, lr_soft_extract=0.05, lambda_=3e-6, dropout=0.0)
    settings.update(overrides)
    return resolve_config(task, "paper", **settings)


def run(tiny, out, steps=("finetune", "search", "retrain"), **overrides):
    keras.utils.set_random_seed(0)
    return Pipeline(make_config(tiny, **overrides), str(out), task=tiny[1], verbose=0).run(steps)


@pytest.fixture(scope="module")
def finished(tiny, tmp_path_factory):
    """(summary, directory) of one complete run; tests that change it work on a copy."""
    out = tmp_path_factory.mktemp("finished")
    return run(tiny, out), out


def copy_run(source, target, parts=None):
    """`source` copied to `target`, or only `parts` of it: the files a run that stopped after
    those steps would have (e.g. `powerbert train --steps finetune`)."""
    for part in parts or os.listdir(source):
        if os.path.isdir(source / part):
            shutil.copytree(source / part, target / part, dirs_exist_ok=True)
        else:
            os.makedirs((target / part).parent, exist_ok=True)
            shutil.copy2(source / part, target / part)
    return target


FINETUNE_ONLY = ("config.json", "finetune", "logs/finetune")
UP_TO_SEARCH = FINETUNE_ONLY + ("search", "logs/search", "retention.json")


def test_full_run_learns_prunes_and_writes_every_artifact(finished):
    summary, out = finished
    for name in ("config.json", "retention.json", "retention.png", "summary.json", "finetune/model.keras",
                 "search/model.keras", "retrain/model.keras", "finetune/metrics.json", "retrain/metrics.json"):
        assert os.path.exists(out / name), name
    assert os.listdir(out / "logs" / "search")
    # What the method exists for: fine-tuning learned the task, the search removed word vectors,
    # and the re-trained model with fewer word vectors still solves the task.
    assert summary["baseline"]["accuracy"] >= MIN_ACCURACY, summary["baseline"]
    assert summary["power_bert"]["accuracy"] >= MIN_ACCURACY, summary["power_bert"]
    retention = RunDir(out).read_retention()
    assert retention.sequence_length == N and max(retention.lengths) < N, retention
    # The depth-weighted penalty presses deeper layers harder: their masses end strictly lower
    # (by a margin, so float noise cannot pass), before any rounding or monotonicity fix-up.
    with open(out / "search" / "masses.json") as f:
        masses = json.load(f)
    assert all(shallower - deeper > 0.1 for shallower, deeper in zip(masses, masses[1:])), masses
    # METHOD.md: l_j = ceil(mass_j), at least 1, then l_j = min(l_j, l_{j-1}).
    assert list(retention.lengths) == list(itertools.accumulate((max(math.ceil(m), 1) for m in masses), min))
    assert summary["retention"] == list(retention.lengths)
    assert summary["flop_ratio"] == pytest.approx(NO_DROPOUT.num_hidden_layers * N / sum(retention.lengths), abs=1e-4)
    final = keras.saving.load_model(out / "retrain" / "model.keras")
    assert final.encoder.elimination == "hard" and final.encoder.retention == retention
    with open(out / "summary.json") as f:
        assert json.load(f) == summary


@pytest.mark.parametrize("checkpoint_every", [48, 7], ids=["same", "other-checkpoint-every"])
def test_finished_run_rerun_skips_every_step(tiny, finished, tmp_path, capsys, checkpoint_every):
    summary, out = finished
    copy_run(out, tmp_path)
    models = {step: os.path.getmtime(tmp_path / step / "model.keras") for step in ("finetune", "search", "retrain")}
    # How often progress is saved changes no result, so it never blocks a resume.
    again = run(tiny, tmp_path, checkpoint_every=checkpoint_every)
    printed = capsys.readouterr().out
    for step, mtime in models.items():
        assert f"[{step}] already complete, skipping" in printed
        assert os.path.getmtime(tmp_path / step / "model.keras") == mtime
    assert again["baseline"] == summary["baseline"] and again["retention"] == summary["retention"]


@pytest.mark.parametrize("setting, value", [("lr_bert", 1e-3), ("lambda_", 0.5), ("length_aware", True)])
def test_changed_setting_of_a_started_step_is_refused(tiny, finished, tmp_path, setting, value):
    copy_run(finished[1], tmp_path)
    with pytest.raises(RunConfigMismatch, match=rf"\({setting}\)"):
        run(tiny, tmp_path, steps=(), **{setting: value})


def test_settings_of_steps_not_started_may_change(tiny, finished, tmp_path):
    run(tiny, tmp_path / "fresh", steps=())
    run(tiny, tmp_path / "fresh", steps=(), lr_bert=1e-3)  # nothing has started yet
    copy_run(finished[1], tmp_path / "run", FINETUNE_ONLY)
    with pytest.raises(RunConfigMismatch, match=r"\(lr_bert\)"):
        run(tiny, tmp_path / "run", steps=(), lr_bert=1e-3)
    # The search has not started: its lambda may change, and it runs with the new one.
    summary = run(tiny, tmp_path / "run", steps=("finetune", "search"), lambda_=1e-5)
    assert summary["baseline"] == finished[0]["baseline"]  # fine-tuning was not redone
    with open(tmp_path / "run" / "config.json") as f:
        assert json.load(f)["lambda_"] == 1e-5
    with pytest.raises(RunConfigMismatch, match=r"\(lambda_\)"):
        run(tiny, tmp_path / "run", steps=(), lambda_=3e-6)


def test_run_started_before_a_setting_existed_resumes(tiny, finished, tmp_path):
    copy_run(finished[1], tmp_path)
    with open(tmp_path / "config.json") as f:
        saved = json.load(f)
    del saved["length_aware"]  # what a config.json written before the flag existed looks like
    with open(tmp_path / "config.json", "w") as f:
        json.dump(saved, f)
    run(tiny, tmp_path, steps=())
    with open(tmp_path / "config.json") as f:
        assert json.load(f)["length_aware"] is False
    with pytest.raises(RunConfigMismatch, match=r"\(length_aware\)"):  # re-training has started
        run(tiny, tmp_path, steps=(), length_aware=True)


@pytest.mark.slow
def test_length_aware_retrain_sees_bucketed_batches(tiny, finished, tmp_path, monkeypatch):
    seen_lengths = set()
    real_fit = Pipeline._fit

    def spy(self, step, build_model, bucket, dev_bucket=False):
        if step == "retrain":
            model = build_model()
            assert model.encoder.length_aware and bucket and dev_bucket
            make_stream, _ = self.data.train_plan(step, bucket=bucket, drop_remainder=False)
            seen_lengths.update(int(x["input_ids"].shape[1]) for x, _ in make_stream(0))
        return real_fit(self, step, build_model, bucket, dev_bucket)

    monkeypatch.setattr(Pipeline, "_fit", spy)
    copy_run(finished[1], tmp_path, UP_TO_SEARCH)  # both settings below change re-training only
    summary = run(tiny, tmp_path, length_aware=True, retention=(12, 6, 3))
    assert len(seen_lengths) > 1 and max(seen_lengths) < N  # trimmed to each batch's longest
    final = keras.saving.load_model(tmp_path / "retrain" / "model.keras")
    assert final.encoder.length_aware and final.encoder.retention.lengths == (12, 6, 3)
    assert summary["power_bert"]["accuracy"] >= MIN_ACCURACY, summary["power_bert"]


@pytest.mark.slow
def test_relative_retention_searches_and_retrains_on_bucketed_batches(tiny, finished, tmp_path, monkeypatch):
    seen_lengths = set()
    real_plan = TaskData.train_plan

    def spy(self, step, bucket, drop_remainder):
        make_stream, total = real_plan(self, step, bucket, drop_remainder)
        if step in ("search", "retrain"):
            seen_lengths.update(int(x["input_ids"].shape[1]) for x, _ in make_stream(0))
        return make_stream, total

    monkeypatch.setattr(TaskData, "train_plan", spy)
    copy_run(finished[1], tmp_path, FINETUNE_ONLY)  # the setting changes the search and re-training
    summary = run(tiny, tmp_path, relative_retention=True)
    assert len(seen_lengths) > 1 and max(seen_lengths) < N  # trimmed to each batch's longest
    retention = RunDir(tmp_path).read_retention()
    assert retention.relative and max(retention.lengths) < N, retention
    final = keras.saving.load_model(tmp_path / "retrain" / "model.keras")
    assert final.encoder.relative_retention and final.encoder.retention == retention
    assert summary["power_bert"]["accuracy"] >= MIN_ACCURACY, summary["power_bert"]
    # A started search refuses to resume in the other mode.
    with pytest.raises(RunConfigMismatch, match="relative_retention"):
        run(tiny, tmp_path, relative_retention=False)


@pytest.mark.slow
def test_checkpoints_chosen_on_held_out_training_data(tiny, tmp_path):
    summary = run(tiny, tmp_path, steps=("finetune",), selection_holdout=0.25)
    assert summary["train_examples"]["finetune"] == 72  # 96 minus the 24 held out
    assert summary["checkpoints_chosen_on"] == "24 training examples held out (25%, seed 0)"
    with open(tmp_path / "finetune" / "done.json") as f:
        done = json.load(f)
    # The step reports dev for the checkpoint the held-out data chose.
    with open(tmp_path / "finetune" / "progress.json") as f:
        best = json.load(f)["best"]
    assert done["selection"] == best["dev"] and done["best_step"] == best["step"]
    from training.fit_step import evaluate
    model = keras.saving.load_model(tmp_path / "finetune" / "model.keras")
    pipeline = Pipeline(make_config(tiny, selection_holdout=0.25), str(tmp_path), task=tiny[1], verbose=0)
    assert done["dev"]["accuracy"] == pytest.approx(evaluate(model, pipeline.dev_dataset(), tiny[1])["accuracy"])


class Killed(BaseException):
    """Stands in for SIGKILL: not an Exception, so nothing on the way catches it."""


@pytest.mark.slow
def test_killed_finetune_resumes_from_checkpoint_and_matches_uninterrupted(tiny, tmp_path, monkeypatch):
    short = dict(epochs=2, checkpoint_every=4)  # 24 steps in chunks of 4: a kill can land mid-run
    run(tiny, tmp_path / "reference", steps=("finetune",), **short)

    seen = []

    def die_in_third_chunk(self, batch, logs=None):
        seen.append(batch)
        if len(seen) == 10:  # chunks are 4 steps: two checkpoints written, mid-way through the third
            raise Killed()

    monkeypatch.setattr(fit_step._ChunkEnd, "on_train_batch_end", die_in_third_chunk, raising=False)
    with pytest.raises(Killed):
        run(tiny, tmp_path / "run", steps=("finetune",), **short)
    with open(tmp_path / "run" / "finetune" / "progress.json") as f:
        assert json.load(f)["steps_done"] == 8
    assert not os.path.exists(tmp_path / "run" / "finetune" / "done.json")
    monkeypatch.undo()

    # Resumed with another --checkpoint-every: accepted, and the started step keeps its 4-step
    # chunks (its learning-rate schedule spans them), so it still matches the uninterrupted run.
    trained = []
    monkeypatch.setattr(fit_step._ChunkEnd, "on_train_batch_end",
                        lambda self, batch, logs=None: trained.append(batch), raising=False)
    run(tiny, tmp_path / "run", steps=("finetune",), **{**short, "checkpoint_every": 8})
    with open(tmp_path / "run" / "finetune" / "progress.json") as f:
        assert len(trained) == json.load(f)["total_steps"] - 8  # continued, did not start over
    resumed = keras.saving.load_model(tmp_path / "run" / "finetune" / "checkpoint.keras")
    reference = keras.saving.load_model(tmp_path / "reference" / "finetune" / "checkpoint.keras")
    for a, b in zip(resumed.weights, reference.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5, err_msg=a.path)
    with open(tmp_path / "run" / "finetune" / "progress.json") as f, \
            open(tmp_path / "reference" / "finetune" / "progress.json") as g:
        steps = [h["step"] for h in json.load(f)["history"]]
        assert steps == [h["step"] for h in json.load(g)["history"]] == [4, 8, 12, 16, 20, 24]


def test_evaluate_scores_a_regression_task_from_its_pipeline_batches():
    # make_dataset carries regression labels as (B, 1); the metrics take 1-D scores (STS-B used
    # to stop at its first dev evaluation).
    import tensorflow as tf

    from training.data import Examples
    from training.tasks import get_task

    task = get_task("stsb")
    scores = [0.5, 4.0, 2.5, 3.0, 1.0]
    # Each example's prediction is the number its first text spells, whatever order the batches take.
    examples = Examples(["1", "2", "4", "3", "0"], ["x", "y", "z", "w", "v"], np.float32(scores),
                        np.arange(1, 6), "dev.tsv")
    tokenizer = lambda a, b, max_length: {"input_ids": tf.tile(
        tf.strings.to_number(a, tf.int32)[:, None], [1, 4])}
    ds = make_dataset(examples, tokenizer, 4, 2, is_regression=True)
    model = lambda features, training: tf.cast(features["input_ids"][:, :1], tf.float32)
    metrics = fit_step.evaluate(model, ds, task)
    # Predictions 1, 2, 4, 3, 0 against 0.5, 4, 2.5, 3, 1: ranks 2,3,5,4,1 vs 1,5,3,4,2.
    assert metrics["spearman"] == pytest.approx(1 - 6 * (1 + 4 + 4 + 0 + 1) / (5 * 24))


def test_other_dev_split_is_evaluated_with_each_steps_best_model(tiny, tmp_path):
    # MNLI's dev_mismatched: a second evaluation split, reported beside dev. Here it is the dev file
    # with every label flipped, so the model that scores dev accuracy a scores 1 - a on it (whatever
    # it learned in its two short epochs).
    init, task = tiny
    dev_path = dict(task.files)["dev"]
    lines = open(dev_path).read().splitlines()
    flipped = [lines[0]] + [f"{t}\t{1 - int(y)}" for t, y in (line.rsplit("\t", 1) for line in lines[1:])]
    other = tmp_path / "flipped.tsv"
    other.write_text("\n".join(flipped) + "\n")
    task = dataclasses.replace(task, files=task.files + (("dev_flipped", str(other)),),
                               other_dev_splits=("dev_flipped",),
                               labelled_splits=task.labelled_splits + ("dev_flipped",))
    keras.utils.set_random_seed(0)
    config = make_config((init, task), epochs=2, checkpoint_every=12)
    summary = Pipeline(config, str(tmp_path / "run"), task=task, verbose=0).run(("finetune",))
    dev = summary["baseline"]["accuracy"]
    assert summary["other_dev"]["dev_flipped"]["baseline"]["accuracy"] == pytest.approx(1 - dev)
    assert summary["other_dev"]["dev_flipped"]["power_bert"] is None
    assert "baseline dev_flipped accuracy" in format_summary(summary)
