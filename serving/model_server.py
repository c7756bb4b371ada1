"""`ModelServer`: the request handling behind the REST routes (TF Serving's `HttpRestApiHandler`).

Predict: read the body with a size limit (413) and a deadline (408); parse and validate it against
the signature (400) on the event loop when small, on a worker thread when large; run TensorFlow on
the inference threads, or through the batch scheduler; answer within `timeout_ms` (504).
"""

import asyncio
import collections
import functools
import logging
import re
from concurrent.futures import ThreadPoolExecutor

from starlette.requests import ClientDisconnect
from starlette.responses import Response

from serving.batching import BatchScheduler
from serving.servable import Servable
from serving.errors import (DEADLINE_EXCEEDED, NOT_FOUND, PAYLOAD_TOO_LARGE, REQUEST_TIMEOUT,
                            ServingError, describe_exception)
from serving.json_tensor import decode_request_tensors, dumps, encode_response, parse_json_object, \
    split_predict_request
from serving.model_store import ModelStore
from serving.options import ServingOptions

log = logging.getLogger("serving")

_POST = re.compile(r"/v1/models/([^/:]+)(?:/versions/(\d+)|/labels/([^/:]+))?:(predict|classify|regress)")
_GET = re.compile(r"/v1/models(?:/([^/:]+)(?:/versions/(\d+)|/labels/([^/:]+))?(/metadata)?)?")
_INT64_MAX = 2 ** 63 - 1


class ModelServer:
    """The models, the batch scheduler and the inference threads behind the routes."""

    def __init__(self, models, options=None):
        self.options = options or ServingOptions()
        loader = functools.partial(Servable, prefer_tflite=self.options.prefer_tflite_model)
        self.stores = {name: ModelStore(name, path, self.options.poll_seconds, loader=loader)
                       for name, path in models.items()}
        self.scheduler = BatchScheduler(self.options.batching) if self.options.enable_batching else None
        self.executor = ThreadPoolExecutor(self.options.num_request_threads, thread_name_prefix="predict")
        self.responses = collections.Counter()

    def start(self):
        for store in self.stores.values():
            store.start()

    def stop(self):
        for store in self.stores.values():
            store.stop()
        if self.scheduler is not None:
            self.scheduler.stop()
        self.executor.shutdown(wait=False, cancel_futures=True)

    def stats(self):
        models = {}
        for name, store in self.stores.items():
            serving = store.serving
            models[name] = {"serving_version": serving.version if serving else None,
                            "tf_calls": store.stats.tf_calls, "examples": store.stats.examples}
        return {"models": models, "responses": dict(self.responses),
                "batching": self.scheduler.stats() if self.scheduler else None}

    # === Routes ===

    async def handle_v1(self, request):
        try:
            payload = await self._dispatch(request)
            status = 200
        except ServingError as e:
            payload, status = {"error": e.message}, e.status
        except Exception as e:  # a bug of ours: say so, without a traceback
            log.exception("internal error on %s %s", request.method, request.url.path)
            payload, status = {"error": f"Internal error: {describe_exception(e)}"}, 500
        return self._respond(payload, status)

    async def handle_stats(self, request):
        return self._respond(self.stats(), 200)

    async def handle_other(self, request):
        return self._respond({"error": f"Not found: {request.method} {request.url.path}"}, NOT_FOUND)

    def _respond(self, payload, status):
        self.responses[str(status)] += 1
        body = payload if isinstance(payload, bytes) else dumps(payload).encode("utf-8")
        return Response(body, status_code=status, media_type="application/json")

    async def _dispatch(self, request):
        path, method = request.url.path, request.method
        malformed = ServingError(f"Malformed request: {method} {path}"[:300])
        if method == "POST":
            match = _POST.fullmatch(path)
            if match is None:
                raise malformed
            name, version, label, verb = match.groups()
            if verb != "predict":  # TF Serving answers 400 too on models without such signatures
                raise ServingError(f"The {verb} API is not supported by this server; use :predict")
            return await self._predict(request, name, _version(version, label))
        if method == "GET":
            match = _GET.fullmatch(path)
            if match is None:
                raise malformed
            name, version, label, metadata = match.groups()
            if name is None:
                raise ServingError("Missing model name in request.")
            version = _version(version, label)
            store = self._store(name, version)
            if metadata:
                return store.get(version).metadata()
            return store.status(version)
        raise malformed

    def _store(self, name, version=None):
        if name not in self.stores:
            spec = f"Specific({name}, {version})" if version is not None else f"Latest({name})"
            raise ServingError(f"Servable not found for request: {spec}", NOT_FOUND)
        return self.stores[name]

    # === Predict ===

    async def _predict(self, request, name, version):
        body = await self._read_body(request)
        loop = asyncio.get_running_loop()
        timeout = self.options.timeout_ms / 1000

        async def answer():
            if len(body) <= self.options.inline_parse_bytes:
                prepared = self._prepare(body, name, version)
            else:
                prepared = await loop.run_in_executor(None, self._prepare, body, name, version)
            servable, signature, fmt, arrays, rows = prepared
            if self.scheduler is not None and rows is not None:
                key = (name, servable.version, signature.name)
                future = self.scheduler.submit(
                    key, lambda a, s=servable, n=signature.name: s.run(n, a), arrays, rows)
                outputs = await asyncio.wrap_future(future)
            else:
                outputs = await loop.run_in_executor(self.executor, servable.run, signature.name, arrays)
            if (rows or 0) <= 256:
                return dumps(encode_response(outputs, fmt)).encode("utf-8")
            return await loop.run_in_executor(None, lambda: dumps(encode_response(outputs, fmt)).encode("utf-8"))

        try:
            return await asyncio.wait_for(answer(), timeout)
        except asyncio.TimeoutError:
            raise ServingError(f"Deadline exceeded: no answer within {self.options.timeout_ms} ms",
                               DEADLINE_EXCEEDED)

    def _prepare(self, body, name, version):
        """Parse and validate: (servable, signature, format, arrays, rows or None if not batchable)."""
        request = parse_json_object(body)
        signature_name, fmt, value = split_predict_request(request)
        servable = self._store(name, version).get(version)
        signature = servable.signature(signature_name)
        arrays = decode_request_tensors(fmt, value, signature.inputs, servable.value_ranges)
        batch_major = all(spec.shape.rank and spec.shape[0] is None for spec in signature.inputs.values())
        sizes = {array.shape[0] if array.ndim else None for array in arrays.values()}
        rows = sizes.pop() if batch_major and len(sizes) == 1 and None not in sizes else None
        return servable, signature, fmt, arrays, rows

    async def _read_body(self, request):
        limit = self.options.max_body_bytes
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            raise ServingError(f"Request body of {length} bytes is larger than the limit of {limit} bytes",
                               PAYLOAD_TOO_LARGE)
        chunks, total = [], 0

        async def read():
            nonlocal total
            async for chunk in request.stream():
                total += len(chunk)
                if total > limit:
                    raise ServingError(f"Request body is larger than the limit of {limit} bytes",
                                       PAYLOAD_TOO_LARGE)
                chunks.append(chunk)

        try:
            await asyncio.wait_for(read(), self.options.timeout_ms / 1000)
        except asyncio.TimeoutError:
            raise ServingError(f"Request body not received within {self.options.timeout_ms} ms",
                               REQUEST_TIMEOUT)
        except ClientDisconnect:
            raise ServingError("Client disconnected while sending the request body")
        return b"".join(chunks)


def _version(text, label):
    if label is not None:
        raise ServingError(f"Unrecognized servable version label: {label}"[:300])
    if text is None:
        return None
    if len(text) > 19 or int(text) > _INT64_MAX:
        raise ServingError(f"Failed to convert version: {text[:40]} to numeric.")
    return int(text)
