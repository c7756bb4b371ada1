"""`powerbert bench`: statistics by hand, batching, variant choice, run-dir errors, and one small
end-to-end benchmark of a tiny random-weight run (report structure, accuracy, ratios). No timing
assertions: timings on a shared machine are noise; only their arithmetic is checked."""

import argparse
import json
import os
import re
import shutil

import numpy as np
import pytest

from benchmarks.cli import add_bench_parser, bench_main
from benchmarks.run import run_benchmark
from benchmarks.settings import BenchError
from benchmarks.stats import (accuracy, kept_function, layer_macs, like_for_like, matmul_work, own_baseline,
                              pass_summary, result_rows, rotated, token_layers, xla_payoff)
from benchmarks.variants import VARIANTS, code_fingerprint, make_batches, reference_ids, select_variants
from powerbert_tf import RetentionConfig
from training.run_dir import RunDir
from tests.serving_fixtures import TINY_N, TINY_RETENTION, tiny_classifier, tiny_tokenizer, tiny_vocab

SENTENCES = ["the movie was good", "awful plot , dull actors !", "this is not very fun but the story is great",
             "good", "bad bad bad", "the story was dull and the actors were awful , but it is fun",
             "great", "not good"]
LABELS = [1, 0, 1, 1, 0, 0, 1, 0]
REFS = {"1": "bert-padded:saved_model", "2": "bert-dynamic:saved_model", "4": "bert-padded:onnx"}


# === Statistics (pure) ===

def test_accuracy_against_hand_made_labels():
    logits = [[2.0, 1.0], [0.0, 3.0], [1.0, 1.5], [4.0, 0.0]]  # argmax 0, 1, 1, 0
    assert accuracy(logits, [0, 1, 0, 1]) == 0.5
    assert accuracy(logits, [0, 1, 1, 0]) == 1.0
    assert accuracy(np.array([1, 1, 0]), np.array([1, 0, 0])) == pytest.approx(2 / 3)  # class ids
    with pytest.raises(ValueError, match="3 predictions for 2 labels"):
        accuracy([[1, 0]] * 3, [0, 1])


def test_pass_summary_medians_and_percentiles():
    s = pass_summary([10.0, 12.0, 30.0], [np.arange(1, 51) / 1000, np.arange(51, 101) / 1000], n_examples=60)
    assert (s["median_s"], s["min_s"], s["max_s"], s["repeats"]) == (12.0, 10.0, 30.0, 3)
    assert s["examples_per_s"] == pytest.approx(5.0)  # 60 sentences / 12 s
    assert s["ms_per_example"] == pytest.approx(200.0)
    assert s["p50_ms"] == pytest.approx(50.5)  # latencies 1..100 ms pooled over repeats
    assert s["p99_ms"] == pytest.approx(99.01)


def _measurement(seconds, tokens, acc=None):
    return {"pass_seconds": seconds, "latencies": [[t / 4] * 4 for t in seconds], "token_layers": tokens,
            "accuracy": acc, "peak_rss_mb": [3.0, 5.0]}


def test_speedups_come_from_medians():
    fake = {("bert-padded:saved_model", 32): _measurement([10.0, 12.0, 30.0], 1200, 0.9),  # median 12
            ("bert-dynamic:saved_model", 32): _measurement([8.0, 6.0, 7.0], 600),  # median 7
            ("bert-padded:onnx", 32): _measurement([9.0, 9.0, 9.0], 1200),  # median 9
            ("power:saved_model", 32): _measurement([5.0, 4.0, 60.0], 480, 0.88),  # median 5
            ("power:saved_model", 1): _measurement([2.0], 480)}
    rows = result_rows(fake, n_examples=100, references=REFS)
    assert [(r["variant"], r["batch_size"]) for r in rows][0] == ("power:saved_model", 1)  # batch order
    power = next(r for r in rows if r["variant"] == "power:saved_model" and r["batch_size"] == 32)
    assert power["speedup"] == {"1": pytest.approx(12 / 5), "2": pytest.approx(7 / 5), "4": pytest.approx(9 / 5)}
    assert power["work_bound"] == pytest.approx(1200 / 480)
    assert power["bound_achieved"] == pytest.approx((12 / 5) / (1200 / 480))
    assert power["examples_per_s"] == pytest.approx(100 / 5)
    assert power["accuracy"] == 0.88 and power["peak_rss_mb"] == 5.0
    base = next(r for r in rows if r["variant"] == "bert-padded:saved_model")
    assert base["speedup"]["1"] == 1.0 and base["speedup"]["2"] == pytest.approx(7 / 12)
    # References that did not run at that batch size give None, not a crash.
    alone = next(r for r in rows if r["batch_size"] == 1)
    assert alone["speedup"] == {"1": None, "2": None, "4": None} and alone["work_bound"] is None


def test_token_layers_and_the_flop_bound():
    retention = RetentionConfig(tuple(TINY_RETENTION), TINY_N)  # (12, 8, 4) of 16
    shapes = [(4, 16), (2, 16)]
    bert = token_layers(shapes, kept_function("bert", 3))
    power = token_layers(shapes, kept_function("power", 3, retention))
    assert (bert, power) == (6 * 48, 6 * 24)
    assert bert / power == pytest.approx(retention.flop_ratio)  # L*N/sum(l_j) = 48/24
    # Length-aware at T=8 keeps ceil(12*8/16), ceil(8*8/16), ceil(4*8/16) = 6, 4, 2.
    assert token_layers([(3, 8)], kept_function("power-la", 3, retention)) == 3 * 12
    assert token_layers([(3, 8)], kept_function("bert", 3)) == 3 * 24


def test_like_for_like_compares_each_runtime_with_its_own_bert():
    assert own_baseline("power:tflite") == "bert-padded:tflite"
    assert own_baseline("power-dynamic:keras") == "bert-dynamic:keras"
    assert own_baseline("power-la-dynamic:saved_model") == "bert-dynamic:saved_model"
    assert own_baseline("bert-padded:onnx") is None
    # A runtime twice as fast as TF does not count: 0.5 s vs its own BERT's 1.5 s is 3x; with a
    # work bound of 48/16 = 3 that is all of the bound.
    lfl = like_for_like({"median_s": 0.5}, {"token_layers": 16}, {"median_s": 1.5}, {"token_layers": 48})
    assert lfl == {"speedup": pytest.approx(3.0), "work_bound": pytest.approx(3.0), "achieved": pytest.approx(1.0)}
    assert like_for_like({"median_s": 0.5}, {"token_layers": 16}, None, None)["speedup"] is None


def test_matmul_work_by_hand():
    # H=4, I=8, T=3, all kept: QKV 3*3*16 + scores/context 2*3*3*4 + output 3*16 + FFN 2*3*4*8.
    assert layer_macs(3, 3, 4, 8) == 144 + 72 + 48 + 192
    # Keeping 1 of 3 with the [CLS] shortcut: K, V 2*3*16, Q 16, scores/context 2*1*3*4,
    # output 16, FFN 2*4*8.
    assert layer_macs(3, 1, 4, 8, cls_only=True) == 96 + 16 + 24 + 16 + 64
    retention = RetentionConfig((2, 1), 3)
    power = kept_function("power", 2, retention)
    assert matmul_work([(5, 3)], power, 4, 8, cls_shortcut=True) == 5 * (
        layer_macs(3, 2, 4, 8) + layer_macs(2, 1, 4, 8, cls_only=True))
    assert matmul_work([(5, 3)], kept_function("bert", 2), 4, 8) == 5 * 2 * layer_macs(3, 3, 4, 8)


def test_xla_payoff_and_rotation():
    pay = xla_payoff(compile_seconds=2.0, eager_batch_ms=30.0, xla_batch_ms=20.0, batches_per_pass=28)
    assert pay == {"saved_ms_per_batch": 10.0, "breakeven_batches": 200, "breakeven_passes": pytest.approx(200 / 28)}
    assert xla_payoff(2.0, 20.0, 25.0, 28)["breakeven_batches"] is None  # never pays
    assert rotated("abcd", 1) == list("bcda") and rotated("abcd", 6) == list("cdab") and rotated([], 3) == []


# === Batches and variants ===

def test_dynamic_batches_are_sorted_and_trimmed():
    mask = np.array([[1] * n + [0] * (6 - n) for n in (5, 2, 6, 2, 3)], np.int32)
    features = {"input_ids": mask * 7, "attention_mask": mask, "token_type_ids": np.zeros_like(mask)}
    dynamic = make_batches(features, 2, dynamic=True)
    assert [list(i) for i in dynamic.indices] == [[1, 3], [4, 0], [2]]  # stable sort by length
    assert dynamic.shapes == [(2, 2), (2, 5), (1, 6)]
    np.testing.assert_array_equal(dynamic.inputs[1]["attention_mask"], mask[[4, 0], :5])
    fixed = make_batches(features, 2, dynamic=False)
    assert fixed.shapes == [(2, 6), (2, 6), (1, 6)] and fixed.distinct_shape_batches() == [0, 2]
    assert [list(i) for i in fixed.indices] == [[0, 1], [2, 3], [4]]
    # XLA's buckets: widths rounded up to a multiple, never beyond N.
    assert make_batches(features, 2, dynamic=True, length_multiple=4).shapes == [(2, 4), (2, 6), (1, 6)]


def test_select_variants():
    assert [v.id for v in select_variants("power")] == ["power:saved_model", "power:keras", "power:xla",
                                                         "power:onnx", "power:tflite", "power:tflite_int8"]
    assert [v.id for v in select_variants("6")] == ["power-dynamic:saved_model", "power-dynamic:keras",
                                                    "power-la-dynamic:saved_model", "power-la-dynamic:keras"]
    assert {v.id for v in select_variants("onnx,2")} == {"bert-padded:onnx", "power:onnx",
                                                        "bert-dynamic:saved_model", "bert-dynamic:keras"}
    assert not any(v.runtime in ("xla", "tflite") for v in select_variants(quick=True))
    assert "peer-ort-dynamic:ort_optimized" in [v.id for v in select_variants(quick=True)]
    assert len(select_variants()) == len(VARIANTS)
    with pytest.raises(ValueError, match="unknown variant 'bert-fast'"):
        select_variants("bert-fast")
    assert reference_ids(select_variants("bert-padded:keras,bert-dynamic")) == {
        "1": "bert-padded:keras", "2": "bert-dynamic:saved_model"}


# === Run directories ===

def _write_run(path, bert=True, power=True, retention=True):
    # The tiny vocabulary stands where a pretrained model would: `init` names it.
    vocab = os.path.join(f"{path}-pretrained", "vocab.txt")
    os.makedirs(os.path.dirname(vocab), exist_ok=True)
    with open(vocab, "w") as f:
        f.write("\n".join(tiny_vocab()) + "\n")
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump({"task": "sst2", "init": vocab, "max_length": TINY_N}, f)
    if bert:
        os.makedirs(os.path.join(path, "finetune"), exist_ok=True)
        tiny_classifier(retention=None, seed=0).save(os.path.join(path, "finetune", "model.keras"))
    if power:
        os.makedirs(os.path.join(path, "retrain"), exist_ok=True)
        tiny_classifier(retention=TINY_RETENTION, seed=1).save(os.path.join(path, "retrain", "model.keras"))
    if retention:
        RunDir(path).write_retention(RetentionConfig(tuple(TINY_RETENTION), TINY_N))
    return str(path)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    return _write_run(tmp_path_factory.mktemp("run"))


def test_bad_run_directories_give_clear_errors(tmp_path, tiny_run):
    examples = (SENTENCES, LABELS)
    with pytest.raises(BenchError, match="does not exist"):
        run_benchmark(str(tmp_path / "nope"), examples=examples)
    with pytest.raises(BenchError, match="not a run directory .no config.json"):
        run_benchmark(str(tmp_path), examples=examples)
    no_retrain = _write_run(tmp_path / "a", power=False, retention=False)
    with pytest.raises(BenchError, match=r"no retrain/model.keras \(the retrain step has not finished\)"):
        run_benchmark(no_retrain, examples=examples, out=str(tmp_path / "out"))
    # Only the models the chosen variants need are required.
    with pytest.raises(BenchError, match="no finetune/model.keras"):
        run_benchmark(_write_run(tmp_path / "b", bert=False), variants="bert-padded:keras", examples=examples)
    with pytest.raises(BenchError, match="no retention.json"):
        run_benchmark(_write_run(tmp_path / "c", retention=False), variants="power:keras", examples=examples)
    with pytest.raises(BenchError, match="batch sizes must be distinct positive"):
        run_benchmark(tiny_run, batch_sizes=[0, 4], examples=examples)
    assert not os.path.exists(tmp_path / "out")  # nothing written on errors


def test_cli_parser_and_error(tmp_path):
    parser = argparse.ArgumentParser(prog="powerbert")
    add_bench_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["bench", "--run", str(tmp_path), "--quick", "--batch-sizes", "1,32",
                              "--variants", "power,bert-padded", "--threads", "1"])
    assert (args.run, args.quick, args.batch_sizes, args.threads, args.out) == (str(tmp_path), True, "1,32", 1, "results")
    with pytest.raises(BenchError, match="not a run directory"):
        bench_main(args)
    args.batch_sizes = "1,x"
    with pytest.raises(BenchError, match="--batch-sizes must be comma-separated integers"):
        bench_main(args)


# === End to end on a tiny run ===

VARIANTS_E2E = ("bert-padded:saved_model,bert-dynamic:keras,power:saved_model,power:keras,power:xla,"
                "power-dynamic:saved_model,power-la-dynamic:saved_model,bert-padded:onnx,power:onnx")
E2E_REFS = {"1": "bert-padded:saved_model", "2": "bert-dynamic:keras", "4": "bert-padded:onnx"}


@pytest.fixture(scope="module")
def report(tiny_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    lines = []
    result = run_benchmark(tiny_run, out=str(out), examples=(SENTENCES, LABELS), tokenizer=tiny_tokenizer(),
                           batch_sizes=[1, 4], repeats=2, variants=VARIANTS_E2E,
                           export_dir=str(tmp_path_factory.mktemp("exports")), command="test", log=lines.append)
    result["log"] = lines
    return result


def test_report_structure(report):
    ids = [v.strip() for v in VARIANTS_E2E.split(",")]
    assert {(r["variant"], r["batch_size"]) for r in report["rows"]} == {(v, b) for v in ids for b in (1, 4)}
    for row in report["rows"]:
        assert row["repeats"] == 2 and row["min_s"] <= row["median_s"] <= row["max_s"]
        assert row["p50_ms"] <= row["p99_ms"] and row["peak_rss_mb"] >= 0
        assert row["examples_per_s"] == pytest.approx(len(SENTENCES) / row["median_s"])
    assert report["references"] == E2E_REFS and report["n_examples"] == len(SENTENCES)
    assert report["retention"] == TINY_RETENTION and report["flop_bound"] == pytest.approx(2.0)
    assert {x["model"] for x in report["xla"]} == {"power"} and len(report["length_aware"]) == 4
    assert report["machine"]["logical_cpus"] >= 1 and report["machine"]["versions"]["tensorflow"]
    assert sum("round" in line for line in report["log"]) == 4  # one progress line per round
    assert re.fullmatch(r"bench sst2: PoWER-BERT \d+\.\d\dx faster than padded baseline \(batch 4\)",
                        report["final_line"])
    paths = report["paths"]
    assert all(os.path.getsize(p) > 0 for p in paths.values())
    saved = json.load(open(paths["json"]))
    assert saved["final_line"] == report["final_line"] and len(saved["rows"]) == len(report["rows"])
    text = open(paths["md"]).read()
    assert "## Batch size 4" in text and "`power:onnx`" in text and "Command: `test`" in text


def test_ratios_and_bounds_are_those_of_the_medians(report):
    rows = {(r["variant"], r["batch_size"]): r for r in report["rows"]}
    for (variant, batch), row in rows.items():
        for label, ref in E2E_REFS.items():
            assert row["speedup"][label] == pytest.approx(rows[(ref, batch)]["median_s"] / row["median_s"])
    power = rows[("power:saved_model", 4)]
    assert power["work_bound"] == pytest.approx(2.0)  # fixed N: exactly L*N/sum(l_j)
    assert power["bound_achieved"] == pytest.approx(power["speedup"]["1"] / 2.0)
    assert rows[("bert-dynamic:keras", 4)]["work_bound"] > 1  # shorter batches, less work
    # Retention (12, 8, 4) of 16 keeps more than one vector everywhere: no [CLS] shortcut, and
    # the attention of layer j runs on l_{j-1} vectors, so the MAC bound is below L*N/sum(l_j).
    assert 1 < power["matmul_bound"] < power["work_bound"]
    assert power["matmul_achieved"] == pytest.approx(power["speedup"]["1"] / power["matmul_bound"])
    # Like for like: each PoWER-BERT runtime against BERT in the same runtime.
    onnx = rows[("power:onnx", 4)]
    assert onnx["like_for_like"]["baseline"] == "bert-padded:onnx"
    assert onnx["like_for_like"]["speedup"] == pytest.approx(
        rows[("bert-padded:onnx", 4)]["median_s"] / onnx["median_s"])
    assert onnx["like_for_like"]["achieved"] == pytest.approx(onnx["like_for_like"]["speedup"] / 2.0)


def test_accuracy_matches_the_models_own_predictions(report, tiny_run):
    import keras

    inputs = tiny_tokenizer()(SENTENCES, max_length=TINY_N)
    for name, step in (("bert-padded", "finetune"), ("power", "retrain")):
        model = keras.saving.load_model(os.path.join(tiny_run, step, "model.keras"))
        want = accuracy(model(inputs).numpy(), LABELS)
        runtimes = ("saved_model", "onnx") + (("keras", "xla") if name == "power" else ())
        # PoWER-BERT on length-sorted, trimmed batches keeps the same real tokens as at N.
        variants = [f"{name}:{r}" for r in runtimes] + (["power-dynamic:saved_model"] if name == "power" else [])
        for variant in variants:
            for batch in (1, 4):
                got = next(r["accuracy"] for r in report["rows"]
                           if r["variant"] == variant and r["batch_size"] == batch)
                assert got == want, (variant, batch)


def test_exports_are_cached(tiny_run, report, tmp_path):
    again = run_benchmark(tiny_run, out=str(tmp_path), examples=(SENTENCES, LABELS), tokenizer=tiny_tokenizer(),
                          batch_sizes=[4], repeats=1, variants="power:saved_model,power:onnx",
                          export_dir=report["setup"]["export_dir"], log=lambda line: None)
    assert again["setup"]["export_s"] == {}  # nothing re-made
    assert again["setup"]["export_reused"] == ["power", "power.onnx"]
    assert again["final_line"].startswith("bench sst2: no PoWER-BERT vs padded-baseline comparison")


def test_exports_made_by_other_code_are_made_again(tiny_run, report, tmp_path):
    export_dir = str(tmp_path / "exports")
    shutil.copytree(report["setup"]["export_dir"], export_dir)
    marker = os.path.join(export_dir, "fingerprint.json")
    with open(marker) as f:
        fingerprint = json.load(f)
    assert fingerprint["code"] == code_fingerprint()
    with open(marker, "w") as f:
        json.dump(dict(fingerprint, code="an older powerbert_tf"), f)
    again = run_benchmark(tiny_run, out=str(tmp_path), examples=(SENTENCES, LABELS), tokenizer=tiny_tokenizer(),
                          batch_sizes=[4], repeats=1, variants="power:saved_model",
                          export_dir=export_dir, log=lambda line: None)
    assert list(again["setup"]["export_s"]) == ["power"] and again["setup"]["export_reused"] == []


def test_cli_exits_0_and_ends_with_the_speedup_line(tiny_run, tmp_path, capsys):
    from powerbert_cli.main import main

    dev = tmp_path / "data" / "glue" / "SST-2" / "dev.tsv"
    dev.parent.mkdir(parents=True)
    dev.write_text("sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in zip(SENTENCES, LABELS)))
    code = main(["bench", "--run", tiny_run, "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "out"),
                 "--batch-sizes", "4", "--repeats", "1", "--variants", "bert-padded:saved_model,power:saved_model",
                 "--export-dir", str(tmp_path / "exports")])
    assert code == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert re.fullmatch(r"bench sst2: PoWER-BERT \d+\.\d\dx faster than padded baseline \(batch 4\)", last)


def test_sentence_pairs(tmp_path):
    from training.data import Examples

    run = _write_run(tmp_path / "mrpc")
    config = json.load(open(os.path.join(run, "config.json")))
    json.dump(dict(config, task="mrpc"), open(os.path.join(run, "config.json"), "w"))
    pairs = Examples(text=SENTENCES[:4], text_b=SENTENCES[4:], labels=np.array(LABELS[:4]),
                     lines=np.arange(4), path="pairs")
    result = run_benchmark(run, out=str(tmp_path / "out"), examples=pairs, batch_sizes=[4], repeats=1,
                           variants="bert-dynamic:keras,power-la-dynamic:keras", log=lambda line: None)
    import keras

    model = keras.saving.load_model(os.path.join(run, "finetune", "model.keras"))
    inputs = tiny_tokenizer()(SENTENCES[:4], SENTENCES[4:], max_length=TINY_N)
    assert inputs["token_type_ids"].numpy().max() == 1  # really pairs
    dynamic = next(r for r in result["rows"] if r["variant"] == "bert-dynamic:keras")
    assert dynamic["accuracy"] == accuracy(model(inputs).numpy(), LABELS[:4])
    assert result["task"] == "mrpc" and result["paths"]["md"].endswith("benchmark-mrpc.md")


def test_plot_shows_the_tasks_metric_where_a_regression_task_has_no_accuracy(tmp_path):
    # STS-B's report plot was empty: it drew `accuracy`, which a regression task does not have.
    from benchmarks.report import plot_accuracy_vs_time, plot_points

    row = lambda variant, batch, ms, metric: {"variant": variant, "runtime": variant.split(":")[1],
                                              "batch_size": batch, "ms_per_example": ms, "accuracy": None,
                                              "metric": metric}
    report = {"task": "stsb", "metric": "spearman", "split": "dev", "n_examples": 4, "batch_sizes": [8, 32],
              "threads": {"requested": 2},
              "rows": [row("bert-padded:saved_model", 32, 16.8, 0.8537), row("power:saved_model", 32, 7.6, 0.85),
                       row("power:saved_model", 8, 9.0, 0.85), row("power:keras", 32, 8.0, None)]}
    assert plot_points(report) == [("bert-padded:saved_model", "saved_model", 16.8, pytest.approx(85.37)),
                                   ("power:saved_model", "saved_model", 7.6, pytest.approx(85.0))]
    assert os.path.getsize(plot_accuracy_vs_time(report, str(tmp_path / "plot.png"))) > 0
