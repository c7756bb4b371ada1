"""`RunDir`: the resume rule (only settings that change a started step block it), the one
consistency check, and its errors."""

import json
import re
import os

import pytest

from powerbert_tf import RetentionConfig
from training.config import resolve_config
from training.run_dir import RunConfigMismatch, RunDir, RunDirError
from tests.serving_fixtures import TINY_N, TINY_RETENTION, tiny_classifier


def _started(run, step):
    os.makedirs(run.step_dir(step), exist_ok=True)
    with open(run.file(step, "progress.json"), "w") as f:
        json.dump({"steps_done": 1}, f)


def test_new_directory_saves_the_config(tmp_path):
    run = RunDir(tmp_path / "run")
    config = resolve_config("sst2", "quick")
    run.start(config)
    assert run.read_config() == config


def test_only_settings_of_started_steps_block_a_resume(tmp_path):
    run = RunDir(tmp_path)
    run.start(resolve_config("sst2", "quick"))
    _started(run, "finetune")
    # How often progress is saved changes no result: always accepted.
    run.start(resolve_config("sst2", "quick", checkpoint_every=7))
    # The search has not started: its settings may still change.
    run.start(resolve_config("sst2", "quick", checkpoint_every=7, lambda_=1e-3))
    # The fine-tuning batch size changes a started step: refused, naming the setting.
    with pytest.raises(RunConfigMismatch, match=r"\(batch_size\)"):
        run.start(resolve_config("sst2", "quick", batch_size=8, lambda_=1e-3))
    _started(run, "search")
    with pytest.raises(RunConfigMismatch, match=r"\(lambda_\)"):
        run.start(resolve_config("sst2", "quick", lambda_=5e-3))
    # Re-training settings stay free until re-training starts.
    run.start(resolve_config("sst2", "quick", lambda_=1e-3, length_aware=True, retrain_epochs=2))


def test_a_started_run_resumes_on_other_machines_but_not_in_another_precision(tmp_path):
    run = RunDir(tmp_path)
    run.start(resolve_config("sst2", "quick", strategy="multi-worker", mixed_precision="bfloat16"))
    _started(run, "finetune")
    # The same global batches on any number of replicas: one machine may resume a multi-worker run.
    run.start(resolve_config("sst2", "quick", strategy="default", mixed_precision="bfloat16"))
    with pytest.raises(RunConfigMismatch, match=r"\(mixed_precision\)"):
        run.start(resolve_config("sst2", "quick", strategy="default"))


def test_a_process_with_scratch_reads_the_run_and_writes_its_scratch(tmp_path):
    chief, worker = RunDir(tmp_path / "run"), RunDir(tmp_path / "run", scratch=tmp_path / "scratch")
    config = resolve_config("sst2", "quick")
    chief.start(config)
    worker.start(config)  # checks the chief's config.json, writes its own copy
    worker.mark_done("finetune", {"dev": 1})
    assert sorted(os.listdir(tmp_path / "run")) == ["config.json", "task.json"]
    assert (tmp_path / "scratch" / "finetune" / "done.json").exists() and not worker.step_done("finetune")
    assert worker.log_dir("search") == str(tmp_path / "scratch" / "logs" / "search")


def test_config_saved_before_a_setting_existed_reads_with_its_default(tmp_path):
    with open(tmp_path / "config.json", "w") as f:
        json.dump({"task": "sst2", "init": "minilm-l6", "max_length": 64}, f)
    config = RunDir(tmp_path).read_config()
    assert (config.max_length, config.length_aware, config.checkpoint_every) == (64, False, 200)


def test_errors_name_the_missing_piece(tmp_path):
    with pytest.raises(RunDirError, match="does not exist"):
        RunDir(tmp_path / "nope").read_config()
    with pytest.raises(RunDirError, match="not a run directory"):
        RunDir(tmp_path).read_config()
    run = RunDir(tmp_path)
    run.start(resolve_config("sst2", "quick", max_length=TINY_N))
    with pytest.raises(RunDirError, match=r"no finetune/model.keras \(the finetune step has not finished\)"):
        run.check()
    with pytest.raises(RunDirError, match="no finished model yet"):
        run.final_step()
    with pytest.raises(RunDirError, match="no retention.json"):
        run.read_retention()


def test_check_refuses_a_retention_for_another_n(tmp_path):
    run = RunDir(tmp_path)
    run.start(resolve_config("sst2", "quick", max_length=TINY_N))
    run.write_retention(RetentionConfig(tuple(TINY_RETENTION), 2 * TINY_N))
    with pytest.raises(RunDirError, match=f"is for N={2 * TINY_N} but config.json has max_length={TINY_N}"):
        run.check(need=())


def test_final_model_and_its_retention_must_agree(tmp_path):
    run = RunDir(tmp_path)
    run.start(resolve_config("sst2", "quick", max_length=TINY_N))
    os.makedirs(run.step_dir("finetune"))
    tiny_classifier(retention=None).save(run.model_path("finetune"))
    assert run.final_step() == "finetune"
    os.makedirs(run.step_dir("retrain"))
    tiny_classifier(retention=TINY_RETENTION).save(run.model_path("retrain"))
    assert run.final_step() == "retrain"
    run.write_retention(RetentionConfig(tuple(TINY_RETENTION), TINY_N))
    config, retention = run.check(need=("finetune", "retrain"))
    assert retention.lengths == tuple(TINY_RETENTION)
    assert run.load_checked_model("retrain", retention).encoder.retention == retention
    other = RetentionConfig(tuple(v - 1 for v in TINY_RETENTION), TINY_N)
    run.write_retention(other)
    with pytest.raises(RunDirError, match=re.escape(f"keeps {list(TINY_RETENTION)} word vectors")):
        run.load_checked_model("retrain", run.read_retention())
    with pytest.raises(RunDirError, match="is not a hard-extract model"):
        run.check_model("retrain", tiny_classifier(retention=None), other)
