"""TF Serving's gRPC API on `--port`: `tensorflow.serving.PredictionService` (`Predict`,
`GetModelMetadata`) and `tensorflow.serving.ModelService` (`GetModelStatus`), registered with TF
Serving's own generated servicers (`tensorflow-serving-api`), so its stock client stubs work.

It runs in the REST server's process, on the same `ModelServer`: the same models, versions, labels
and version policies, the same inference threads and batch scheduler (gRPC and REST requests join
the same batches), the same Prometheus metrics (`entrypoint="GRPC"`, `API` the RPC's name) and the
same input rules (`serving.signature_checks`, through `serving.tensor_proto`). `ModelServer.start`
opens the port after the models have loaded and `ModelServer.stop` closes it first.

Errors are `ServingError`s; their code name is the gRPC status, as TF Serving's `ToGRPCStatus`
passes its `absl::Status` code on (a message over 1024 characters is cut and ends `...TRUNCATED`).
Where TF Serving's gRPC and REST APIs answer differently, this follows its gRPC code
(`predict_util.cc`, `get_model_metadata_impl.cc`, `get_model_status_impl.cc`): an unknown
signature is FAILED_PRECONDITION `Serving signature key "NAME" not found.` (400 over REST), and a
request without `model_spec` is INVALID_ARGUMENT `Missing ModelSpec`.

A request or answer larger than `--grpc_max_message_size` is refused by gRPC itself with
RESOURCE_EXHAUSTED before any handler runs. The deadline is the client's: a call past it, or
cancelled, while its inference waits in a queue is dropped before TensorFlow runs. `Classify`,
`Regress`, `MultiInference` and `HandleReloadConfigRequest` answer UNIMPLEMENTED.
"""

import collections
import concurrent.futures
import logging
import threading
import time

import grpc
from google.protobuf import json_format
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2, model_service_pb2_grpc,
                                     predict_pb2, prediction_service_pb2_grpc)

from serving.errors import DEADLINE_EXCEEDED, ServingError, describe_exception
from serving.metrics import RequestLabels
from serving.savedmodel import SERVING_SIGNATURE
from serving.signature_checks import batch_rows
from serving.tensor_proto import decode_inputs, to_tensor_proto

log = logging.getLogger("serving")

# Calls in flight get this long to finish at shutdown; they are bounded by their clients' deadlines,
# not by ours, so some bound is needed for the process to end.
SHUTDOWN_GRACE_SECONDS = 10
_MESSAGE_LIMIT = 1024  # TF Serving's ToGRPCStatus kErrorMessageLimit
_SIGNATURE_DEF = "signature_def"  # GetModelMetadataImpl::kSignatureDef, the one metadata field


class GrpcServer:
    """The gRPC endpoint of a `ModelServer`: `GrpcServer(model_server).start()`, then `.port`.

    `responses` counts answers by status code name, for `/monitoring/stats`.
    """

    def __init__(self, model_server):
        self.model_server = model_server
        self.responses = collections.Counter()
        self.port = None
        self._lock = threading.Lock()
        options = model_server.options
        self._server = grpc.server(
            concurrent.futures.ThreadPoolExecutor(options.grpc_max_threads, thread_name_prefix="grpc"),
            options=channel_options(options))
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(_PredictionService(self), self._server)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(_ModelService(self), self._server)

    def start(self):
        """Listens on `options.grpc_host:grpc_port` (0: a free port). Raises OSError if it cannot."""
        options = self.model_server.options
        host = options.grpc_host
        address = f"[{host}]:{options.grpc_port}" if ":" in host else f"{host}:{options.grpc_port}"
        try:
            self.port = self._server.add_insecure_port(address)
        except RuntimeError as e:
            raise OSError(f"cannot listen for gRPC on {address}: {e}") from None
        self._server.start()
        log.info("gRPC API at %s:%d", host, self.port)
        return self

    def stop(self, grace=SHUTDOWN_GRACE_SECONDS):
        """Refuses new calls at once, waits up to `grace` seconds for those in flight."""
        self._server.stop(grace).wait()

    # === Handlers ===

    def answer(self, api, handler, request, context):
        """`handler(request, context, labels)`'s response, or the call aborted with its error's code;
        counted in the metrics either way."""
        started, labels = time.perf_counter(), RequestLabels()
        labels.api = api
        try:
            response, code = handler(request, context, labels), "OK"
        except ServingError as e:
            response, code, message = None, e.code, e.message
        except Exception as e:  # a bug of ours: say so, without a traceback
            log.exception("internal error in %s", api)
            response, code, message = None, "INTERNAL", f"Internal error: {describe_exception(e)}"
        with self._lock:
            self.responses[code] += 1
        metrics = self.model_server.metrics
        if metrics is not None:
            metrics.record_request(labels.model, labels.version, labels.signature, api, code,
                                   time.perf_counter() - started, entrypoint="GRPC")
        if response is None:
            if len(message) > _MESSAGE_LIMIT:
                message = message[:_MESSAGE_LIMIT] + "...TRUNCATED"
            context.abort(grpc.StatusCode[code], message)
        return response

    def predict(self, request, context, labels):
        spec = request.model_spec
        servable = self._servable(spec, labels)
        name = spec.signature_name or SERVING_SIGNATURE
        signature = servable.signatures.get(name)
        if signature is None:
            raise ServingError(f'Serving signature key "{name}" not found.', code="FAILED_PRECONDITION")
        labels.signature = name
        aliases = _output_aliases(request.output_filter, signature)
        arrays = decode_inputs(request.inputs, signature.inputs, servable.value_ranges,
                               self.model_server.options.grpc_max_message_size)
        future = self.model_server.infer(spec.name, servable, name, arrays, batch_rows(arrays, signature.inputs))
        context.add_callback(future.cancel)  # a call that ends first drops its task if not started yet
        try:
            outputs = future.result(timeout=context.time_remaining())
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise ServingError("Deadline Exceeded", DEADLINE_EXCEEDED)
        except concurrent.futures.CancelledError:
            raise ServingError("Cancelled", code="CANCELLED")
        response = predict_pb2.PredictResponse()
        response.model_spec.name = spec.name
        response.model_spec.version.value = servable.version
        response.model_spec.signature_name = name
        for alias in aliases:
            response.outputs[alias].CopyFrom(to_tensor_proto(outputs[alias]))
        return response

    def metadata(self, request, context, labels):
        if not request.HasField("model_spec"):
            raise ServingError("Missing ModelSpec")
        if not request.metadata_field:
            raise ServingError("GetModelMetadataRequest must specify at least one metadata_field")
        for field in request.metadata_field:
            if field != _SIGNATURE_DEF:
                raise ServingError(f"Metadata field {field} is not supported")
        servable = self._servable(request.model_spec, labels)
        signature_defs = get_model_metadata_pb2.SignatureDefMap()
        for name, signature_def in servable.signature_defs.items():  # the REST metadata, as protos
            json_format.ParseDict(signature_def, signature_defs.signature_def[name])
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = servable.model_name
        response.model_spec.version.value = servable.version
        response.metadata[_SIGNATURE_DEF].Pack(signature_defs)
        return response

    def status(self, request, context, labels):
        if not request.HasField("model_spec"):
            raise ServingError("Missing ModelSpec")
        spec = request.model_spec
        version = self.model_server.resolve_version(spec.name, *_version_choice(spec), labels)
        status = self.model_server.models.store(spec.name, version).status(version)
        return json_format.ParseDict(status, get_model_status_pb2.GetModelStatusResponse())

    def _servable(self, spec, labels):
        """The servable a `ModelSpec` names: its version or version label, else the latest."""
        version = self.model_server.resolve_version(spec.name, *_version_choice(spec), labels)
        servable = self.model_server.models.store(spec.name, version).get(version)
        labels.version = servable.version
        return servable


class _PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, server):
        self._server = server

    def Predict(self, request, context):
        return self._server.answer("Predict", self._server.predict, request, context)

    def GetModelMetadata(self, request, context):
        return self._server.answer("GetModelMetadata", self._server.metadata, request, context)


class _ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, server):
        self._server = server

    def GetModelStatus(self, request, context):
        return self._server.answer("GetModelStatus", self._server.status, request, context)


# === Helpers ===

def channel_options(options):
    """grpc.server options: the message size limit both ways, then `--grpc_channel_arguments`
    ("key=value,...", integers passed as integers, as TF Serving parses them), which override it.

    Raises:
        ValueError: an argument is not key=value.
    """
    limit = options.grpc_max_message_size
    # so_reuseport off: a second server on a busy port must fail, not silently take half its calls.
    arguments = {"grpc.max_receive_message_length": limit, "grpc.max_send_message_length": limit,
                 "grpc.so_reuseport": 0}
    for item in filter(None, options.grpc_channel_arguments.split(",")):
        key, equals, value = item.partition("=")
        if not equals or not key:
            raise ValueError(f"--grpc_channel_arguments: {item!r} is not key=value")
        try:
            arguments[key] = int(value)
        except ValueError:
            arguments[key] = value
    return list(arguments.items())


def _version_choice(spec):
    """(version or None, version label or None) of a `ModelSpec`."""
    choice = spec.WhichOneof("version_choice")
    return (spec.version.value if choice == "version" else None,
            spec.version_label if choice == "version_label" else None)


def _output_aliases(output_filter, signature):
    """The outputs to answer: `output_filter`'s, checked as TF Serving does, or all of them."""
    seen = []
    for alias in output_filter:
        if alias not in signature.outputs:
            raise ServingError(f"output tensor alias not found in signature: {alias} Outputs expected to be "
                               f"in the set {{{','.join(sorted(signature.outputs))}}}.")
        if alias in seen:
            raise ServingError(f"duplicate output tensor alias: {alias}")
        seen.append(alias)
    return seen or sorted(signature.outputs)
