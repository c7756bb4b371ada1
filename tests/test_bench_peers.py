"""The peers in `powerbert bench`: Hugging Face PyTorch and ONNX Runtime's optimized BERT, built
from our fine-tuned weights, and the report's comparison against them."""

import json
import os

import numpy as np
import pytest

from benchmarks import peers
from benchmarks.run import run_benchmark
from benchmarks.stats import peer_comparison
from powerbert_tf.checkpoints.huggingface import google_to_hf_name, hf_to_google_name
from powerbert_tf.checkpoints.variable_names import google_variable_map
from tests.conftest import random_inputs
from tests.serving_fixtures import tiny_classifier, tiny_tokenizer
from tests.test_bench import LABELS, SENTENCES, _write_run

# === Pure parts ===


def test_hf_names_invert_the_import_mapping():
    encoder = tiny_classifier(retention=None).encoder
    for google_name in google_variable_map(encoder):
        hf_name, transpose = google_to_hf_name(google_name)
        assert hf_to_google_name("bert." + hf_name) == (google_name, transpose), google_name


def _row(variant, batch, eps, acc, model, runtime, peer=None, peer8=None):
    return {"variant": variant, "batch_size": batch, "examples_per_s": eps, "accuracy": acc, "model": model,
            "runtime": runtime, "speedup": {"peer": peer, "peer-int8": peer8}}


def test_peer_comparison_picks_the_fastest_deployment_of_each_kind():
    rows = [_row("peer-ort-dynamic:ort_optimized", 32, 100.0, 0.90, "bert", "ort_optimized", 1.0, 0.5),
            _row("power:saved_model", 32, 150.0, 0.89, "power", "saved_model", 1.5, 0.75),
            _row("power-dynamic:saved_model", 32, 180.0, 0.89, "power", "saved_model", 1.8, 0.9),
            _row("power:tflite", 32, 160.0, 0.89, "power", "tflite", 1.6, 0.8),
            _row("power:tflite_int8", 32, 400.0, 0.885, "power", "tflite_int8", 4.0, 2.0),
            _row("bert-padded:saved_model", 32, 60.0, 0.90, "bert", "saved_model", 0.6, 0.3),
            _row("power:saved_model", 1, 50.0, 0.89, "power", "saved_model")]  # no peer at batch 1
    got = {r["deployment"]: r for r in peer_comparison(rows)}
    assert {r["batch_size"] for r in got.values()} == {32}
    assert got["best PoWER-BERT"]["variant"] == "power:tflite_int8"
    assert got["best PoWER-BERT int8"]["x_vs_peer_int8"] == 2.0
    assert got["best PoWER-BERT float32"]["variant"] == "power-dynamic:saved_model"
    assert got["PoWER-BERT SavedModel"]["x_vs_peer"] == 1.8


def test_a_missing_package_is_a_named_skip(monkeypatch):
    def missing(name):
        raise peers.PeerUnavailable(f"{name} is not installed (test); pip install -r requirements-bench.txt")

    monkeypatch.setattr(peers, "_import", missing)
    with pytest.raises(peers.PeerUnavailable, match="torch is not installed"):
        peers.hf_classifier(tiny_classifier(retention=None))


# === Against the real packages (installed by `make install` from requirements-bench.txt) ===

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")


def _inputs():
    x = random_inputs(6, 16, seed=3)
    return {k: np.asarray(v, np.int32) for k, v in x.items()}


def test_hugging_face_model_gives_our_logits():
    # An independent implementation of BERT (PyTorch, Hugging Face) with the same weights.
    model = tiny_classifier(retention=None, seed=2)
    x = _inputs()
    np.testing.assert_allclose(peers.torch_runner(model, threads=1)(x), model(x).numpy(), atol=1e-5)


def test_ort_optimized_graph_fuses_attention_and_gives_our_logits(tmp_path):
    model = tiny_classifier(retention=None, seed=2)
    path = str(tmp_path / "bert.ort-optimized.onnx")
    fused = peers.export_ort_optimized(model, path)
    layers = model.encoder.bert_config.num_hidden_layers
    assert fused["Attention"] == layers and fused["SkipLayerNormalization"] == 2 * layers
    assert peers.read_fused_operators(path) == fused
    x = _inputs()
    np.testing.assert_allclose(peers.ort_runner(path, threads=1)(x), model(x).numpy(), atol=1e-5)
    # Dynamic length: a batch trimmed to its longest input gives the same answers.
    longest = int(x["attention_mask"].sum(axis=1).max())
    trimmed = {k: np.ascontiguousarray(v[:, :longest]) for k, v in x.items()}
    np.testing.assert_allclose(peers.ort_runner(path, threads=1)(trimmed), model(x).numpy(), atol=1e-5)
    int8 = str(tmp_path / "bert.ort-int8.onnx")
    peers.quantize_int8(path, int8)
    assert os.path.getsize(int8) < os.path.getsize(path)
    assert peers.read_fused_operators(int8) == fused


def test_optimizer_without_attention_fusion_is_not_the_peer(tmp_path, monkeypatch):
    from onnxruntime.transformers import optimizer

    real = optimizer.optimize_model

    def unfused(*args, **kwargs):
        model = real(*args, **kwargs)
        model.get_fused_operator_statistics = lambda: {"Attention": 0, "SkipLayerNormalization": 6}
        return model

    monkeypatch.setattr(optimizer, "optimize_model", unfused)
    with pytest.raises(peers.PeerUnavailable, match="no Attention in every layer"):
        peers.export_ort_optimized(tiny_classifier(retention=None), str(tmp_path / "x.onnx"))


@pytest.mark.slow
def test_bench_runs_the_peers_and_compares_against_them(tmp_path):
    run = _write_run(tmp_path / "run")
    report = run_benchmark(
        run, out=str(tmp_path / "out"), examples=(SENTENCES, LABELS), tokenizer=tiny_tokenizer(),
        batch_sizes=[1, 4], repeats=1, export_dir=str(tmp_path / "exports"), command="test", log=lambda _: None,
        variants="peer-ort-dynamic:ort_optimized,peer-ort-int8-dynamic:ort_int8,peer-hf-dynamic:torch_eager,"
                 "bert-dynamic:keras,power:saved_model,power:tflite_int8,bert-padded:tflite_int8,"
                 "power-dynamic:xla,power-dynamic:tflite")
    rows = {(r["variant"], r["batch_size"]): r for r in report["rows"]}
    # Same weights, so the float32 peers agree with our BERT on every sentence's class.
    for peer in ("peer-ort-dynamic:ort_optimized", "peer-hf-dynamic:torch_eager"):
        assert rows[(peer, 4)]["accuracy"] == rows[("bert-dynamic:keras", 4)]["accuracy"]
    assert report["references"]["peer"] == "peer-ort-dynamic:ort_optimized"
    # Padding to XLA's width buckets or to N changes no answer.
    for variant in ("power-dynamic:xla", "power-dynamic:tflite"):
        assert rows[(variant, 4)]["accuracy"] == rows[("power:saved_model", 4)]["accuracy"], variant
    assert report["fused_operators"]["bert.ort-optimized.onnx"]["Attention"] == 3
    deployments = {(r["batch_size"], r["deployment"]) for r in report["peer_comparison"]}
    assert (4, "best PoWER-BERT int8") in deployments and (1, "PoWER-BERT SavedModel") in deployments
    text = open(report["paths"]["md"]).read()
    assert "## Against the strongest alternatives" in text and "Attention 3" in text
    assert report["final_line"].startswith("bench sst2: PoWER-BERT (")
    saved = json.load(open(report["paths"]["json"]))["peer_comparison"]
    assert [r["variant"] for r in saved] == [r["variant"] for r in report["peer_comparison"]]
