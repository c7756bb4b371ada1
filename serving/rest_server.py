"""TF-Serving-compatible REST server (Starlette + uvicorn): `powerbert serve`.

Routes (TF Serving's `api_rest.md`; `/labels/...` is parsed but no labels exist):
- `POST /v1/models/{name}[/versions/{v}]:predict`: `{"instances"|"inputs": ..., "signature_name"?}`;
- `GET /v1/models/{name}[/versions/{v}]`: model status;
- `GET /v1/models/{name}[/versions/{v}]/metadata`: signature defs;
- `GET /monitoring/stats` (ours, not TF Serving's): TensorFlow calls, batches, responses by status.

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
import re
import sys
import threading
import time

from serving.batching import BatchingParameters
from serving.options import ServingOptions

log = logging.getLogger("serving")


def build_app(models, options=None):
    """The Starlette app serving `models` ({name: base path}); models load at startup.

    `app.state.server` is the `ModelServer` (stats, stores, scheduler).
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
    app = Starlette(routes=[
        Route("/v1/{rest:path}", server.handle_v1, methods=all_methods),
        Route("/v1", server.handle_v1, methods=all_methods),
        Route("/monitoring/stats", server.handle_stats, methods=["GET"]),
        Route("/{rest:path}", server.handle_other, methods=all_methods),
    ], lifespan=lifespan)
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
        "serve", help="serve exported SavedModels over TF Serving's REST API",
        description="Serve the highest version under --model_base_path with TF Serving's REST API "
                    "(predict, status, metadata), picking up new versions without restart.")
    parser.add_argument("--model_name", default="default", help="model name in the URLs (default: %(default)s)")
    parser.add_argument("--model_base_path", required=True, help="directory of numeric version dirs")
    parser.add_argument("--port", "--rest_api_port", dest="port", type=int, default=8501,
                        help="REST port (default: %(default)s)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind; 0.0.0.0 for all (default: %(default)s)")
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


def read_batching_parameters(path):
    """{field: int} from a TF Serving `BatchingParameters` text proto (`field { value: N }`)."""
    with open(path) as f:
        text = re.sub(r"#.*", "", f.read())
    values = {}
    for name, value in re.findall(r"(\w+)\s*:?\s*\{\s*value\s*:\s*(\d+)\s*\}", text):
        values[name] = int(value)
    known = {"max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads"}
    for name in set(values) - known:
        log.warning("batching parameter %s is not supported; ignored", name)
    return {k: v for k, v in values.items() if k in known}


def options_from_args(args):
    batching = read_batching_parameters(args.batching_parameters_file) if args.batching_parameters_file else {}
    for name in ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads"):
        if getattr(args, name) is not None:
            batching[name] = getattr(args, name)
    return ServingOptions(
        poll_seconds=args.file_system_poll_wait_seconds, enable_batching=args.enable_batching,
        batching=BatchingParameters(**batching), timeout_ms=args.rest_api_timeout_in_ms,
        num_request_threads=args.rest_api_num_threads, max_body_bytes=args.max_body_bytes,
        prefer_tflite_model=args.prefer_tflite_model)


def serve_main(args):
    """Runs the server until interrupted; returns the exit code."""
    import uvicorn

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not os.path.isdir(args.model_base_path):
        log.warning("base path %s does not exist (yet); polling it", args.model_base_path)
    try:
        options = options_from_args(args)
    except (OSError, ValueError) as e:
        print(f"powerbert serve: {e}", file=sys.stderr)
        return 2
    app = build_app({args.model_name: args.model_base_path}, options)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=args.access_log)
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m serving.rest_server")
    add_serve_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["serve"] + list(sys.argv[1:] if argv is None else argv))
    return serve_main(args)


if __name__ == "__main__":
    sys.exit(main())
