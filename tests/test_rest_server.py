"""REST server: TF Serving's formats, concurrency, batching, version pick-up, CLI and load test.

Servers run in-process (uvicorn on a thread, `ServerThread`) on 127.0.0.1 and a free port; answers
are compared with direct in-process inference of the same SavedModel.
"""

import json
import os
import shutil
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_text  # noqa: F401  (ops of the classify_text signature)

from serving.batching import BatchingParameters, BatchScheduler
from serving.client import ErrorResponse, PredictClient
from serving.config_protos import read_batching_parameters
from serving.errors import UNAVAILABLE
from serving.errors import ServingError
from serving.rest_server import ServerThread, ServingOptions, add_serve_parser, build_app, \
    options_from_args
from tests.conftest import random_inputs
from tests.serving_fixtures import TINY_N, WORDS, export_tiny

TEXTS = ["the movie was good", "awful plot , dull actors !", "this is not very fun but the story is great",
         "a", "", "great great great fun"]


# === Shared fixtures (also used by test_rest_hostile.py) ===

class _Toy(tf.Module):
    """TF Serving's `half_plus_three` example plus a signature of several dtypes and outputs."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
    def half_plus_three(self, x):
        return {"y": x * 0.5 + 3.0}

    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32), tf.TensorSpec([None], tf.string),
                                  tf.TensorSpec([None], tf.bool), tf.TensorSpec([None], tf.int64)])
    def mixed(self, a, s, flag, n):
        return {"total": tf.reduce_sum(a, -1), "echo_bytes": s, "length": tf.strings.length(s),
                "flag": tf.logical_not(flag), "n": n + 1}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
    def busy(self, seconds):
        """Keeps one core busy for max(seconds): a slow model for deadline and liveness tests."""
        start = tf.timestamp()
        limit = tf.cast(tf.reduce_max(seconds), tf.float64)
        loops = tf.while_loop(lambda i: tf.timestamp() - start < limit, lambda i: [i + 1], [tf.constant(0)])
        with tf.control_dependencies(loops):
            return {"waited": tf.fill(tf.shape(seconds), tf.timestamp() - start)}


def shared_models(tmp_path_factory):
    """`<tmp>/rest-models/{tiny,toy}/1`: exported once per session, shared by both test files."""
    root = tmp_path_factory.getbasetemp() / "rest-models"
    if not (root / "toy" / "1").is_dir():
        export_tiny(root / "tiny", version=1)
        toy = _Toy()
        tf.saved_model.save(toy, str(root / "toy" / "1"),
                            signatures={"serving_default": toy.half_plus_three, "mixed": toy.mixed,
                                        "busy": toy.busy})
    return root


class Direct:
    """In-process inference of a SavedModel, answers shaped like the REST API's (independently)."""

    def __init__(self, path):
        self.loaded = tf.saved_model.load(str(path))

    def outputs(self, signature, inputs):
        feeds = {k: tf.constant(v) for k, v in inputs.items()}
        return {k: v.numpy() for k, v in self.loaded.signatures[signature](**feeds).items()}

    def answer(self, signature, inputs, fmt):
        out = {k: v.tolist() for k, v in self.outputs(signature, inputs).items()}
        out = {k: [x.decode() if isinstance(x, bytes) else x for x in v] if v and isinstance(v[0], bytes) else v
               for k, v in out.items()}
        if fmt == "columnar":
            return {"outputs": out}
        rows = len(next(iter(out.values())))
        return {"predictions": [{k: v[i] for k, v in out.items()} for i in range(rows)]}


def assert_same_answer(got, want, atol=1e-6):
    """Equal structure; floats within atol, everything else exactly equal."""
    assert type(got) is type(want) or (isinstance(got, (int, float)) and isinstance(want, (int, float))), \
        (got, want)
    if isinstance(want, dict):
        assert sorted(got) == sorted(want)
        for key in want:
            assert_same_answer(got[key], want[key], atol)
    elif isinstance(want, list):
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert_same_answer(g, w, atol)
    elif isinstance(want, float):
        assert abs(got - want) <= atol, (got, want)
    else:
        assert got == want


def request_pool(seed=0, size=24):
    """(predict kwargs, signature, numpy inputs, format) of varied valid requests for `tiny`."""
    rng = np.random.default_rng(seed)
    pool = []
    for i in range(size):
        rows, fmt = int(rng.integers(1, 5)), ("row", "columnar")[i % 2]
        if i % 4 < 2:
            inputs = random_inputs(rows, TINY_N, seed=seed * 1000 + i)
            inputs["input_ids"][:, 0] = 2  # [CLS]
            if fmt == "row":
                kwargs = {"instances": [{k: v[r].tolist() for k, v in inputs.items()} for r in range(rows)]}
            else:
                kwargs = {"inputs": {k: v.tolist() for k, v in inputs.items()}}
            pool.append((kwargs, "serving_default", inputs, fmt))
        else:
            texts = [" ".join(rng.choice(WORDS, size=int(rng.integers(0, 20)))) for _ in range(rows)]
            arg = texts if i % 8 < 4 else [{"text": t} for t in texts]
            kwargs = ({"instances": arg} if fmt == "row" else {"inputs": {"text": texts}})
            kwargs["signature_name"] = "classify_text"
            pool.append((kwargs, "classify_text", {"text": np.array(texts, dtype=object)}, fmt))
    return pool


def wait_for(condition, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return shared_models(tmp_path_factory)


@pytest.fixture(scope="module")
def direct(models):
    return Direct(models / "tiny" / "1")


@pytest.fixture(scope="module")
def server(models):
    app = build_app({"tiny": str(models / "tiny"), "toy": str(models / "toy")},
                    ServingOptions(poll_seconds=0.5, num_request_threads=4))
    with ServerThread(app) as url:
        yield app.state.server, url


def client_for(url, model):
    host, port = url.rsplit("/", 1)[-1].split(":")
    return PredictClient(host, int(port), model)


# === TF Serving's documented formats ===
# Shapes from TF Serving's REST API doc (tensorflow_serving/g3doc/api_rest.md, "Predict API" and
# "Example"): row requests answer {"predictions": ...}: the bare values when the model has one
# output (half_plus_three: {"instances": [1.0, 2.0, 5.0]} -> {"predictions": [3.5, 4.0, 5.5]}),
# else a list of one object per instance; columnar requests answer {"outputs": ...}: bare for one
# output, else an object of output name -> list. Status: {"model_version_status": [{"version":
# "123", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}. Unknown
# model: 404 {"error": "Servable not found for request: Latest(half)"}. Bytes: {"b64": ...}.

def test_documented_examples(server):
    _, url = server
    toy = client_for(url, "toy")
    assert toy.predict(instances=[1.0, 2.0, 5.0]) == {"predictions": [3.5, 4.0, 5.5]}
    assert toy.predict(inputs=[1.0, 2.0, 5.0]) == {"outputs": [3.5, 4.0, 5.5]}
    assert toy.predict(instances=[{"x": 1.0}, {"x": 5}]) == {"predictions": [3.5, 5.5]}  # ints accepted
    assert toy.status() == {"model_version_status": [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}
    assert toy.status(version=1) == toy.status()
    with pytest.raises(ErrorResponse) as e:
        client_for(url, "half").predict(instances=[1.0, 5.0])
    assert (e.value.status, e.value.message) == (404, "Servable not found for request: Latest(half)")


def test_multi_output_row_and_columnar_shapes(server):
    _, url = server
    toy = client_for(url, "toy")
    rows = [{"a": [1.0, 2.0], "s": "héllo", "flag": True, "n": 41},
            {"a": [0.5, 0.25], "s": {"b64": "AP8="}, "flag": False, "n": -1}]
    got = toy.predict(instances=rows, signature_name="mixed")
    assert got == {"predictions": [
        {"total": 3.0, "echo_bytes": {"b64": "aMOpbGxv"}, "length": 6, "flag": False, "n": 42},
        {"total": 0.75, "echo_bytes": {"b64": "AP8="}, "length": 2, "flag": True, "n": 0}]}
    columns = {"a": [[1.0, 2.0], [0.5, 0.25]], "s": ["héllo", {"b64": "AP8="}], "flag": [True, False], "n": [41, -1]}
    got = toy.predict(inputs=columns, signature_name="mixed")
    assert got == {"outputs": {"total": [3.0, 0.75], "echo_bytes": [{"b64": "aMOpbGxv"}, {"b64": "AP8="}],
                               "length": [6, 2], "flag": [False, True], "n": [42, 0]}}


def test_tiny_model_formats_equal_direct_inference(server, direct):
    _, url = server
    tiny = client_for(url, "tiny")
    inputs = random_inputs(3, TINY_N, seed=7)
    rows = [{k: v[i].tolist() for k, v in inputs.items()} for i in range(3)]
    assert_same_answer(tiny.predict(instances=rows), direct.answer("serving_default", inputs, "row"))
    assert_same_answer(tiny.predict(inputs={k: v.tolist() for k, v in inputs.items()}),
                       direct.answer("serving_default", inputs, "columnar"))
    texts = {"text": np.array(TEXTS, dtype=object)}
    got = tiny.predict(instances=TEXTS, signature_name="classify_text")
    assert_same_answer(got, direct.answer("classify_text", texts, "row"))
    assert {row["label_name"] for row in got["predictions"]} <= {"class_0", "class_1"}
    got = tiny.predict(inputs={"text": TEXTS}, signature_name="classify_text", version=1)
    assert_same_answer(got, direct.answer("classify_text", texts, "columnar"))


def test_metadata_is_tf_servings_shape(server):
    _, url = server
    meta = client_for(url, "tiny").metadata()
    assert meta["model_spec"] == {"name": "tiny", "signature_name": "", "version": "1"}
    defs = meta["metadata"]["signature_def"]["signature_def"]
    ids = defs["serving_default"]["inputs"]["input_ids"]
    assert ids["dtype"] == "DT_INT32"
    assert ids["tensor_shape"] == {"dim": [{"size": "-1", "name": ""}, {"size": str(TINY_N), "name": ""}],
                                   "unknown_rank": False}
    assert defs["serving_default"]["method_name"] == "tensorflow/serving/predict"
    assert sorted(defs["serving_default"]["outputs"]) == ["label", "logits", "probabilities"]
    assert defs["classify_text"]["inputs"]["text"]["dtype"] == "DT_STRING"
    assert defs["classify_text"]["outputs"]["label_name"]["dtype"] == "DT_STRING"


# === Concurrency ===

def test_50_concurrent_clients_match_direct_inference(server, direct):
    _, url = server
    pool = request_pool()
    expected = [direct.answer(sig, inputs, fmt) for _, sig, inputs, fmt in pool]
    failures, answered = [], []

    def run(i):
        client = client_for(url, "tiny")
        for j in range(20):
            k = (i * 7 + j) % len(pool)
            try:
                assert_same_answer(client.predict(**pool[k][0]), expected[k])
                answered.append(k)
            except Exception as e:  # collected, reported below
                failures.append(f"client {i} request {j}: {e!r}"[:300])
        client.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not failures, failures[:5]
    assert len(answered) == 1000


def test_event_loop_answers_during_slow_inference(server):
    _, url = server
    toy, slow = client_for(url, "toy"), {}
    thread = threading.Thread(target=lambda: slow.update(toy.predict(inputs=[2.0], signature_name="busy")))
    thread.start()
    time.sleep(0.5)
    start = time.monotonic()
    assert toy.status()["model_version_status"][0]["state"] == "AVAILABLE"
    assert toy.predict(instances=[1.0]) == {"predictions": [3.5]}
    assert time.monotonic() - start < 1.0 and thread.is_alive()
    thread.join(timeout=30)
    assert slow["outputs"][0] >= 2.0


# === Batching ===

@pytest.fixture(scope="module")
def batching_server(models):
    params = BatchingParameters(max_batch_size=64, batch_timeout_micros=30000, max_enqueued_batches=100,
                                num_batch_threads=1)
    app = build_app({"tiny": str(models / "tiny")},
                    ServingOptions(poll_seconds=0, enable_batching=True, batching=params))
    with ServerThread(app) as url:
        yield app.state.server, url


def _concurrently(calls):
    """Runs the callables at once (barrier start); returns their results or exceptions, in order."""
    results, barrier = [None] * len(calls), threading.Barrier(len(calls))

    def run(i):
        barrier.wait()
        try:
            results[i] = calls[i]()
        except Exception as e:
            results[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


def test_batching_merges_concurrent_requests(batching_server, direct):
    state, url = batching_server
    pool = request_pool(seed=1, size=32)
    before = state.stats()["models"]["tiny"]["tf_calls"]
    clients = [client_for(url, "tiny") for _ in pool]
    results = _concurrently([lambda c=c, p=p: c.predict(**p[0]) for c, p in zip(clients, pool)])
    calls = state.stats()["models"]["tiny"]["tf_calls"] - before
    for result, (_, sig, inputs, fmt) in zip(results, pool):
        assert not isinstance(result, Exception), result
        assert_same_answer(result, direct.answer(sig, inputs, fmt), atol=1e-5)
    assert calls < len(pool), f"{calls} TensorFlow calls for {len(pool)} requests: nothing merged"
    assert state.stats()["batching"]["batches"] < state.stats()["batching"]["tasks"]


def test_batching_isolates_a_bad_request(batching_server, direct):
    _, url = batching_server
    good = random_inputs(2, TINY_N, seed=3)
    bad = {k: v.copy() for k, v in good.items()}
    bad["token_type_ids"][0, 1] = 7  # passes validation (no type vocab size in the assets), fails in TF
    calls = [lambda i=i: client_for(url, "tiny").predict(inputs={k: v.tolist() for k, v in (bad if i % 4 == 0 else good).items()})
             for i in range(12)]
    results = _concurrently(calls)
    for i, result in enumerate(results):
        if i % 4 == 0:
            assert isinstance(result, ErrorResponse) and result.status == 400, result
            assert "not in [0, 2)" in result.message
        else:
            assert_same_answer(result, direct.answer("serving_default", good, "columnar"), atol=1e-5)


def test_batching_limits():
    with pytest.raises(ServingError, match="Task size 5 is larger than maximum input batch size 4"):
        BatchScheduler(BatchingParameters(max_batch_size=4, num_batch_threads=1)).submit(
            "k", lambda a: a, {"x": np.zeros(5)}, 5)
    release = threading.Event()
    scheduler = BatchScheduler(BatchingParameters(max_batch_size=1, max_enqueued_batches=1, num_batch_threads=1))

    def run(arrays):
        release.wait(10)
        return arrays

    first = scheduler.submit("k", run, {"x": np.zeros(1)}, 1)
    wait_for(lambda: first.running(), 10, "the first batch to start")
    second = scheduler.submit("k", run, {"x": np.ones(1)}, 1)  # waits in the queue
    with pytest.raises(ServingError) as e:
        scheduler.submit("k", run, {"x": np.ones(1)}, 1)
    assert e.value.status == UNAVAILABLE and "queue" in e.value.message
    release.set()
    assert second.result(10)["x"].tolist() == [1.0]
    scheduler.stop()


# === Versions ===

def _version_state(client, version):
    try:
        rows = client.status()["model_version_status"]
    except ErrorResponse:
        return None
    return next(((r["state"], r["status"]["error_code"]) for r in rows if r["version"] == str(version)), None)


def test_new_version_is_picked_up_and_broken_ones_are_not(tmp_path, models, direct):
    base = tmp_path / "tiny"
    shutil.copytree(models / "tiny" / "1", base / "1")
    app = build_app({"tiny": str(base)}, ServingOptions(poll_seconds=0.2))
    inputs = random_inputs(2, TINY_N, seed=11)
    request = {"inputs": {k: v.tolist() for k, v in inputs.items()}}
    with ServerThread(app) as url:
        client = client_for(url, "tiny")
        assert_same_answer(client.predict(**request), direct.answer("serving_default", inputs, "columnar"))
        (base / "not-a-version").mkdir()

        _, _, v2_path = export_tiny(base, seed=1)  # version 2, written while serving
        assert v2_path.endswith("2")
        v2 = Direct(v2_path)
        wait_for(lambda: _version_state(client, 2) == ("AVAILABLE", "OK"), 30, "version 2")
        assert_same_answer(client.predict(**request), v2.answer("serving_default", inputs, "columnar"))
        assert _version_state(client, 1) == ("END", "OK")
        with pytest.raises(ErrorResponse) as e:
            client.predict(version=1, **request)
        assert e.value.status == 404

        (base / "3").mkdir()  # corrupt: garbage saved_model.pb
        (base / "3" / "saved_model.pb").write_bytes(b"\x00garbage\xff" * 100)
        state = wait_for(lambda: _version_state(client, 3) if (_version_state(client, 3) or ("",))[0] == "END"
                         else None, 30, "version 3 to fail")
        assert state[1] != "OK"
        error = next(r for r in client.status()["model_version_status"] if r["version"] == "3")["status"]
        assert error["error_message"]
        assert_same_answer(client.predict(**request), v2.answer("serving_default", inputs, "columnar"))
        assert client.metadata()["model_spec"]["version"] == "2"

        # Half-written version 4: variables and assets but no saved_model.pb yet; then completed.
        (base / "4").mkdir()
        shutil.copytree(os.path.join(v2_path, "variables"), base / "4" / "variables")
        shutil.copytree(os.path.join(v2_path, "assets"), base / "4" / "assets")
        wait_for(lambda: (_version_state(client, 4) or ("",))[0] == "END", 30, "version 4 to fail")
        assert _version_state(client, 2) == ("AVAILABLE", "OK")
        assert_same_answer(client.predict(**request), v2.answer("serving_default", inputs, "columnar"))
        shutil.copy(os.path.join(v2_path, "saved_model.pb"), base / "4" / "saved_model.pb")
        wait_for(lambda: _version_state(client, 4) == ("AVAILABLE", "OK"), 30, "version 4 once complete")
        assert_same_answer(client.predict(**request), v2.answer("serving_default", inputs, "columnar"))
        assert client.metadata()["model_spec"]["version"] == "4"
        assert _version_state(client, 3)[0] == "END"


# === Command line and load test ===

def test_serve_parser_and_batching_file(tmp_path):
    import argparse

    parser = argparse.ArgumentParser()
    add_serve_parser(parser.add_subparsers(dest="command"))
    (tmp_path / "batching.txt").write_text(
        "max_batch_size { value: 32 }\nbatch_timeout_micros { value: 2000 }\n# comment\n"
        "num_batch_threads { value: 2 }\npad_variable_length_inputs: true\n")
    args = parser.parse_args(["serve", "--model_base_path", "m", "--model_name", "sst2", "--rest_api_port", "8600",
                              "--enable_batching", "--batching_parameters_file", str(tmp_path / "batching.txt"),
                              "--max_batch_size", "16"])
    options = options_from_args(args)
    assert (args.rest_api_port, args.model_name, options.enable_batching) == (8600, "sst2", True)
    assert (options.batching.max_batch_size, options.batching.batch_timeout_micros,
            options.batching.num_batch_threads, options.batching.max_enqueued_batches) == (16, 2000, 2, 10)
    assert read_batching_parameters(str(tmp_path / "batching.txt"))["max_batch_size"] == 32


def test_cli_subprocess_and_loadtest(models, tmp_path):
    import socket

    from serving import loadtest

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, PYTHONPATH=os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "serving.rest_server", "--model_base_path",
                             str(models / "tiny"), "--model_name", "sst2", "--rest_api_port", str(port), "--port", "0",
                             "--enable_batching", "--log_level", "warning"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        client = PredictClient("127.0.0.1", port, "sst2")

        def up():
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            try:
                return client.status()
            except OSError:
                return None

        wait_for(up, 90, "the server subprocess")
        out = tmp_path / "load.json"
        url = f"http://127.0.0.1:{port}/v1/models/sst2:predict"
        assert loadtest.main(["--url", url, "--concurrency", "1,4", "--requests", "20", "--warmup", "2",
                              "--instances", "2", "--min-id", "5", "--max-id", "120", "--out", str(out)]) == 0
        report = json.loads(out.read_text())
        assert [r["concurrency"] for r in report["results"]] == [1, 4]
        for row in report["results"]:
            assert row["requests"] == 20 and row["error_count"] == 0
            assert 0 < row["latency_ms"]["p50"] <= row["latency_ms"]["p99"]
            assert 0 < row["tf_calls"] <= 20
        assert loadtest.main(["--url", url, "--signature", "classify_text", "--format", "columnar",
                              "--concurrency", "2", "--requests", "6", "--warmup", "1",
                              "--out", str(out)]) == 0
        assert json.loads(out.read_text())["results"][0]["error_count"] == 0
    finally:
        proc.terminate()
        proc.wait(timeout=30)
