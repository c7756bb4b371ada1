"""`ModelServer`: the request handling behind the REST routes (TF Serving's `HttpRestApiHandler`),
and the models, inference threads, batch scheduler and metrics that the gRPC API
(`serving.grpc_server`, started and stopped with it) shares.

Predict: read the body with a size limit (413) and a deadline (408); parse and validate it against
the signature (400) on the event loop when small, on a worker thread when large; run TensorFlow on
the inference threads, or through the batch scheduler; answer within `timeout_ms` (504). Every
`/v1` answer is counted for the Prometheus metrics when they are on.
"""

import asyncio
import collections
import functools
import logging
import re
import time
from concurrent.futures import ThreadPoolExecutor

from starlette.requests import ClientDisconnect
from starlette.responses import Response

from serving.batching import BatchScheduler
from serving.servable import Servable
from serving.errors import (DEADLINE_EXCEEDED, NOT_FOUND, PAYLOAD_TOO_LARGE, REQUEST_TIMEOUT, UNAVAILABLE,
                            ServingError, describe_exception)
from serving.json_tensor import decode_request_tensors, dumps, encode_response, parse_json_object, \
    split_predict_request
from serving.metrics import CONTENT_TYPE, RequestLabels, ServingMetrics
from serving.model_manager import ModelManager
from serving.options import ServingOptions
from serving.signature_checks import batch_rows

log = logging.getLogger("serving")

_POST = re.compile(r"/v1/models/([^/:]+)(?:/versions/(\d+)|/labels/([^/:]+))?:(predict|classify|regress)")
_GET = re.compile(r"/v1/models(?:/([^/:]+)(?:/versions/(\d+)|/labels/([^/:]+))?(/metadata)?)?")
_INT64_MAX = 2 ** 63 - 1


class ModelServer:
    """The models, the batch scheduler, the inference threads and the metrics behind the routes,
    and `grpc`, the gRPC endpoint (`serving.grpc_server.GrpcServer`) once started, when
    `options.grpc_port` is set.

    Args:
        models: {name: base path}; ignored when `options.model_config_file` is set.
        options: `ServingOptions`.

    Raises:
        ConfigError: `options.model_config_file` cannot be read or is refused.
    """

    def __init__(self, models, options=None):
        self.options = options = options or ServingOptions()
        self.models = ModelManager(
            models, options.model_config_file, options.poll_seconds, options.model_config_poll_seconds,
            options.allow_unavailable_labels,
            loader=functools.partial(Servable, prefer_tflite=options.prefer_tflite_model))
        self.metrics, self.scheduler, on_batch = None, None, None
        if options.prometheus_path:
            self.metrics = ServingMetrics(
                (lambda: self.scheduler.queue_depths()) if options.enable_batching else None)
            on_batch = self.metrics.record_batch if options.enable_batching else None
        if options.enable_batching:
            self.scheduler = BatchScheduler(options.batching, on_batch)
        self.executor = ThreadPoolExecutor(options.num_request_threads, thread_name_prefix="predict")
        self.responses = collections.Counter()
        self.grpc = None

    @property
    def stores(self):
        return self.models.stores

    def start(self):
        """Loads the models, then opens the gRPC port if `options.grpc_port` is set (once).

        Raises:
            ConfigError: the model config's labels are refused.
            OSError: the gRPC port cannot be bound.
        """
        self.models.start()
        if self.options.grpc_port is not None and self.grpc is None:
            from serving.grpc_server import GrpcServer  # here, so that REST alone needs no grpcio

            self.grpc = GrpcServer(self).start()

    def stop(self):
        """Drains the gRPC calls in flight first, while the models and threads can still answer them."""
        if self.grpc is not None:
            self.grpc.stop()
        self.models.stop()
        if self.scheduler is not None:
            self.scheduler.stop()
        self.executor.shutdown(wait=False, cancel_futures=True)

    def stats(self):
        models = {}
        for name, store in self.stores.items():
            serving = store.serving
            models[name] = {"serving_version": serving.version if serving else None,
                            "available_versions": sorted(store.available_versions()),
                            "labels": self.models.labels.get(name, {}),
                            "tf_calls": store.stats.tf_calls, "examples": store.stats.examples}
        return {"models": models, "responses": dict(self.responses),
                "grpc_responses": dict(self.grpc.responses) if self.grpc else None,
                "batching": self.scheduler.stats() if self.scheduler else None,
                "model_config": self.models.config_status() if self.models.config_file else None}

    # === Routes ===

    async def handle_v1(self, request):
        started, call = time.perf_counter(), RequestLabels()
        try:
            payload = await self._dispatch(request, call)
            status, code = 200, "OK"
        except ServingError as e:
            payload, status, code = {"error": e.message}, e.status, e.code
        except Exception as e:  # a bug of ours: say so, without a traceback
            log.exception("internal error on %s %s", request.method, request.url.path)
            payload, status, code = {"error": f"Internal error: {describe_exception(e)}"}, 500, "INTERNAL"
        response = self._respond(payload, status)
        if self.metrics is not None:
            self.metrics.record_request(call.model, call.version, call.signature, call.api, code,
                                        time.perf_counter() - started)
        return response

    async def handle_stats(self, request):
        return self._respond(self.stats(), 200)

    async def handle_prometheus(self, request):
        return Response(self.metrics.exposition(), media_type=CONTENT_TYPE)

    async def handle_other(self, request):
        return self._respond({"error": f"Not found: {request.method} {request.url.path}"}, NOT_FOUND)

    def _respond(self, payload, status):
        self.responses[str(status)] += 1
        body = payload if isinstance(payload, bytes) else dumps(payload).encode("utf-8")
        return Response(body, status_code=status, media_type="application/json")

    async def _dispatch(self, request, call):
        path, method = request.url.path, request.method
        malformed = ServingError(f"Malformed request: {method} {path}"[:300])
        if method == "POST":
            match = _POST.fullmatch(path)
            if match is None:
                raise malformed
            name, version, label, verb = match.groups()
            call.api = verb
            if verb != "predict":  # TF Serving answers 400 too on models without such signatures
                raise ServingError(f"The {verb} API is not supported by this server; use :predict")
            return await self._predict(request, name, self._version(name, version, label, call), call)
        if method == "GET":
            match = _GET.fullmatch(path)
            if match is None:
                raise malformed
            name, version, label, metadata = match.groups()
            if name is None:
                raise ServingError("Missing model name in request.")
            call.api = "metadata" if metadata else "status"
            version = self._version(name, version, label, call)
            store = self.models.store(name, version)
            if metadata:
                servable = store.get(version)
                call.version = servable.version
                return servable.metadata()
            return store.status(version)
        raise malformed

    def _version(self, name, text, label, call):
        """The version a URL asks for (None: the latest), through the model's labels if by label."""
        too_big = text is not None and (len(text) > 19 or int(text) > _INT64_MAX)
        version = self.resolve_version(name, None if text is None or too_big else int(text), label, call)
        if too_big:  # after resolve_version, so that the metrics still name the model
            raise ServingError(f"Failed to convert version: {text[:40]} to numeric.")
        return version

    def resolve_version(self, name, version, label, call):
        """The version a request asks for (None: the latest): `version`, or what `label` names.

        Raises:
            ServingError: an unknown label (TF Serving's 400 / INVALID_ARGUMENT).
        """
        if name in self.stores:
            call.model = name  # only served names become metric labels
        if label is not None:
            version = self.models.version_for_label(name, label)
        elif version is None:
            return None
        if call.model and version in self.stores[name].available_versions():
            call.version = version
        return version

    def infer(self, name, servable, signature_name, arrays, rows):
        """A future of `servable`'s {output: numpy} for checked `arrays`: through the batch
        scheduler when `rows` says the request can join a batch, else on the inference threads.

        Raises:
            ServingError: the batch is too large (400) or the queue is full (503), or the server
                is shutting down (503).
        """
        if self.scheduler is not None and rows is not None:
            return self.scheduler.submit((name, servable.version, signature_name),
                                         lambda a: servable.run(signature_name, a), arrays, rows)
        try:
            return self.executor.submit(servable.run, signature_name, arrays)
        except RuntimeError:  # the executor is shut down
            raise ServingError("The server is shutting down", UNAVAILABLE)

    # === Predict ===

    async def _predict(self, request, name, version, call):
        body = await self._read_body(request)
        loop = asyncio.get_running_loop()
        timeout = self.options.timeout_ms / 1000

        async def answer():
            if len(body) <= self.options.inline_parse_bytes:
                prepared = self._prepare(body, name, version, call)
            else:
                prepared = await loop.run_in_executor(None, self._prepare, body, name, version, call)
            servable, signature, fmt, arrays, rows = prepared
            outputs = await asyncio.wrap_future(self.infer(name, servable, signature.name, arrays, rows))
            if (rows or 0) <= 256:
                return dumps(encode_response(outputs, fmt)).encode("utf-8")
            return await loop.run_in_executor(None, lambda: dumps(encode_response(outputs, fmt)).encode("utf-8"))

        try:
            return await asyncio.wait_for(answer(), timeout)
        except asyncio.TimeoutError:
            raise ServingError(f"Deadline exceeded: no answer within {self.options.timeout_ms} ms",
                               DEADLINE_EXCEEDED)

    def _prepare(self, body, name, version, call):
        """Parse and validate: (servable, signature, format, arrays, rows or None if not batchable)."""
        request = parse_json_object(body)
        signature_name, fmt, value = split_predict_request(request)
        servable = self.models.store(name, version).get(version)
        call.version = servable.version
        signature = servable.signature(signature_name)
        call.signature = signature.name
        arrays = decode_request_tensors(fmt, value, signature.inputs, servable.value_ranges)
        return servable, signature, fmt, arrays, batch_rows(arrays, signature.inputs)

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

