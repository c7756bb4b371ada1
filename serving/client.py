"""`PredictClient`: TF Serving's REST API from Python, standard library only.

Speaks exactly TF Serving's protocol, so it works unchanged against `powerbert serve` or a real
`tensorflow_model_server --rest_api_port=...`:

    client = PredictClient("127.0.0.1", 8501, "sst2")
    client.predict(instances=[{"text": "a gripping film"}], signature_name="classify_text")
    # -> {"predictions": [{"label": 1, "label_name": "positive", "logits": [...], ...}]}

Each thread keeps one keep-alive connection. numpy arrays and scalars are sent as nested lists,
`bytes` as `{"b64": ...}`.
"""

import base64
import http.client
import json
import threading
from urllib.parse import quote


class ErrorResponse(Exception):
    """A non-2xx answer: `status` (HTTP code) and `message` (the server's `error`)."""

    def __init__(self, status, message):
        super().__init__(f"HTTP {status}: {message}")
        self.status, self.message = status, message


class PredictClient:
    """Client of one model on a TF Serving REST endpoint.

    Args:
        host, port: the REST endpoint (`--rest_api_port` of TF Serving and of `powerbert serve`).
        model_name: the model's name in the URLs.
        timeout: seconds per request.
    """

    def __init__(self, host, port, model_name, timeout=60.0):
        self.host, self.port, self.model_name, self.timeout = host, int(port), model_name, timeout
        self._local = threading.local()

    def _model_path(self, version=None):
        path = f"/v1/models/{quote(self.model_name, safe='')}"
        return path if version is None else f"{path}/versions/{int(version)}"

    def predict(self, instances=None, inputs=None, signature_name=None, version=None):
        """POST `...:predict`; returns the decoded answer (`{"predictions": ...}` or `{"outputs": ...}`).

        Pass exactly one of `instances` (row format) or `inputs` (columnar format).
        """
        if (instances is None) == (inputs is None):
            raise ValueError("pass exactly one of instances= or inputs=")
        body = {"instances": instances} if instances is not None else {"inputs": inputs}
        if signature_name is not None:
            body["signature_name"] = signature_name
        return self.request("POST", self._model_path(version) + ":predict", body)

    def status(self, version=None):
        """GET the model status: `{"model_version_status": [...]}`."""
        return self.request("GET", self._model_path(version))

    def metadata(self, version=None):
        """GET the signature defs: `{"model_spec": ..., "metadata": {"signature_def": ...}}`."""
        return self.request("GET", self._model_path(version) + "/metadata")

    def request(self, method, path, body=None):
        """One JSON request; raises `ErrorResponse` on a non-2xx answer."""
        data = None if body is None else json.dumps(body, default=_to_json).encode("utf-8")
        status, raw = self._send(method, path, data)
        try:
            answer = json.loads(raw.decode("utf-8")) if raw else {}
        except ValueError:
            answer = {"error": raw.decode("utf-8", "replace")}
        if not 200 <= status < 300:
            message = answer.get("error", "") if isinstance(answer, dict) else str(answer)
            raise ErrorResponse(status, message)
        return answer

    def close(self):
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None

    def _send(self, method, path, data):
        headers = {"Content-Type": "application/json"} if data is not None else {}
        for attempt in (0, 1):
            connection = getattr(self._local, "connection", None)
            fresh = connection is None
            if fresh:
                connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
                self._local.connection = connection
            try:
                connection.request(method, path, body=data, headers=headers)
                response = connection.getresponse()
                raw = response.read()
                if response.getheader("connection", "").lower() == "close":
                    self.close()
                return response.status, raw
            except (ConnectionError, http.client.RemoteDisconnected, http.client.BadStatusLine):
                self.close()
                if fresh or attempt:  # a new connection failed: the server is really unreachable
                    raise
            except Exception:
                self.close()
                raise
        raise AssertionError("unreachable")


def _to_json(value):
    """json.dumps `default`: numpy arrays / scalars -> lists / numbers, bytes -> {"b64": ...}."""
    if isinstance(value, (bytes, bytearray)):
        return {"b64": base64.b64encode(bytes(value)).decode("ascii")}
    if hasattr(value, "tolist"):
        listed = value.tolist()
        return _decode_nested_bytes(listed)
    raise TypeError(f"cannot send {type(value).__name__} as JSON")


def _decode_nested_bytes(value):
    if isinstance(value, list):
        return [_decode_nested_bytes(v) for v in value]
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return {"b64": base64.b64encode(value).decode("ascii")}
    return value
