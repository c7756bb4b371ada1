"""Malformed and hostile requests: each gets a 4xx JSON error (never a 500, never a hang), and the
server still answers correctly afterwards.

Generated requests (hypothesis, derandomized so CI sees the same ones): random bytes, random JSON,
mutations of valid requests (dtype, shape, raggedness, vocabulary, mask and segment ranges, keys,
nesting, empty batches, signatures, base64) and random URLs. Hand-written ones: body size limits,
slow bodies, encodings, deep nesting, huge numbers, raw HTTP garbage. Expected status codes and
messages are TF Serving's (see tf-serving-rest.md in the shared docs and serving/errors.py).
"""

import base64
import http.client
import json
import socket
import threading
import time
from urllib.parse import quote

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serving.batching import BatchingParameters
from serving.rest_server import ServerThread, ServingOptions, build_app
from tests import test_rest_server as rest
from tests.conftest import random_inputs
from tests.serving_fixtures import TINY_N

SENT = {"count": 0}
HYPOTHESIS = settings(deadline=None, derandomize=True, database=None,
                      suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
TIMEOUT_MS = 10000  # long enough for a loaded CI machine; the 408/504 tests wait this long
MAX_BATCH = 64


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return rest.shared_models(tmp_path_factory)


@pytest.fixture(scope="module")
def server(models):
    """Batching on (the longer path), a short deadline so that slow bodies time out quickly."""
    options = ServingOptions(poll_seconds=0, enable_batching=True, timeout_ms=TIMEOUT_MS,
                             batching=BatchingParameters(max_batch_size=MAX_BATCH, num_batch_threads=2))
    app = build_app({"tiny": str(models / "tiny"), "toy": str(models / "toy")}, options)
    with ServerThread(app) as url:
        yield app.state.server, url.rsplit(":", 1)[-1]


class Raw:
    """One keep-alive connection sending arbitrary bytes and paths; reconnects when closed."""

    def __init__(self, port):
        self.port, self.conn = int(port), None

    def send(self, method, path, body=None, headers=None, timeout=20):
        SENT["count"] += 1
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
            try:
                self.conn.request(method, path, body=body, headers=headers or {})
                response = self.conn.getresponse()
                data = response.read()
                if response.getheader("connection", "").lower() == "close":
                    self.conn.close()
                    self.conn = None
                return response.status, data, response.getheader("content-type")
            except (ConnectionError, http.client.RemoteDisconnected):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise


@pytest.fixture(scope="module")
def raw(server):
    return Raw(server[1])


def expect_error(raw, body, path="/v1/models/tiny:predict", method="POST", status=400, contains=None,
                 headers=None):
    """Sends; asserts a JSON `{"error": str}` with `status` (a code, or a (low, high) range)."""
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
    got, data, content_type = raw.send(method, path, body, headers)
    low, high = status if isinstance(status, tuple) else (status, status)
    assert low <= got <= high, (got, data[:300], path[:100], (body or b"")[:200])
    assert content_type == "application/json"
    answer = json.loads(data)
    assert isinstance(answer, dict) and isinstance(answer.get("error"), str) and answer["error"], answer
    assert "Traceback" not in answer["error"] and "File \"" not in answer["error"]
    if contains:
        assert contains in answer["error"], answer["error"]
    return answer["error"]


def valid_columns(rows=2, seed=0):
    inputs = random_inputs(rows, TINY_N, seed=seed)
    return {k: v.tolist() for k, v in inputs.items()}


def valid_rows(rows=2, seed=0):
    columns = valid_columns(rows, seed)
    return [{k: v[i] for k, v in columns.items()} for i in range(rows)]


# === Generated ===

@settings(HYPOTHESIS, max_examples=50)
@given(body=st.binary(max_size=200))
def test_random_bytes(raw, body):
    expect_error(raw, body)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["instances", "inputs", "signature_name", "b64", "text", "input_ids"]) | st.text(max_size=4),
        inner, max_size=4),
    max_leaves=12)


@settings(HYPOTHESIS, max_examples=50)
@given(value=JSON_VALUES)
def test_random_json(raw, value):
    expect_error(raw, json.dumps(value).encode(), status=(400, 404))


NOT_INT = st.floats(allow_nan=False).filter(lambda x: x != int(x) if abs(x) < 1e300 else True) | st.text(max_size=3) \
    | st.booleans() | st.none() | st.just({}) | st.just([1])
OUT_OF_VOCAB = st.integers(max_value=-1) | st.integers(min_value=120)


@st.composite
def mutated_request(draw):
    """(request, path) of a serving_default or classify_text request broken in one way."""
    kind = draw(st.sampled_from(["dtype", "length", "ragged", "vocab", "mask", "segment", "drop_key", "extra_key",
                                 "nest", "empty", "both", "neither", "signature", "signature_type", "text_type",
                                 "b64", "rows_not_list", "mixed_rows", "too_many_rows", "columns_mismatch"]))
    rows = draw(st.integers(2 if kind in ("ragged", "columns_mismatch") else 1, 3))
    fmt = draw(st.sampled_from(["row", "columnar"]))
    columns = valid_columns(rows, seed=draw(st.integers(0, 50)))
    name = draw(st.sampled_from(sorted(columns)))
    r, t = draw(st.integers(0, rows - 1)), draw(st.integers(0, TINY_N - 1))
    if kind == "dtype":
        columns[name][r][t] = draw(NOT_INT)
    elif kind == "length":
        length = draw(st.integers(0, 40).filter(lambda n: n != TINY_N))
        columns[name] = [(row * 3)[:length] for row in columns[name]]
    elif kind == "ragged":
        columns[name][r] = columns[name][r][:draw(st.integers(0, TINY_N - 1))]
    elif kind == "vocab":
        columns["input_ids"][r][t] = draw(OUT_OF_VOCAB)
    elif kind == "mask":
        columns["attention_mask"][r][t] = draw(st.integers().filter(lambda v: v not in (0, 1)))
    elif kind == "segment":
        columns["token_type_ids"][r][t] = draw(st.integers(max_value=-1) | st.integers(min_value=2))
    elif kind == "nest":
        columns[name][r][t] = [columns[name][r][t]]
    elif kind == "too_many_rows":
        columns = {k: v * (MAX_BATCH // rows + 1) for k, v in columns.items()}
    if kind == "columns_mismatch":
        fmt = "columnar"
        columns[name] = columns[name][:-1]
    body = ({"instances": [{k: v[i] for k, v in columns.items()} for i in range(len(columns["input_ids"]))]}
            if fmt == "row" else {"inputs": columns})
    if kind in ("drop_key", "extra_key"):
        target = body["instances"][r] if fmt == "row" else body["inputs"]
        if kind == "drop_key":
            del target[name]
        else:
            target[draw(st.text(min_size=1, max_size=6).filter(lambda k: k not in columns))] = [0] * TINY_N
    elif kind == "empty":
        body = {"instances": []} if fmt == "row" else {"inputs": {k: [] for k in columns}}
    elif kind == "both":
        body = {"instances": valid_rows(rows), "inputs": valid_columns(rows)}
    elif kind == "neither":
        body = {draw(st.sampled_from(["instance", "input", "examples", "Instances"])): valid_rows(rows)}
    elif kind == "signature":
        body["signature_name"] = draw(st.text(max_size=12).filter(
            lambda s: s not in ("", "serving_default", "classify_text")))
    elif kind == "signature_type":
        body["signature_name"] = draw(st.integers() | st.lists(st.text(max_size=3), max_size=2) | st.booleans())
    elif kind == "text_type":
        texts = ["good movie"] * rows
        texts[r] = draw(NOT_INT.filter(lambda v: not isinstance(v, str)) | st.integers())
        body = {"signature_name": "classify_text", fmt == "row" and "instances" or "inputs": texts}
    elif kind == "b64":
        bad = draw(st.sampled_from(["!!!", "abc", "a=b=", "é", "QUJD\n"]) | st.integers() | st.none())
        body = {"signature_name": "classify_text", "instances": [{"b64": bad}] * rows}
    elif kind == "rows_not_list":
        body = {"instances": draw(st.integers() | st.text(max_size=5) | st.just({"input_ids": [1]}))}
    elif kind == "mixed_rows":
        body = {"instances": valid_rows(2) + [valid_columns(1)["input_ids"][0]]}
    return body


@settings(HYPOTHESIS, max_examples=140)
@given(body=mutated_request())
def test_mutated_requests(raw, body):
    expect_error(raw, body)


SEGMENT = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=10)


@settings(HYPOTHESIS, max_examples=50)
@given(name=SEGMENT, suffix=st.sampled_from(["", ":predict", ":classify", ":regress", ":explode", "/metadata",
                                             "/versions/abc", "/versions/99999999999999999999", "/versions/7",
                                             "/labels/stable", "/versions/1/metadata/x", "//"]),
       method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]))
def test_random_urls(raw, name, suffix, method):
    path = "/v1/models/" + quote(name, safe="") + suffix
    body = json.dumps({"instances": [[[]]]}).encode() if method in ("POST", "PUT", "PATCH") else None
    status, data, _ = raw.send(method, path, body)
    if status == 200:  # only a real model at a real route may answer
        assert method == "GET" and name in ("tiny", "toy") and suffix in ("", "/metadata"), path
    else:
        assert 400 <= status < 500, (status, path, data[:200])
        assert json.loads(data)["error"]


# === Hand-written ===

def read_response(sock):
    """The raw HTTP response (headers and Content-Length body) from a socket, as text."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data.decode("latin-1")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return (head + b"\r\n\r\n" + body).decode("latin-1")


HUGE = 100 * 1024 * 1024


def test_body_over_the_limit_is_refused_before_it_is_read(server):
    """Content-Length 100 MB: 413 at once, with almost none of the body sent."""
    port = int(server[1])
    SENT["count"] += 1
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        start = time.monotonic()
        s.sendall(b"POST /v1/models/tiny:predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n" % HUGE + b"[" * 65536)
        answer = read_response(s)
        assert answer.startswith("HTTP/1.1 413"), answer[:200]
        assert time.monotonic() - start < 5
        assert '"error"' in answer and "limit" in answer


def test_100mb_body_sent_in_full_gets_413(server, raw):
    """A client that sends everything before reading (like `requests`) still gets the 413."""
    start = time.monotonic()
    expect_error(raw, b" " * HUGE, status=413, contains="larger than the limit")
    assert time.monotonic() - start < 30


def test_chunked_body_over_the_limit(server):
    conn = http.client.HTTPConnection("127.0.0.1", int(server[1]), timeout=30)
    SENT["count"] += 1

    def chunks():
        for _ in range(12):
            yield b" " * (1024 * 1024)

    try:
        conn.request("POST", "/v1/models/tiny:predict", body=chunks(), encode_chunked=True,
                     headers={"Transfer-Encoding": "chunked"})
        response = conn.getresponse()
        assert response.status == 413
        assert "limit" in json.loads(response.read())["error"]
    finally:
        conn.close()


@pytest.mark.slow
def test_slow_body_times_out(server):
    SENT["count"] += 1
    with socket.create_connection(("127.0.0.1", int(server[1])), timeout=20) as s:
        start = time.monotonic()
        s.sendall(b"POST /v1/models/tiny:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"inst")
        answer = read_response(s)
        assert answer.startswith("HTTP/1.1 408"), answer[:200]
        assert TIMEOUT_MS / 1000 - 0.5 < time.monotonic() - start < TIMEOUT_MS / 1000 + 10


@pytest.mark.slow
def test_slow_model_gets_504_at_the_deadline(raw):
    start = time.monotonic()
    expect_error(raw, {"signature_name": "busy", "inputs": [TIMEOUT_MS / 1000 + 1.5]}, path="/v1/models/toy:predict",
                 status=504, contains="Deadline exceeded")
    assert TIMEOUT_MS / 1000 - 0.5 < time.monotonic() - start < TIMEOUT_MS / 1000 + 10


@pytest.mark.parametrize("data", [
    b"GARBAGE\r\n\r\n", b"POST /v1/models/tiny:predict HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
    b"POST /v1/models/tiny:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\n",
    b"GET /v1/models/tiny HTTP/1.1\r\n" + b"X-Big: " + b"a" * 70000 + b"\r\n\r\n",
], ids=["request-line", "content-length", "two-lengths", "huge-header"])
def test_raw_http_garbage(server, data):
    SENT["count"] += 1
    with socket.create_connection(("127.0.0.1", int(server[1])), timeout=10) as s:
        try:
            s.sendall(data)
            answer = s.recv(4096).decode("latin-1")
        except ConnectionResetError:
            return  # refused outright: fine
        assert answer == "" or answer.split(" ")[1].startswith("4"), answer[:200]


BAD_BODIES = {
    "empty": (b"", "The document is empty"),
    "whitespace": (b"   \n", "The document is empty"),
    "truncated": (b'{"instances": [1, 2', "JSON Parse error"),
    "not-utf8": (b'{"signature_name": "classify_text", "instances": ["\xff\xfe bad"]}', "UTF-8"),
    "latin1": ('{"signature_name": "classify_text", "instances": ["caf\u00e9"]}'.encode("latin-1"), "UTF-8"),
    "utf16": ('{"instances": [1]}'.encode("utf-16"), "JSON Parse error"),
    "bom": (b"\xef\xbb\xbf" + b'{"instances": [1]}', "JSON Parse error"),
    "lone-surrogate": (b'{"signature_name": "classify_text", "instances": ["\\ud800"]}', "UTF-8"),
    "deep": (b"[" * 100000 + b"]" * 100000, None),
    "deep-in-object": (b'{"instances": ' + b"[" * 50000 + b"]" * 50000 + b"}", None),
    "top-array": (b"[1, 2, 3]", "Is not object"),
    "top-string": (b'"instances"', "Is not object"),
    "both": (json.dumps({"instances": [], "inputs": []}).encode(), "expecting only one of 'inputs' or 'instances'"),
    "neither": (b"{}", "Missing 'inputs' or 'instances' key"),
    "instances-object": (b'{"instances": {"input_ids": [1]}}', "Expecting 'instances' to be an list/array"),
    "instances-empty": (b'{"instances": []}', "No values in 'instances' array"),
    "signature-int": (b'{"signature_name": 5, "instances": [1]}', "'signature_name' key must be a string value."),
    "signature-unknown": (b'{"signature_name": "nope", "instances": [1]}',
                          'Serving signature name: "nope" not found in signature def'),
    "huge-int": (b'{"inputs": {"input_ids": [[' + b"9" * 5000 + b"]]}}", "JSON Parse error"),
    "big-int": (json.dumps({"inputs": {**valid_columns(1), "input_ids": [[2 ** 40] * TINY_N]}}).encode(),
                "out of range for type: int32"),
    "nan-id": (json.dumps({"inputs": {**valid_columns(1), "input_ids": [[float("nan")] * TINY_N]}}).encode(),
               "is not of expected type: int32"),
    "inf-text": (b'{"signature_name": "classify_text", "instances": [Infinity]}', "not of expected type: string"),
    "float-id": (json.dumps({"inputs": {**valid_columns(1), "input_ids": [[2.0] * TINY_N]}}).encode(),
                 "is not of expected type: int32"),
    "bool-mask": (json.dumps({"inputs": {**valid_columns(1), "attention_mask": [[True] * TINY_N]}}).encode(),
                  "is not of expected type: int32"),
    "long-sequence": (json.dumps({"inputs": {k: [v[0] * 2] for k, v in valid_columns(1).items()}}).encode(),
                      "expects [-1, 16]"),
    "vocab": (json.dumps({"inputs": {**valid_columns(1), "input_ids": [[2] + [120] * (TINY_N - 1)]}}).encode(),
              "vocabulary has 120 tokens"),
    "negative-id": (json.dumps({"inputs": {**valid_columns(1), "input_ids": [[-1] * TINY_N]}}).encode(),
                    "is not in [0, 120)"),
    "mask-2": (json.dumps({"inputs": {**valid_columns(1), "attention_mask": [[2] * TINY_N]}}).encode(),
               "is not in [0, 2)"),
    "segment-negative": (json.dumps({"inputs": {**valid_columns(1), "token_type_ids": [[-3] * TINY_N]}}).encode(),
                         "token_type_ids[0,0] = -3"),
    "segment-7": (json.dumps({"inputs": {**valid_columns(1), "token_type_ids": [[7] * TINY_N]}}).encode(),
                  "not in [0, 2)"),
    "task-too-big": (json.dumps({"inputs": {k: v * (MAX_BATCH + 1) for k, v in valid_columns(1).items()}}).encode(),
                     f"larger than maximum input batch size {MAX_BATCH}"),
    "empty-columns": (json.dumps({"inputs": {k: [] for k in valid_columns(1)}}).encode(), None),
    "bad-b64": (b'{"signature_name": "classify_text", "instances": [{"b64": "!!!"}]}', "Unable to base64 decode"),
    "b64-number": (b'{"signature_name": "classify_text", "instances": [{"b64": 12}]}', "base64"),
    "missing-input": (json.dumps({"inputs": {"input_ids": [[2] * TINY_N]}}).encode(), "Missing named input"),
    "plain-rows": (json.dumps({"instances": [[2] * TINY_N]}).encode(), "expecting list of objects"),
}


@pytest.mark.parametrize("name", sorted(BAD_BODIES))
def test_bad_bodies(raw, name):
    body, message = BAD_BODIES[name]
    expect_error(raw, body, contains=message)


BAD_URLS = [
    ("GET", "/v1/models/tiny:predict", 400, "Malformed request: GET /v1/models/tiny:predict"),
    ("POST", "/v1/foo", 400, "Malformed request"),
    ("POST", "/v1/models/tiny/version/50:predict", 400, "Malformed request"),
    ("GET", "/v1/models/tiny/versions/HELLO", 400, "Malformed request"),
    ("DELETE", "/v1/models/tiny", 400, "Malformed request"),
    ("GET", "/v1/models", 400, "Missing model name in request."),
    ("POST", "/v1/models/tiny/versions/99999999999999999999:predict", 400, "Failed to convert version"),
    ("POST", "/v1/models/tiny/labels/stable:predict", 400, "Unrecognized servable version label: stable"),
    ("POST", "/v1/models/tiny:classify", 400, "use :predict"),
    ("POST", "/v1/models/nope:predict", 404, "Servable not found for request: Latest(nope)"),
    ("POST", "/v1/models/tiny/versions/7:predict", 404, "Servable not found for request: Specific(tiny, 7)"),
    ("GET", "/v1/models/nope", 404, "Servable not found"),
    ("GET", "/v1/models/tiny/versions/7", 404, "Could not find version 7 of model tiny"),
    ("GET", "/v1/models/tiny/versions/7/metadata", 404, "Specific(tiny, 7)"),
    ("GET", "/v2/models/tiny", 404, "Not found"),
    ("POST", "/", 404, "Not found"),
]


@pytest.mark.parametrize("method,path,status,message", BAD_URLS, ids=[f"{m} {p}" for m, p, _, _ in BAD_URLS])
def test_bad_urls(raw, method, path, status, message):
    body = json.dumps({"instances": valid_rows(1)}).encode() if method == "POST" else None
    expect_error(raw, body, path=path, method=method, status=status, contains=message)


def test_non_utf8_b64_text_is_not_a_server_error(raw):
    body = {"signature_name": "classify_text", "instances": [{"b64": base64.b64encode(b"\xff\xfe\x00ok").decode()}]}
    status, data, _ = raw.send("POST", "/v1/models/tiny:predict", json.dumps(body).encode())
    assert status in (200, 400), data[:200]


# === Afterwards ===

def test_server_still_correct_after_the_abuse(server, models, raw):
    state, port = server
    if SENT["count"]:  # the whole file ran, not a selection
        assert SENT["count"] >= 200, f"only {SENT['count']} hostile requests were sent"
    direct = rest.Direct(models / "tiny" / "1")
    inputs = random_inputs(3, TINY_N, seed=5)
    client = rest.client_for(f"http://127.0.0.1:{port}", "tiny")
    rest.assert_same_answer(client.predict(inputs={k: v.tolist() for k, v in inputs.items()}),
                            direct.answer("serving_default", inputs, "columnar"), atol=1e-5)
    texts = {"text": np.array(rest.TEXTS, dtype=object)}
    rest.assert_same_answer(client.predict(instances=rest.TEXTS, signature_name="classify_text"),
                            direct.answer("classify_text", texts, "row"), atol=1e-5)
    responses = state.stats()["responses"]
    assert "500" not in responses, responses
    assert all(int(code) < 500 for code in responses if code != "504"), responses
    assert responses.get("504", 0) <= 1, responses  # only the deliberately slow request
    threads = [t for t in threading.enumerate() if t.name.startswith(("predict", "batch"))]
    assert len(threads) <= 16
