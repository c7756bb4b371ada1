"""TF-Serving-compatible REST server (Starlette + uvicorn) and `powerbert serve`, which also opens
TF Serving's gRPC API (`serving.grpc_server`) in the same process, on TF Serving's ports: gRPC on
`--port` (8500), REST on `--rest_api_port` (8501); 0 turns either off.

Routes (TF Serving's `api_rest.md`; `{v}` is `versions/N` or `labels/LABEL`):
- `POST /v1/models/{name}[/{v}]:predict`: `{"instances"|"inputs": ..., "signature_name"?}`;
- `GET /v1/models/{name}[/{v}]`: model status;
- `GET /v1/models/{name}[/{v}]/metadata`: signature defs;
- `GET /monitoring/prometheus/metrics` (or the `path` of `--monitoring_config_file`): Prometheus
  metrics, only with that flag (`serving.metrics`);
- `GET /monitoring/stats` (ours, not TF Serving's): TensorFlow calls, batches, responses by status,
  the model config file's state.

The models are `--model_name`/`--model_base_path`, or TF Serving's `--model_config_file`
(`serving.model_config`, `serving.model_manager`), which loads before the port opens.

Every answer is JSON; errors are `{"error": message}` with TF Serving's status codes. The body is
read with a size limit (413) and a deadline (408), parsed and validated against the signature
before TensorFlow runs, and inference runs on worker threads (optionally batched) so the event
loop keeps answering.
"""

import argparse
import asyncio
import contextlib
import logging
import os
import sys
import threading
import time

from serving.batching import BatchingParameters
from serving.config_protos import BATCHING_FIELDS, read_batching_parameters
from serving.metrics import prometheus_path
from serving.options import ServingOptions

log = logging.getLogger("serving")


def build_app(models, options=None):
    """The Starlette app serving `models` ({name: base path}), or the models of
    `options.model_config_file`; models load at startup (or before, by `app.state.server.start()`),
    and the gRPC API opens with them when `options.grpc_port` is set (and closes at shutdown).

    `app.state.server` is the `ModelServer` (stats, stores, scheduler, metrics, `grpc.port`).

    Raises:
        ConfigError: `options.model_config_file` cannot be read or is refused.
    """
    from starlette.applications import Starlette  # here, so that CLI parsing stays light
    from starlette.routing import Route

    from serving.model_server import ModelServer

    server = ModelServer(models, options)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await asyncio.get_running_loop().run_in_executor(None, server.start)
        try:
            yield
        finally:
            await asyncio.get_running_loop().run_in_executor(None, server.stop)

    all_methods = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]
    routes = [Route("/v1/{rest:path}", server.handle_v1, methods=all_methods),
              Route("/v1", server.handle_v1, methods=all_methods),
              Route("/monitoring/stats", server.handle_stats, methods=["GET"])]
    if server.metrics is not None:
        routes.append(Route(server.options.prometheus_path, server.handle_prometheus, methods=["GET"]))
    routes.append(Route("/{rest:path}", server.handle_other, methods=all_methods))
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.server = server
    return app


class ServerThread:
    """Runs an app with uvicorn on a daemon thread (tests, notebooks): `with ServerThread(app) as url:`.

    `port=0` picks a free port; `url` is `http://host:port`.
    """

    def __init__(self, app, host="127.0.0.1", port=0, **uvicorn_kwargs):
        import socket

        import uvicorn

        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self.host, self.port = self._socket.getsockname()[:2]
        self.url = f"http://{self.host}:{self.port}"
        config = uvicorn.Config(app, log_level=uvicorn_kwargs.pop("log_level", "warning"), **uvicorn_kwargs)
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self._socket]},
                                        name="uvicorn", daemon=True)

    def start(self, timeout=120):
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start (see the log)")
            time.sleep(0.05)
        return self.url

    def stop(self, timeout=30):
        self.server.should_exit = True
        self._thread.join(timeout=timeout)
        self._socket.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


# === Command line ===

def add_serve_parser(subparsers):
    """Adds `serve` to an argparse sub-parsers object; returns the new parser."""
    parser = subparsers.add_parser(
        "serve", help="serve exported SavedModels over TF Serving's REST and gRPC APIs",
        description="Serve the highest version under --model_base_path, or the models of a TF Serving "
                    "--model_config_file, with TF Serving's REST API (predict, status, metadata) and gRPC "
                    "API (Predict, GetModelMetadata, GetModelStatus), picking up new versions without "
                    "restart.")
    parser.add_argument("--model_name", default="default", help="model name in the URLs (default: %(default)s)")
    parser.add_argument("--model_base_path", help="directory of numeric version dirs")
    parser.add_argument("--model_config_file", default=None,
                        help="TF Serving ModelServerConfig text proto: several models, version policies "
                             "and labels; --model_name and --model_base_path are then ignored")
    parser.add_argument("--model_config_file_poll_wait_seconds", type=float, default=0,
                        help="seconds between reads of --model_config_file; 0 reads it once (default: %(default)s)")
    parser.add_argument("--allow_version_labels_for_unavailable_models", action="store_true",
                        help="let a new version label point at a version not loaded yet")
    parser.add_argument("--monitoring_config_file", default=None,
                        help="TF Serving MonitoringConfig text proto; prometheus_config { enable: true } "
                             "serves Prometheus metrics at /monitoring/prometheus/metrics (or its path)")
    parser.add_argument("--port", type=int, default=8500,
                        help="gRPC port, as TF Serving's --port; 0: no gRPC (default: %(default)s)")
    parser.add_argument("--rest_api_port", type=int, default=8501,
                        help="REST port; 0: no REST (default: %(default)s)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address both ports bind; 0.0.0.0 for all (default: %(default)s)")
    parser.add_argument("--grpc_max_threads", type=int, default=4 * (os.cpu_count() or 1),
                        help="threads answering gRPC calls (inference runs on the inference or batch "
                             "threads) (default: %(default)s)")
    parser.add_argument("--grpc_max_message_size", type=int, default=10 * 1024 * 1024,
                        help="larger gRPC requests and answers get RESOURCE_EXHAUSTED (default: %(default)s; "
                             "TF Serving's is 2 GiB)")
    parser.add_argument("--grpc_channel_arguments", default="",
                        help="gRPC server arguments key=value,key=value, as TF Serving's flag; they override "
                             "the above (e.g. grpc.max_receive_message_length=...)")
    parser.add_argument("--file_system_poll_wait_seconds", type=float, default=1.0,
                        help="seconds between polls of the base path for new versions; 0 polls once "
                             "(default: %(default)s)")
    parser.add_argument("--enable_batching", action="store_true",
                        help="merge concurrent requests into one TensorFlow call")
    parser.add_argument("--batching_parameters_file", default=None,
                        help="TF Serving BatchingParameters text proto; flags below override it")
    defaults = BatchingParameters()
    parser.add_argument("--max_batch_size", type=int, default=None,
                        help=f"rows per batch (default: {defaults.max_batch_size})")
    parser.add_argument("--batch_timeout_micros", type=int, default=None,
                        help=f"wait this long for more requests (default: {defaults.batch_timeout_micros})")
    parser.add_argument("--max_enqueued_batches", type=int, default=None,
                        help=f"batches queued per model before 503 (default: {defaults.max_enqueued_batches})")
    parser.add_argument("--num_batch_threads", type=int, default=None,
                        help=f"threads running batches (default: {defaults.num_batch_threads}, the cores)")
    parser.add_argument("--rest_api_timeout_in_ms", type=int, default=30000,
                        help="deadline of a request, 504 after it (default: %(default)s)")
    parser.add_argument("--rest_api_num_threads", type=int, default=os.cpu_count() or 1,
                        help="inference threads when batching is off (default: %(default)s)")
    parser.add_argument("--max_body_bytes", type=int, default=10 * 1024 * 1024,
                        help="larger request bodies get 413 (default: %(default)s)")
    parser.add_argument("--log_level", default="info", choices=("debug", "info", "warning", "error"),
                        help="(default: %(default)s)")
    parser.add_argument("--access_log", action="store_true", help="log every request")
    parser.add_argument("--prefer_tflite_model", action="store_true",
                        help="serve a version's model.tflite (written by `powerbert export --tflite`) "
                             "instead of its SavedModel, as TF Serving's flag of that name; only "
                             "serving_default exists in TFLite form")
    return parser


def options_from_args(args):
    """`ServingOptions` of the parsed flags. Raises ConfigError (or ValueError) for a bad file or value."""
    batching = read_batching_parameters(args.batching_parameters_file) if args.batching_parameters_file else {}
    for name in BATCHING_FIELDS:
        if getattr(args, name) is not None:
            batching[name] = getattr(args, name)
    return ServingOptions(
        poll_seconds=args.file_system_poll_wait_seconds, enable_batching=args.enable_batching,
        batching=BatchingParameters(**batching), timeout_ms=args.rest_api_timeout_in_ms,
        num_request_threads=args.rest_api_num_threads, max_body_bytes=args.max_body_bytes,
        prefer_tflite_model=args.prefer_tflite_model, model_config_file=args.model_config_file,
        model_config_poll_seconds=args.model_config_file_poll_wait_seconds,
        allow_unavailable_labels=args.allow_version_labels_for_unavailable_models,
        prometheus_path=prometheus_path(args.monitoring_config_file) if args.monitoring_config_file else None,
        grpc_port=args.port or None, grpc_host=args.host, grpc_max_threads=args.grpc_max_threads,
        grpc_max_message_size=args.grpc_max_message_size, grpc_channel_arguments=args.grpc_channel_arguments)


def serve_main(args):
    """Loads the models, then serves until interrupted; returns the exit code (2: refused config or ports)."""
    import uvicorn

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.model_config_file is None and args.model_base_path is None:
        print("powerbert serve: give --model_base_path or --model_config_file", file=sys.stderr)
        return 2
    problem = _port_problem(args.port, args.rest_api_port)
    if problem:
        print(f"powerbert serve: {problem}", file=sys.stderr)
        return 2
    if args.model_config_file is not None and args.model_base_path is not None:
        log.warning("--model_config_file given: --model_name and --model_base_path are ignored")
    if args.model_config_file is None and not os.path.isdir(args.model_base_path):
        log.warning("base path %s does not exist (yet); polling it", args.model_base_path)
    try:
        options = options_from_args(args)
        app = build_app({args.model_name: args.model_base_path}, options)
    except (OSError, ValueError) as e:  # ConfigError is a ValueError
        print(f"powerbert serve: {e}", file=sys.stderr)
        return 2
    try:
        app.state.server.start()  # models first, as TF Serving: a refused config never opens a port
    except (OSError, ValueError) as e:  # a refused config, a busy gRPC port, bad channel arguments
        app.state.server.stop()
        print(f"powerbert serve: {e}", file=sys.stderr)
        return 2
    if args.rest_api_port:
        uvicorn.run(app, host=args.host, port=args.rest_api_port, log_level=args.log_level,
                    access_log=args.access_log)  # ends the gRPC API too, at its shutdown
    else:
        _wait_for_signal()
        app.state.server.stop()
    return 0


def _port_problem(grpc_port, rest_port):
    """Why `--port` and `--rest_api_port` cannot serve together, or None."""
    if not grpc_port and not rest_port:
        return "--port (gRPC) and --rest_api_port (REST) are both 0: nothing to serve"
    if grpc_port == rest_port:
        # TF Serving then serves gRPC alone, with an error in its log; refusing says it louder. Before
        # gRPC existed here, --port was the REST port, so this is also what an old command line gets.
        return (f"--port (gRPC) and --rest_api_port (REST) are both {grpc_port}; as in TF Serving, "
                "--port is the gRPC port: give the REST port as --rest_api_port")
    return None


def _wait_for_signal():
    """Blocks until SIGINT or SIGTERM (gRPC alone: no uvicorn to wait on them)."""
    import signal

    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        stop.wait()
    finally:  # the caller's handlers again (serve_main also runs inside other programs and tests)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m serving.rest_server")
    add_serve_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["serve"] + list(sys.argv[1:] if argv is None else argv))
    return serve_main(args)


if __name__ == "__main__":
    sys.exit(main())
