"""gRPC API (TF Serving's PredictionService / ModelService) beside the REST API, in one process.

Clients are TF Serving's stock stubs from `tensorflow-serving-api`; servers run in-process on
127.0.0.1 and free ports (`ServerThread`, as in test_rest_server.py). Every gRPC answer is compared
with the REST answer of the same server to the same request.
"""

import argparse
import os
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import json_format
from prometheus_client.parser import text_string_to_metric_families
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2, get_model_status_pb2,
                                     model_service_pb2_grpc, predict_pb2, prediction_service_pb2_grpc)

from serving.batching import BatchingParameters
from serving.client import ErrorResponse
from serving.metrics import DEFAULT_PATH, REQUEST_COUNT, REQUEST_LATENCY
from serving.rest_server import add_serve_parser, options_from_args, serve_main
from tests.conftest import random_inputs
from tests.serving_fixtures import TINY_N, WORDS
from tests.test_model_config import model, save_toy, write_config
from tests.test_rest_server import ServerThread, ServingOptions, build_app, client_for, shared_models, wait_for

MAX_MESSAGE = 256 * 1024


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stubs:
    """The stock stubs on one channel to a server's gRPC port."""

    def __init__(self, port):
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.predict = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.models = model_service_pb2_grpc.ModelServiceStub(self.channel)

    def close(self):
        self.channel.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """(ModelServer, REST url, Stubs): tiny and toy, and `affine` (versions 1 and 2, labelled
    stable and canary) from a model config file, batching and Prometheus on."""
    root = shared_models(tmp_path_factory)
    affine = tmp_path_factory.mktemp("grpc-models") / "affine"
    for version in (1, 2):
        save_toy(affine, version)
    config = write_config(
        tmp_path_factory.mktemp("grpc-config") / "models.config", model("tiny", root / "tiny"),
        model("toy", root / "toy"),
        model("affine", affine, 'model_version_policy { specific { versions: 1 versions: 2 } } '
                                'version_labels { key: "stable" value: 1 } '
                                'version_labels { key: "canary" value: 2 }'))
    options = ServingOptions(poll_seconds=0, model_config_file=config, enable_batching=True,
                             batching=BatchingParameters(max_batch_size=64, batch_timeout_micros=1000,
                                                         num_batch_threads=2),
                             prometheus_path=DEFAULT_PATH, grpc_port=0, grpc_max_message_size=MAX_MESSAGE)
    app = build_app(None, options)
    with ServerThread(app) as url:
        stubs = Stubs(app.state.server.grpc.port)
        yield app.state.server, url, stubs
        stubs.close()


def predict_request(model_name, inputs, signature="", version=None, label=None, output_filter=()):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    if label is not None:
        request.model_spec.version_label = label
    for name, value in inputs.items():
        proto = value if isinstance(value, tensor_pb2.TensorProto) else tf.make_tensor_proto(value)
        request.inputs[name].CopyFrom(proto)
    request.output_filter.extend(output_filter)
    return request


def outputs_of(response):
    return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}


def rest_outputs(url, model_name, inputs, signature="serving_default"):
    """The REST answer to the same request, columnar, as {output: numpy}."""
    body = {"signature_name": signature,
            "inputs": {k: [x.decode() if isinstance(x, bytes) else x for x in v.tolist()] if v.dtype == object
                       else v.tolist() for k, v in inputs.items()}}
    answer = client_for(url, model_name).request("POST", f"/v1/models/{model_name}:predict", body)["outputs"]
    return {k: np.array(v) for k, v in answer.items()}


def assert_same(outputs, rest, atol=1e-6):
    """{output: numpy} (gRPC's strings are bytes) equals a REST answer: floats within atol."""
    assert sorted(outputs) == sorted(rest)
    for name, want in rest.items():
        got = outputs[name]
        if got.dtype == object:
            got = np.array([x.decode() for x in got.reshape(-1)]).reshape(got.shape)
        assert got.shape == want.shape, name
        if want.dtype.kind == "f":
            np.testing.assert_allclose(got, want, rtol=0, atol=atol, err_msg=name)
        else:
            assert got.tolist() == want.tolist(), name


def ids_inputs(rows, seed):
    inputs = random_inputs(rows, TINY_N, seed=seed)
    inputs["input_ids"][:, 0] = 2  # [CLS]
    return {k: v.astype(np.int32) for k, v in inputs.items()}


def text_inputs(rows, seed):
    rng = np.random.default_rng(seed)
    return {"text": np.array([" ".join(rng.choice(WORDS, size=int(rng.integers(1, 20)))) for _ in range(rows)],
                             dtype=object)}


def grpc_error(call, request, timeout=30):
    """(status code, details) of a call that must fail."""
    with pytest.raises(grpc.RpcError) as e:
        call(request, timeout=timeout)
    return e.value.code(), e.value.details()


# === Predict, metadata, status ===

def test_predict_equals_rest_on_both_signatures(server):
    _, url, stubs = server
    for signature, inputs in [("serving_default", ids_inputs(3, seed=1)), ("classify_text", text_inputs(4, seed=2))]:
        response = stubs.predict.Predict(predict_request("tiny", inputs, signature), timeout=30)
        assert (response.model_spec.name, response.model_spec.version.value,
                response.model_spec.signature_name) == ("tiny", 1, signature)
        assert_same(outputs_of(response), rest_outputs(url, "tiny", inputs, signature))
    # Values in the typed fields, as TF Serving answers (clients read .float_val directly).
    response = stubs.predict.Predict(predict_request("tiny", text_inputs(2, seed=3), "classify_text",
                                                     output_filter=["probabilities", "label_name"]), timeout=30)
    assert sorted(response.outputs) == ["label_name", "probabilities"]
    probabilities = response.outputs["probabilities"]
    assert not probabilities.tensor_content and len(probabilities.float_val) == 4
    assert [d.size for d in probabilities.tensor_shape.dim] == [2, 2]
    assert all(name in (b"class_0", b"class_1") for name in response.outputs["label_name"].string_val)
    # Typed-field requests decode as tensor_content ones do; default signature when none is named.
    ids = ids_inputs(2, seed=4)
    typed = {name: tensor_pb2.TensorProto(dtype=types_pb2.DT_INT32, tensor_shape=tf.TensorShape(v.shape).as_proto(),
                                          int_val=v.reshape(-1).tolist()) for name, v in ids.items()}
    assert_same(outputs_of(stubs.predict.Predict(predict_request("tiny", typed), timeout=30)),
                rest_outputs(url, "tiny", ids))


def test_several_dtypes_round_trip(server):
    _, url, stubs = server
    inputs = {"a": np.array([[1.5, 2.0], [-3.0, 0.25]], np.float32), "s": np.array([b"abc", b"\xff\x00"], object),
              "flag": np.array([True, False]), "n": np.array([2 ** 40, -7], np.int64)}
    got = outputs_of(stubs.predict.Predict(predict_request("toy", inputs, "mixed"), timeout=30))
    assert got["total"].tolist() == [3.5, -2.75] and got["echo_bytes"].tolist() == [b"abc", b"\xff\x00"]
    assert got["flag"].tolist() == [False, True] and got["n"].tolist() == [2 ** 40 + 1, -6]
    assert got["length"].tolist() == [3, 2]


def test_50_concurrent_mixed_rest_and_grpc_clients(server):
    _, url, _ = server
    pool = [("serving_default", ids_inputs(1 + i % 3, seed=10 + i)) if i % 2 else
            ("classify_text", text_inputs(1 + i % 4, seed=10 + i)) for i in range(8)]
    reference = [rest_outputs(url, "tiny", inputs, signature) for signature, inputs in pool]

    def client(i):
        stubs = Stubs(server[0].grpc.port)
        try:
            for j in range(2):
                k = (i + j) % len(pool)
                signature, inputs = pool[k]
                if (i + j) % 2:
                    got = outputs_of(stubs.predict.Predict(predict_request("tiny", inputs, signature), timeout=60))
                else:
                    got = rest_outputs(url, "tiny", inputs, signature)
                assert_same(got, reference[k])
            return True
        finally:
            stubs.close()

    with ThreadPoolExecutor(50) as threads:
        assert all(threads.map(client, range(50)))


def test_metadata_equals_rest(server):
    _, url, stubs = server
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "tiny"
    response = stubs.predict.GetModelMetadata(request, timeout=30)
    assert (response.model_spec.name, response.model_spec.version.value) == ("tiny", 1)
    defs = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(defs)
    rest = client_for(url, "tiny").request("GET", "/v1/models/tiny/metadata")
    as_json = json_format.MessageToDict(defs, preserving_proto_field_name=True,
                                        always_print_fields_with_no_presence=True)["signature_def"]
    assert as_json == rest["metadata"]["signature_def"]["signature_def"]
    assert {"serving_default", "classify_text"} <= set(as_json)
    assert defs.signature_def["classify_text"].inputs["text"].dtype == types_pb2.DT_STRING
    request.model_spec.version_label = "canary"
    request.model_spec.name = "affine"
    assert stubs.predict.GetModelMetadata(request, timeout=30).model_spec.version.value == 2


def test_model_status_equals_rest(server):
    _, url, stubs = server
    for name, path, spec in [("affine", "/v1/models/affine", {}),
                             ("affine", "/v1/models/affine/versions/1", {"version": 1}),
                             ("affine", "/v1/models/affine/labels/canary", {"version_label": "canary"})]:
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = name
        if "version" in spec:
            request.model_spec.version.value = spec["version"]
        if "version_label" in spec:
            request.model_spec.version_label = spec["version_label"]
        response = stubs.models.GetModelStatus(request, timeout=30)
        as_json = json_format.MessageToDict(response, preserving_proto_field_name=True,
                                            always_print_fields_with_no_presence=True)
        assert as_json == client_for(url, name).request("GET", path)
    states = [(s.version, get_model_status_pb2.ModelVersionStatus.State.Name(s.state)) for s in
              stubs.models.GetModelStatus(get_model_status_pb2.GetModelStatusRequest(
                  model_spec={"name": "affine"}), timeout=30).model_version_status]
    assert states == [(2, "AVAILABLE"), (1, "AVAILABLE")]


def test_config_file_models_and_version_labels(server):
    _, _, stubs = server
    at_zero = {"x": np.array([0.0], np.float32)}

    def served(**spec):
        response = stubs.predict.Predict(predict_request("affine", at_zero, **spec), timeout=30)
        return response.model_spec.version.value, outputs_of(response)["y"].tolist()

    assert served(label="stable") == (1, [1.0])
    assert served(label="canary") == (2, [2.0])
    assert served(version=1) == (1, [1.0])
    assert served() == (2, [2.0])  # Latest: the highest served
    half = stubs.predict.Predict(predict_request("toy", {"x": np.array([1.0, 2.0, 5.0], np.float32)}), timeout=30)
    assert outputs_of(half)["y"].tolist() == [3.5, 4.0, 5.5]  # TF Serving's half_plus_three example


# === Hostile requests ===

def _ids(rows=2, length=TINY_N, dtype=np.int32):
    return {k: v.astype(dtype) for k, v in ids_inputs(rows, seed=7).items()} if length == TINY_N else \
        {k: np.zeros((rows, length), dtype) for k in ("input_ids", "attention_mask", "token_type_ids")}


def _huge_declared():
    """One value, declared as [1000000, 16]: TF's fill-with-the-last-value rule would expand it."""
    inputs = _ids()
    inputs["input_ids"] = tensor_pb2.TensorProto(dtype=types_pb2.DT_INT32, int_val=[2],
                                                 tensor_shape=tf.TensorShape([1_000_000, TINY_N]).as_proto())
    return inputs


def _corrupt_content():
    inputs = {k: tf.make_tensor_proto(v) for k, v in _ids().items()}
    inputs["input_ids"].tensor_content = inputs["input_ids"].tensor_content[:-4]
    return inputs


INVALID, NOT_FOUND = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND
HOSTILE = {
    "wrong dtype": (lambda: predict_request("tiny", _ids(dtype=np.int64)), INVALID,
                    "Input 'attention_mask' has dtype int64 but the signature expects int32"),
    "wrong length": (lambda: predict_request("tiny", _ids(length=8)), INVALID,
                     "Input 'attention_mask' has shape [2, 8] but the signature expects [-1, 16] (-1: any size)"),
    "wrong rank": (lambda: predict_request("tiny", {"text": np.array([["a"]], object)}, "classify_text"), INVALID,
                   "Input 'text' has shape [1, 1] but the signature expects [-1] (-1: any size)"),
    "missing input": (lambda: predict_request("tiny", {k: v for k, v in _ids().items() if k != "token_type_ids"}),
                      INVALID, "input size does not match signature: 2!=3 len({attention_mask,input_ids}) != "
                      "len({attention_mask,input_ids,token_type_ids}). Sent extra: {}. Missing but required: "
                      "{token_type_ids}."),
    "extra input": (lambda: predict_request("tiny", {**_ids(), "x": np.zeros(2, np.int32)}), INVALID,
                    "Sent extra: {x}. Missing but required: {}."),
    "unknown input": (lambda: predict_request("tiny", {**{k: v for k, v in _ids().items() if k != "input_ids"},
                                                       "ids": _ids()["input_ids"]}), INVALID,
                      "input tensor alias not found in signature: ids. Inputs expected to be in the set "
                      "{attention_mask,input_ids,token_type_ids}."),
    "empty batch": (lambda: predict_request("tiny", _ids(rows=0)), INVALID,
                    "Empty batch: input 'attention_mask' has no rows"),
    "batch sizes differ": (lambda: predict_request("tiny", {**_ids(), "attention_mask": _ids(3)["attention_mask"]}),
                           INVALID, "Inputs must have the same batch size"),
    "id out of vocabulary": (lambda: predict_request("tiny", {**_ids(), "input_ids": np.full((2, TINY_N), 120,
                                                                                             np.int32)}),
                             INVALID, "input_ids[0,0] = 120 is not in [0, 120)"),
    "content of the wrong size": (lambda: predict_request("tiny", _corrupt_content()), INVALID,
                                  "tensor parsing error: input_ids"),
    "declared huge": (lambda: predict_request("tiny", _huge_declared()), INVALID,
                      "Input 'input_ids' declares 16000000 values, more than a message of --grpc_max_message_size"),
    "negative dimension": (lambda: predict_request("tiny", {**_ids(), "input_ids": tensor_pb2.TensorProto(
        dtype=types_pb2.DT_INT32, tensor_shape={"dim": [{"size": -1}, {"size": TINY_N}]})}), INVALID,
                           "tensor parsing error: input_ids"),
    "unknown output": (lambda: predict_request("tiny", _ids(), output_filter=["logits", "nope"]), INVALID,
                       "output tensor alias not found in signature: nope Outputs expected to be in the set"),
    "duplicate output": (lambda: predict_request("tiny", _ids(), output_filter=["logits", "logits"]), INVALID,
                         "duplicate output tensor alias: logits"),
    "unknown model": (lambda: predict_request("nope", _ids()), NOT_FOUND,
                      "Servable not found for request: Latest(nope)"),
    "no model name": (lambda: predict_request("", _ids()), NOT_FOUND, "Servable not found for request: Latest()"),
    "unknown version": (lambda: predict_request("tiny", _ids(), version=9), NOT_FOUND,
                        "Servable not found for request: Specific(tiny, 9)"),
    "unknown label": (lambda: predict_request("affine", {"x": np.zeros(1, np.float32)}, label="beta"), INVALID,
                      "Unrecognized servable version label: beta"),
    "unknown signature": (lambda: predict_request("tiny", _ids(), "nope"), grpc.StatusCode.FAILED_PRECONDITION,
                          'Serving signature key "nope" not found.'),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_predict_gets_tf_servings_status(server, case):
    _, _, stubs = server
    build, code, message = HOSTILE[case]
    got_code, details = grpc_error(stubs.predict.Predict, build())
    assert got_code == code and message in details, (got_code, details)


def test_rules_and_messages_are_the_rest_apis(server):
    _, url, stubs = server
    client = client_for(url, "tiny")
    no_text = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, tensor_shape=tf.TensorShape([0]).as_proto())
    for signature, inputs, body in [
            ("serving_default", _ids(length=8), None),
            ("serving_default", {**_ids(), "attention_mask": _ids(rows=3)["attention_mask"]}, None),
            ("serving_default", {**_ids(), "input_ids": np.full((2, TINY_N), 120, np.int32)}, None),
            ("classify_text", {"text": no_text}, {"text": []})]:
        _, details = grpc_error(stubs.predict.Predict, predict_request("tiny", inputs, signature))
        with pytest.raises(ErrorResponse) as e:
            client.request("POST", "/v1/models/tiny:predict", {"signature_name": signature, "inputs": body or {
                k: v.tolist() for k, v in inputs.items()}})
        assert (e.value.status, e.value.message) == (400, details)


def test_hostile_metadata_and_status_requests(server):
    _, _, stubs = server
    metadata = get_model_metadata_pb2.GetModelMetadataRequest
    status = get_model_status_pb2.GetModelStatusRequest
    cases = [
        (stubs.predict.GetModelMetadata, metadata(metadata_field=["signature_def"]), INVALID, "Missing ModelSpec"),
        (stubs.predict.GetModelMetadata, metadata(model_spec={"name": "tiny"}), INVALID,
         "GetModelMetadataRequest must specify at least one metadata_field"),
        (stubs.predict.GetModelMetadata, metadata(model_spec={"name": "tiny"}, metadata_field=["graph"]), INVALID,
         "Metadata field graph is not supported"),
        (stubs.predict.GetModelMetadata, metadata(model_spec={"name": "nope"}, metadata_field=["signature_def"]),
         NOT_FOUND, "Servable not found for request: Latest(nope)"),
        (stubs.models.GetModelStatus, status(), INVALID, "Missing ModelSpec"),
        (stubs.models.GetModelStatus, status(model_spec={"name": "affine", "version": {"value": 7}}), NOT_FOUND,
         "Could not find version 7 of model affine"),
        (stubs.models.GetModelStatus, status(model_spec={"name": "affine", "version_label": "beta"}), INVALID,
         "Unrecognized servable version label: beta"),
    ]
    for call, request, code, message in cases:
        assert grpc_error(call, request) == (code, message)
    x = {"x": np.zeros(1, np.float32)}
    assert grpc_error(stubs.predict.Classify, classification_pb2.ClassificationRequest())[0] == \
        grpc.StatusCode.UNIMPLEMENTED
    assert stubs.predict.Predict(predict_request("affine", x), timeout=30).model_spec.version.value == 2


def test_message_over_the_limit_is_resource_exhausted_and_serving_goes_on(server):
    _, url, stubs = server
    big = _ids(rows=MAX_MESSAGE // (TINY_N * 4) + 1, length=TINY_N + 1)  # input_ids alone is over the limit
    code, details = grpc_error(stubs.predict.Predict, predict_request("tiny", big))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, details
    inputs = ids_inputs(2, seed=5)
    assert_same(outputs_of(stubs.predict.Predict(predict_request("tiny", inputs), timeout=30)),
                rest_outputs(url, "tiny", inputs))


def test_prometheus_counts_grpc_calls(server):
    model_server, url, stubs = server

    def scrape():
        import urllib.request

        with urllib.request.urlopen(url + DEFAULT_PATH) as response:
            families = {f.name: f.samples for f in text_string_to_metric_families(response.read().decode())}
        counts = {(s.labels["model_name"], s.labels["version"], s.labels["API"], s.labels["status"]): s.value
                  for s in families[REQUEST_COUNT]}
        latency = {(s.labels["model_name"], s.labels["version"], s.labels["API"], s.labels["entrypoint"]): s.value
                   for s in families[REQUEST_LATENCY] if s.name.endswith("_count")}
        return counts, latency

    before, latency_before = scrape()
    for _ in range(3):
        stubs.predict.Predict(predict_request("affine", {"x": np.zeros(2, np.float32)}, label="stable"), timeout=30)
    grpc_error(stubs.predict.Predict, predict_request("affine", {"x": np.zeros((2, 2), np.float32)}, version=1))
    after, latency_after = scrape()

    def delta(key, new, old):
        return new.get(key, 0) - old.get(key, 0)

    assert delta(("affine", "1", "Predict", "OK"), after, before) == 3
    assert delta(("affine", "1", "Predict", "INVALID_ARGUMENT"), after, before) == 1
    assert delta(("affine", "1", "Predict", "GRPC"), latency_after, latency_before) == 3  # successes only
    assert model_server.stats()["grpc_responses"]["OK"] >= 3


# === Lifecycle and command line ===

def test_queued_call_past_its_deadline_never_runs_and_shutdown_drains(tmp_path_factory):
    root = shared_models(tmp_path_factory)
    app = build_app({"toy": str(root / "toy")}, ServingOptions(poll_seconds=0, num_request_threads=1, grpc_port=0))
    thread = ServerThread(app)
    thread.start()
    model_server = app.state.server
    stubs = Stubs(model_server.grpc.port)
    busy = predict_request("toy", {"seconds": np.array([1.0], np.float32)}, "busy")
    stats = model_server.stores["toy"].stats

    def running(calls):  # `calls` TensorFlow calls have started
        wait_for(lambda: stats.tf_calls == calls, 30, f"TensorFlow call {calls}")

    try:
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(stubs.predict.Predict, busy, timeout=30)
            running(1)  # the one inference thread is busy for a second
            assert grpc_error(stubs.predict.Predict, busy, timeout=0.3)[0] == grpc.StatusCode.DEADLINE_EXCEEDED
            assert outputs_of(first.result())["waited"][0] >= 1.0
        time.sleep(0.2)
        assert stats.tf_calls == 1  # the expired call was dropped, not run
        with ThreadPoolExecutor(1) as pool:
            in_flight = pool.submit(stubs.predict.Predict, busy, timeout=30)
            running(2)
            thread.stop()  # REST and gRPC stop together; the call in flight still gets its answer
            assert outputs_of(in_flight.result())["waited"][0] >= 1.0
        assert grpc_error(stubs.predict.Predict, busy, timeout=5)[0] == grpc.StatusCode.UNAVAILABLE
    finally:
        stubs.close()
        thread.stop()


def test_flags_are_tf_servings(tmp_path_factory, capsys):
    parser = argparse.ArgumentParser()
    add_serve_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["serve", "--model_base_path", "m"])
    assert (args.port, args.rest_api_port) == (8500, 8501)
    options = options_from_args(args)
    assert (options.grpc_port, options.grpc_max_message_size) == (8500, 10 * 1024 * 1024)
    options = options_from_args(parser.parse_args(["serve", "--model_base_path", "m", "--port", "0",
                                                   "--grpc_max_message_size", "1000", "--grpc_max_threads", "3"]))
    assert (options.grpc_port, options.grpc_max_message_size, options.grpc_max_threads) == (None, 1000, 3)
    assert serve_main(parser.parse_args(["serve", "--model_base_path", "m", "--port", "8501"])) == 2
    assert "--port is the gRPC port: give the REST port as --rest_api_port" in capsys.readouterr().err
    assert serve_main(parser.parse_args(["serve", "--model_base_path", "m", "--port", "0",
                                         "--rest_api_port", "0"])) == 2
    assert "nothing to serve" in capsys.readouterr().err
    assert serve_main(parser.parse_args(["serve", "--model_base_path", "m", "--port", str(free_port()),
                                         "--grpc_channel_arguments", "oops"])) == 2
    assert "'oops' is not key=value" in capsys.readouterr().err
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert serve_main(parser.parse_args(["serve", "--model_base_path", "m", "--port", str(port)])) == 2
    assert f"cannot listen for gRPC on 127.0.0.1:{port}" in capsys.readouterr().err


def test_serve_grpc_alone_until_sigterm(tmp_path_factory):
    """`--rest_api_port 0`: gRPC only, in this process, ended by SIGTERM."""
    root = shared_models(tmp_path_factory)
    parser = argparse.ArgumentParser()
    add_serve_parser(parser.add_subparsers(dest="command"))
    port = free_port()
    args = parser.parse_args(["serve", "--model_base_path", str(root / "toy"), "--model_name", "toy",
                              "--port", str(port), "--rest_api_port", "0", "--file_system_poll_wait_seconds", "0",
                              "--log_level", "warning"])
    original = signal.getsignal(signal.SIGTERM)
    answers = []

    def client():
        stubs = Stubs(port)
        try:
            answers.append(outputs_of(stubs.predict.Predict(
                predict_request("toy", {"x": np.array([4.0], np.float32)}), timeout=60, wait_for_ready=True)))
        finally:
            stubs.close()
            deadline = time.monotonic() + 30
            while signal.getsignal(signal.SIGTERM) is original and time.monotonic() < deadline:
                time.sleep(0.05)  # serve_main's handler is in place
            if signal.getsignal(signal.SIGTERM) is not original:
                os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=client)
    thread.start()
    assert serve_main(args) == 0
    thread.join()
    assert [a["y"].tolist() for a in answers] == [[5.0]]
    assert signal.getsignal(signal.SIGTERM) is original
