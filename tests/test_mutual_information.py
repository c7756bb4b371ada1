"""`powerbert analyze mi`: MI on hand-computed tables, eliminating one ranked word at block j
against a physical-removal reference and the encoder's hard mode, and the command on a tiny run."""

import dataclasses
import json
import math
import os

import keras
import numpy as np
import pytest
import sklearn.metrics

from analysis.mutual_information import entropy, mutual_information
from analysis.significance_mi import logits_without_ranked_words, predictions_without_ranked_words
from powerbert_cli.main import main
from powerbert_tf import PowerBertClassifier
from powerbert_tf.loading import build_encoder
from tests.conftest import TINY, random_inputs
from tests.tiny_run import write_tiny_init, write_tiny_task_files
from training.config import resolve_config
from training.run_dir import RunDir
from training.user_task import user_task

# === Mutual information on hand-computed cases ===


def test_independent_labels_have_no_mutual_information():
    # Every (x, y) pair occurs once: Pr(x, y) = 1/4 = Pr(x) Pr(y) in every cell.
    assert mutual_information([0, 0, 1, 1], [0, 1, 0, 1]) == 0.0
    assert mutual_information([1, 1, 1], [0, 1, 0]) == 0.0  # a constant X tells nothing


def test_identical_labels_share_all_of_h_x():
    x = [0, 0, 0, 1]
    h = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))  # 0.5623 nats
    assert entropy(x) == pytest.approx(h, abs=1e-12)
    assert mutual_information(x, x) == pytest.approx(h, abs=1e-12)
    assert entropy([0, 1] * 5) == pytest.approx(math.log(2), abs=1e-12)  # the paper's 0.69
    # Relabelled Y determines X just as well.
    assert mutual_information(x, ["b", "b", "b", "a"]) == pytest.approx(h, abs=1e-12)


def test_a_2x2_table_worked_by_hand():
    # Counts of (X, Y) over 8 inputs:   Y=0  Y=1
    #                              X=0    3    1
    #                              X=1    1    3
    # Pr(X=b) = Pr(Y=b') = 1/2, so each cell contributes Pr * ln(Pr / (1/4)):
    # MI = 2 * 3/8 * ln(3/2) + 2 * 1/8 * ln(1/2) = 0.75 * 0.405465 - 0.25 * 0.693147 = 0.130812.
    x = [0, 0, 0, 0, 1, 1, 1, 1]
    y = [0, 0, 0, 1, 0, 1, 1, 1]
    assert mutual_information(x, y) == pytest.approx(0.130812, abs=1e-6)
    assert mutual_information(x, y) == pytest.approx(0.75 * math.log(1.5) + 0.25 * math.log(0.5), abs=1e-12)


def test_symmetric_and_equal_to_scikit_learn():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 3, 500)
    y = np.where(rng.random(500) < 0.6, x, rng.integers(0, 4, 500))
    assert mutual_information(x, y) == pytest.approx(mutual_information(y, x), abs=1e-12)
    assert mutual_information(x, y) == pytest.approx(sklearn.metrics.mutual_info_score(x, y), abs=1e-12)
    assert 0 < mutual_information(x, y) < min(entropy(x), entropy(y))


def test_mismatched_or_empty_labels_are_refused():
    with pytest.raises(ValueError, match="paired, non-empty"):
        mutual_information([0, 1], [0])
    with pytest.raises(ValueError, match="paired, non-empty"):
        entropy([])


# === Eliminating the k-th word at block j ===

# Larger weights than BERT's 0.02 make attention peaked, so removing a word moves the logits far
# beyond float noise and a wrong position would show.
SHARP = dataclasses.replace(TINY, initializer_range=0.4, hidden_dropout_prob=0.0,
                            attention_probs_dropout_prob=0.0)
T = 10


@pytest.fixture(scope="module")
def classifier():
    keras.utils.set_random_seed(3)
    model = PowerBertClassifier(build_encoder(SHARP), num_classes=2, dropout=0.0)
    model.build()
    return model


def numpy_significance(probs):
    """Sig(w) = sum_h sum_{q != w} A[h, q, w] of one unpadded input's probs (H, n, n)."""
    summed = probs.sum(axis=0)
    return summed.sum(axis=0) - np.diag(summed)


def reference_logits(model, features, b, block):
    """Per rank k = 1..n-1 of input b: the logits with its k-th most significant word besides
    [CLS] deleted from the sequence after block `block` (a shorter input, no masking)."""
    n = int(features["attention_mask"][b].sum())
    ids, types = (features[name][b:b + 1, :n] for name in ("input_ids", "token_type_ids"))
    hidden, ones = model.encoder.embeddings(ids, types, training=False), np.ones((1, n), np.int32)
    for layer in model.encoder.encoder_layers[:block]:
        out = layer(hidden, ones, training=False, return_scores=True)
        hidden = out["hidden"].numpy()
    significance = numpy_significance(out["attention_probs"].numpy()[0])
    order = sorted(range(1, n), key=lambda w: (-significance[w], w))  # ties: lower position first
    logits = []
    for word in order:
        shorter = np.delete(hidden, word, axis=1)
        for layer in model.encoder.encoder_layers[block:]:
            shorter = layer(shorter, ones[:, :n - 1], training=False)["hidden"]
        logits.append(model.head(model.encoder.pooler(shorter[:, 0, :])).numpy()[0])
    return np.array(logits)


@pytest.mark.parametrize("block", [1, 2])
def test_removing_the_kth_word_equals_deleting_it_from_the_sequence(classifier, block):
    features = random_inputs(6, T, seed=block)
    ranks = np.arange(1, T)
    logits, words = logits_without_ranked_words(classifier, features, block, ranks, max_rows=16)
    assert logits.shape == (T, 6, 2)
    np.testing.assert_array_equal(words, features["attention_mask"].sum(axis=1) - 1)
    np.testing.assert_allclose(logits[0], classifier(features).numpy(), atol=1e-5)
    moved = 0.0
    for b in range(6):
        expected = reference_logits(classifier, features, b, block)
        n_words = len(expected)
        np.testing.assert_allclose(logits[1:n_words + 1, b], expected, atol=1e-5)
        # Ranks beyond the input's words remove nothing.
        np.testing.assert_allclose(logits[n_words + 1:, b], np.tile(logits[0, b], (T - 1 - n_words, 1)), atol=1e-5)
        moved = max(moved, float(np.abs(expected - logits[0, b]).max()))
    assert moved > 1e-2  # removing a word did change the logits: the comparison is not vacuous


def test_removing_the_least_significant_word_equals_hard_mode_keeping_the_rest(classifier):
    # Full-length inputs: hard mode keeping N-1 of N from block j on drops exactly the word of
    # rank N-1 at block j (the least significant besides [CLS]) and nothing after.
    features = random_inputs(5, T, seed=7, min_len=T)
    for block in (1, 2, 3):
        retention = [T] * (block - 1) + [T - 1] * (SHARP.num_hidden_layers - block + 1)
        hard = classifier.with_elimination(elimination="hard", retention=retention, sequence_length=T)
        logits, _ = logits_without_ranked_words(classifier, features, block, [T - 1])
        np.testing.assert_allclose(logits[1], hard(features).numpy(), atol=1e-5)


def test_predictions_count_inputs_without_a_kth_word_as_unchanged(classifier):
    features = random_inputs(8, T, seed=11)
    x, y = predictions_without_ranked_words(classifier, features, 1, max_rank=T + 3, max_rows=20)
    np.testing.assert_array_equal(x, np.argmax(classifier(features).numpy(), axis=-1))
    logits, words = logits_without_ranked_words(classifier, features, 1, np.arange(1, T))
    assert y.shape == (T + 3, 8)
    for k in range(1, T + 4):
        has_word = words >= k
        expected = np.where(has_word, np.argmax(logits[min(k, T - 1)], axis=-1), x)
        np.testing.assert_array_equal(y[k - 1], expected)


# === The command on a tiny run ===

N = 16


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("mi")
    init = write_tiny_init(str(root / "init"))
    files = write_tiny_task_files(str(root / "data"), n_train=40)
    task = user_task("tiny", train=files["train"], dev=files["dev"], text_column="sentence",
                     label_column="label", max_length=N, batch_size=8)
    run = RunDir(root / "run")
    run.start(resolve_config(task, "paper", init=init), task)
    keras.utils.set_random_seed(5)
    model = PowerBertClassifier(build_encoder(SHARP), num_classes=2, dropout=0.0)
    model.build()
    run.adopt_model("finetune", model, {"accuracy": 0.5})
    return run.path


def test_cli_writes_mi_json_and_png(tiny_run, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["analyze", "mi", "--run", tiny_run, "--blocks", "1,3", "--examples", "30", "--seed", "1",
                 "--out", str(out), "--quiet"])
    assert code == 0
    report = json.loads((out / "mi.json").read_text())
    assert (report["examples"], report["seed"], report["blocks"], report["sequence_length"]) == (30, 1, [1, 3], N)
    assert "seeded random subset" in report["inputs"] and not os.path.isabs(report["run"])
    for result in report["per_block"]:
        assert result["k"] == list(range(1, N)) and len(result["mi"]) == N - 1
        assert all(0 <= mi <= result["h_x"] + 1e-12 for mi in result["mi"])
        assert result["h_x"] == pytest.approx(report["h_x"])
    # After the last block only [CLS] is read: removing any other word there changes nothing.
    last = report["per_block"][1]
    assert last["changed"] == [0] * (N - 1) and last["mi"] == pytest.approx([report["h_x"]] * (N - 1))
    # Each input has fewer than N-1 words, so the largest ranks find no word anywhere.
    assert report["per_block"][0]["inputs_with_word"][-1] == 0 and report["per_block"][0]["changed"][-1] == 0
    assert (out / "mi.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"H(X) = {report['h_x']:.3f}" in capsys.readouterr().out


def test_cli_refuses_bad_blocks(tiny_run, tmp_path, capsys):
    assert main(["analyze", "mi", "--run", tiny_run, "--blocks", "4", "--out", str(tmp_path)]) == 2
    assert "block 4 is not in 1..3" in capsys.readouterr().err
    assert main(["analyze", "mi", "--run", tiny_run, "--blocks", "1,x", "--out", str(tmp_path)]) == 2
    assert "--blocks must be comma-separated integers" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "mi.json")
