"""`powerbert baseline` and `powerbert analyze pareto` end to end on the tiny task: students train
from a fine-tuned run and resume, Head-Prune removes heads level by level, and the Pareto run
times every point and writes its table, JSON and plot."""

import json
import os

import keras
import pytest

from powerbert_cli.main import main
from tests.test_pipeline import make_config, tiny  # noqa: F401  (the tiny task fixture)
from training.baselines.baseline_dir import BaselineDir
from training.pipeline import Pipeline
from training.run_dir import RunDir

# About 70 s (a fine-tuned teacher, two students, four pruning levels, a timing run): `make test-all`.
# The losses, head importance, head removal and layer selection are checked in test_baselines.py.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def teacher(tiny, tmp_path_factory):  # noqa: F811
    out = tmp_path_factory.mktemp("teacher")
    keras.utils.set_random_seed(0)
    Pipeline(make_config(tiny), str(out), task=tiny[1], verbose=0).run(("finetune",))
    return str(out)


def _point(directory):
    record = BaselineDir(directory).read()
    assert len(record["points"]) == 1
    return record["points"][0]


@pytest.fixture(scope="module")
def baselines(teacher, tmp_path_factory):
    root = tmp_path_factory.mktemp("baselines")
    dirs = {"distilbert": str(root / "distilbert"), "pkd": str(root / "pkd"), "head-prune": str(root / "hp")}
    for method in ("distilbert", "pkd"):
        assert main(["baseline", method, "--teacher", teacher, "--layers", "2", "--lr", "3e-3", "--epochs", "4", "--quiet",
                     "--out", dirs[method]]) == 0
    assert main(["baseline", "head-prune", "--teacher", teacher, "--step-fraction", "0.15", "--levels", "3",
                 "--importance-examples", "40", "--out", dirs["head-prune"]]) == 0
    return dirs


def test_students_are_smaller_and_learn(teacher, baselines):
    full = RunDir(teacher).load_model("finetune", compile=False)
    for method, layers, pairs in (("distilbert", [0, 1], []), ("pkd", [0, 1], [[0, 0]])):
        point = _point(baselines[method])
        assert (point["layers"], point["teacher_layers"], point["layer_pairs"]) == (2, layers, pairs)
        assert point["dev"]["accuracy"] >= 0.9, point
        student = BaselineDir(baselines[method]).load_point(point["name"])
        assert student.encoder.bert_config.num_hidden_layers == 2
        assert student.count_params() < full.count_params()


def test_rerun_resumes_and_other_settings_are_refused(teacher, baselines, capsys):
    before = _point(baselines["pkd"])
    assert main(["baseline", "pkd", "--teacher", teacher, "--layers", "2", "--lr", "3e-3", "--epochs", "4", "--quiet",
                 "--out", baselines["pkd"]]) == 0
    assert _point(baselines["pkd"])["dev"] == before["dev"]
    assert "resuming from step" in capsys.readouterr().out  # nothing trained again
    assert main(["baseline", "pkd", "--teacher", teacher, "--layers", "1", "--out", baselines["pkd"]]) == 2
    assert "other settings" in capsys.readouterr().err


def test_head_prune_removes_heads_level_by_level(baselines):
    record = BaselineDir(baselines["head-prune"]).read()
    assert [p["heads"] for p in record["points"]] == [12, 10, 8, 6]  # 0.15 * 12 -> 2 per level
    for point in record["points"]:
        model = BaselineDir(baselines["head-prune"]).load_point(point["name"])
        assert sum(model.encoder.attention_heads) == point["heads"]
        assert [len(k) for k in point["kept_heads"]] == list(model.encoder.attention_heads)
        assert min(model.encoder.attention_heads) >= 1


def test_pareto_times_every_point_and_writes_its_report(teacher, baselines, tmp_path):
    out = str(tmp_path / "pareto")
    assert main(["analyze", "pareto", "--teacher", teacher, "--baseline", *baselines.values(),
                 "--batch-size", "8", "--repeats", "1", "--out", out]) == 0
    for name in ("pareto.md", "pareto.json", "pareto.png"):
        assert os.path.getsize(os.path.join(out, name)) > 0
    with open(os.path.join(out, "pareto.json")) as f:
        report = json.load(f)
    assert [r["method"] for r in report["rows"]] == ["BERT", "distilbert", "pkd"] + ["head-prune"] * 4
    assert report["rows"][0]["speedup"] == {"padded": 1.0, "dynamic": 1.0}
    for row in report["rows"][1:]:
        # The metric of the timed pass is the one the baseline recorded, in both batchings.
        assert row["metric"] == pytest.approx(row["stored_dev"]["primary"])
        assert row["metric_padded"] == pytest.approx(row["stored_dev"]["primary"])
    assert "| head-prune | 6/12 heads |" in open(os.path.join(out, "pareto.md")).read()


def test_pareto_names_a_bad_baseline_directory(teacher, tmp_path, capsys):
    assert main(["analyze", "pareto", "--teacher", teacher, "--baseline", str(tmp_path),
                 "--out", str(tmp_path / "p")]) == 2
    assert "not a baseline directory" in capsys.readouterr().err
