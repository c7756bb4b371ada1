"""The search loop and `model.fit` under `tf.distribute.MirroredStrategy` (two logical CPUs)
equal one replica."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_two_replicas_give_the_same_loss_and_gradients_as_one():
    result = subprocess.run([sys.executable, "-m", "tests.distributed_step"], cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["replicas"] == 2
    assert report["mirrored_loss"] == pytest.approx(report["single_loss"], rel=1e-5)
    assert report["max_update"] > 1e-2  # the step did move the weights
    assert report["max_update_diff"] < 1e-6
    # Fine-tuning and re-training: pieces of 3 and 4 weighted into the mean over the 7 examples.
    assert report["workers"] == 1
    assert report["fit_max_update"] > 1e-2
    assert report["fit_max_update_diff"] < 1e-6
