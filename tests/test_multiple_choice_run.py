"""The three PoWER-BERT steps on a tiny multiple-choice task in RACE's file format: the model learns
to pick the option, the search removes word vectors of every option sequence, and the re-trained
model with fewer word vectors still picks it."""

import json

import keras
import numpy as np
import pytest

from powerbert_tf import PowerBertMultipleChoice
from tests.test_pipeline import make_config
from tests.test_search import NO_DROPOUT
from tests.tiny_run import WORDS, write_tiny_init
from training import tasks
from training.data import read_split, task_for_data
from training.pipeline import Pipeline
from training.run_dir import RunDir

N = 24
MIN_ACCURACY = 0.9  # chance is 0.25


def write_tiny_race(root, seed=0):
    """RACE-format folders (train_subset, dev, test): each question's right option holds "good",
    the other three do not. Articles are random words, longer than N, so they are cut."""
    rng = np.random.default_rng(seed)
    fillers = WORDS[2:]
    for split, articles in (("train_subset", 16), ("dev", 8), ("test", 2)):
        for a in range(articles):
            questions, options, answers = [], [], []
            for _ in range(3):
                choices = [" ".join(rng.choice(fillers, size=rng.integers(1, 3))) for _ in range(4)]
                right = int(rng.integers(0, 4))
                choices[right] = "good " + choices[right]
                questions.append(" ".join(rng.choice(fillers, size=3)) + " ?")
                options.append(choices)
                answers.append("ABCD"[right])
            article = " ".join(rng.choice(fillers, size=int(rng.integers(20, 40))))
            path = root / "race/RACE" / split / ("high" if a % 2 else "middle") / f"{a}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"answers": answers, "options": options, "questions": questions,
                                        "article": article, "id": f"{a}.txt"}))
    return root


@pytest.fixture(scope="module")
def race_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("race")
    keras.utils.set_random_seed(0)
    init = write_tiny_init(str(root / "init"), NO_DROPOUT)
    data_dir = write_tiny_race(root / "data")
    task = task_for_data("race", data_dir)
    config = make_config((init, task), max_length=N, batch_size=8, epochs=4, search_epochs=4,
                         checkpoint_every=24, lambda_=3e-5)
    keras.utils.set_random_seed(0)
    summary = Pipeline(config, str(root / "run"), data_dir=data_dir, verbose=0).run()
    return summary, root / "run", data_dir


def test_the_tiny_race_task_reads_as_multiple_choice(tmp_path):
    data_dir = write_tiny_race(tmp_path)
    train = read_split("race", "train", data_dir)
    assert len(train) == 48 and all(len(o) == 4 for o in train.options)
    assert all(o[y].startswith("good") for o, y in zip(train.options, train.labels))


def test_multiple_choice_run_learns_prunes_and_records_its_task(race_run):
    summary, out, _ = race_run
    assert summary["baseline"]["accuracy"] >= MIN_ACCURACY, summary["baseline"]
    assert summary["power_bert"]["accuracy"] >= MIN_ACCURACY, summary["power_bert"]
    retention = RunDir(out).read_retention()
    assert max(retention.lengths) < N, retention
    final = keras.saving.load_model(out / "retrain" / "model.keras")
    assert isinstance(final, PowerBertMultipleChoice) and final.encoder.elimination == "hard"
    recorded = RunDir(out).read_task()
    assert recorded.is_multiple_choice and recorded.files[0] == ("train", "train_subset")
    assert recorded == task_for_data("race", race_run[2]) != tasks.get_task("race")


def test_race_export_answers_a_raw_text_request(race_run, tmp_path):
    from powerbert_cli.export_run import export_run
    from powerbert_tf import load_tokenizer
    from serving.client import ErrorResponse, PredictClient
    from serving.rest_server import ServerThread, ServingOptions, build_app

    summary, out, data_dir = race_run
    export_run(str(out), str(tmp_path / "race"))
    dev = read_split("race", "dev", data_dir)
    rows = [{"article": a, "question": q, "options": list(o)}
            for a, q, o in zip(dev.text[:5], dev.text_b[:5], dev.options[:5])]
    with ServerThread(build_app({"race": str(tmp_path / "race")}, ServingOptions())) as url:
        host, port = url.rsplit("/", 1)[-1].split(":")
        client = PredictClient(host, int(port), "race")
        answer = client.predict(instances=rows, signature_name="classify_text")["predictions"]
        with pytest.raises(ErrorResponse, match=r"Input 'options' has shape \[5, 3\] but the signature expects \[-1, 4\]"):
            client.predict(inputs={"article": dev.text[:5], "question": dev.text_b[:5],
                                   "options": [list(o[:3]) for o in dev.options[:5]]}, signature_name="classify_text")
    assert [a["label_name"] for a in answer] == ["ABCD"[y] for y in dev.labels[:5]]
    # The same scores as the re-trained Keras model on the pipeline's features.
    model = keras.saving.load_model(out / "retrain" / "model.keras")
    tokenizer = load_tokenizer(RunDir(out).read_config().init)
    features = tokenizer.multiple_choice(dev.text[:5], dev.text_b[:5], np.array(dev.options[:5], object), max_length=N)
    np.testing.assert_allclose([a["logits"] for a in answer], model(features).numpy(), atol=1e-5)


def test_race_benchmark_times_the_option_sequences_and_scores_questions(race_run, tmp_path):
    from benchmarks.run import run_benchmark

    summary, out, data_dir = race_run
    report = run_benchmark(str(out), out=str(tmp_path / "bench"), data_dir=data_dir, batch_sizes=[8], repeats=1,
                           variants="bert-padded:keras,power:keras,power-dynamic:keras", log=lambda line: None)
    dev = read_split("race", "dev", data_dir)
    assert report["multiple_choice"] and report["n_examples"] == 4 * len(dev)
    rows = {row["variant"]: row for row in report["rows"]}
    # The metric comes from the timed pass over the option sequences, regrouped into questions: it
    # is the accuracy each step recorded on the same dev set.
    assert rows["power:keras"]["metric"] == pytest.approx(summary["power_bert"]["accuracy"])
    assert rows["bert-padded:keras"]["metric"] == pytest.approx(summary["baseline"]["accuracy"])
    assert rows["power-dynamic:keras"]["metric"] == pytest.approx(summary["power_bert"]["accuracy"])


def test_baselines_refuse_a_multiple_choice_teacher(race_run, tmp_path):
    from training.baselines.baseline_dir import BaselineDirError
    from training.baselines.head_prune_run import run_head_prune
    from training.baselines.students import StudentSettings, train_student

    out = str(race_run[1])
    with pytest.raises(BaselineDirError, match=r"race run: the baselines .* not multiple choice"):
        train_student(out, StudentSettings("distilbert", 2), str(tmp_path / "student"))
    with pytest.raises(BaselineDirError, match=r"not multiple choice"):
        run_head_prune(out, str(tmp_path / "pruned"))


def test_batch_predict_refuses_a_multiple_choice_export(race_run, tmp_path):
    from powerbert_cli.export_run import export_run
    from serving.batch_predict import PredictError, add_predict_parser, check_job

    export_run(str(race_run[1]), str(tmp_path / "race"))
    (tmp_path / "in.txt").write_text("a sentence\n")
    import argparse
    parser = argparse.ArgumentParser().add_subparsers()
    add_predict_parser(parser)
    args = parser.choices["predict"].parse_args(
        ["--model", str(tmp_path / "race"), "--input", str(tmp_path / "in.txt"), "--output", str(tmp_path / "out.jsonl")])
    with pytest.raises(PredictError, match=r"is a multiple-choice model \(race\); .* classify_text"):
        check_job(args)
