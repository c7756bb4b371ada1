"""The three-step pipeline end to end on a tiny task and encoder: outputs, resume, skip, mismatch."""

import json
import os

import keras
import numpy as np
import pytest

from powerbert_tf import RetentionConfig
from tests.test_search import NO_DROPOUT
from tests.tiny_run import write_tiny_init, write_tiny_task_files
from training import fit_step
from training.config import resolve_config
from training.pipeline import Pipeline
from training.run_dir import RunConfigMismatch
from training.user_task import user_task


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    init = write_tiny_init(str(root / "init"), NO_DROPOUT)
    files = write_tiny_task_files(str(root / "data"))
    task = user_task("tiny", train=files["train"], dev=files["dev"], text_column="sentence",
                     label_column="label", max_length=16, batch_size=8)
    return init, task


def make_config(tiny, **overrides):
    init, task = tiny
    settings = dict(init=init, epochs=2, checkpoint_every=4, lr_bert=1e-3, lr_soft_extract=0.05,
                    lambda_=0.01, dropout=0.0)
    settings.update(overrides)
    return resolve_config(task, "paper", **settings)


def run(tiny, out, steps=("finetune", "search", "retrain"), **overrides):
    keras.utils.set_random_seed(0)
    return Pipeline(make_config(tiny, **overrides), str(out), task=tiny[1], verbose=0).run(steps)


def test_full_run_writes_every_artifact(tiny, tmp_path):
    summary = run(tiny, tmp_path)
    for name in ("config.json", "retention.json", "retention.png", "summary.json", "finetune/model.keras",
                 "search/model.keras", "retrain/model.keras", "finetune/metrics.json", "retrain/metrics.json"):
        assert os.path.exists(tmp_path / name), name
    assert os.listdir(tmp_path / "logs" / "search")
    retention = RetentionConfig.load(tmp_path / "retention.json")
    assert summary["retention"] == list(retention.lengths)
    assert summary["flop_ratio"] == pytest.approx(retention.flop_ratio, abs=1e-4)
    assert 0.0 <= summary["baseline"]["accuracy"] <= 1.0 and 0.0 <= summary["power_bert"]["accuracy"] <= 1.0
    final = keras.saving.load_model(tmp_path / "retrain" / "model.keras")
    assert final.encoder.elimination == "hard" and final.encoder.retention == retention
    with open(tmp_path / "summary.json") as f:
        assert json.load(f) == summary


def test_completed_steps_are_skipped(tiny, tmp_path, capsys):
    run(tiny, tmp_path, steps=("finetune",))
    before = os.path.getmtime(tmp_path / "finetune" / "model.keras")
    run(tiny, tmp_path, steps=("finetune",))
    assert "[finetune] already complete, skipping" in capsys.readouterr().out
    assert os.path.getmtime(tmp_path / "finetune" / "model.keras") == before


def test_other_settings_in_same_run_dir_are_refused(tiny, tmp_path):
    run(tiny, tmp_path, steps=())
    with pytest.raises(RunConfigMismatch, match="lambda_"):
        run(tiny, tmp_path, steps=(), lambda_=0.5)


def test_run_started_before_a_setting_existed_resumes(tiny, tmp_path):
    run(tiny, tmp_path, steps=())
    with open(tmp_path / "config.json") as f:
        saved = json.load(f)
    del saved["length_aware"]  # what a config.json written before the flag existed looks like
    with open(tmp_path / "config.json", "w") as f:
        json.dump(saved, f)
    run(tiny, tmp_path, steps=())
    with pytest.raises(RunConfigMismatch, match="length_aware"):
        run(tiny, tmp_path, steps=(), length_aware=True)


def test_length_aware_retrain_sees_bucketed_batches(tiny, tmp_path, monkeypatch):
    seen_lengths = set()
    real_fit = Pipeline._fit

    def spy(self, step, build_model, bucket, dev_bucket=False):
        if step == "retrain":
            model = build_model()
            assert model.encoder.length_aware and bucket and dev_bucket
            make_stream, _ = self._train_plan(step, bucket=bucket, drop_remainder=False)
            seen_lengths.update(int(x["input_ids"].shape[1]) for x, _ in make_stream(0))
        return real_fit(self, step, build_model, bucket, dev_bucket)

    monkeypatch.setattr(Pipeline, "_fit", spy)
    summary = run(tiny, tmp_path, length_aware=True, retention=(12, 6, 3))
    assert len(seen_lengths) > 1 and max(seen_lengths) < 16  # trimmed to each batch's longest
    final = keras.saving.load_model(tmp_path / "retrain" / "model.keras")
    assert final.encoder.length_aware and final.encoder.retention.lengths == (12, 6, 3)
    assert 0.0 <= summary["power_bert"]["accuracy"] <= 1.0


class Killed(BaseException):
    """Stands in for SIGKILL: not an Exception, so nothing on the way catches it."""


def test_killed_finetune_resumes_from_checkpoint_and_matches_uninterrupted(tiny, tmp_path, monkeypatch):
    run(tiny, tmp_path / "reference", steps=("finetune",))

    seen = []

    def die_in_third_chunk(self, batch, logs=None):
        seen.append(batch)
        if len(seen) == 10:  # chunks are 4 steps: two checkpoints written, mid-way through the third
            raise Killed()

    monkeypatch.setattr(fit_step._ChunkEnd, "on_train_batch_end", die_in_third_chunk, raising=False)
    with pytest.raises(Killed):
        run(tiny, tmp_path / "run", steps=("finetune",))
    with open(tmp_path / "run" / "finetune" / "progress.json") as f:
        assert json.load(f)["steps_done"] == 8
    assert not os.path.exists(tmp_path / "run" / "finetune" / "done.json")
    monkeypatch.undo()

    trained = []
    monkeypatch.setattr(fit_step._ChunkEnd, "on_train_batch_end",
                        lambda self, batch, logs=None: trained.append(batch), raising=False)
    run(tiny, tmp_path / "run", steps=("finetune",))
    with open(tmp_path / "run" / "finetune" / "progress.json") as f:
        assert len(trained) == json.load(f)["total_steps"] - 8  # continued, did not start over
    resumed = keras.saving.load_model(tmp_path / "run" / "finetune" / "checkpoint.keras")
    reference = keras.saving.load_model(tmp_path / "reference" / "finetune" / "checkpoint.keras")
    for a, b in zip(resumed.weights, reference.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5, err_msg=a.path)
    for name in ("progress.json",):
        with open(tmp_path / "run" / "finetune" / name) as f, open(tmp_path / "reference" / "finetune" / name) as g:
            assert [h["step"] for h in json.load(f)["history"]] == [h["step"] for h in json.load(g)["history"]]
