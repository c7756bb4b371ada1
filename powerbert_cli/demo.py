"""`powerbert demo`: the whole product on the quick preset, one command.

1. `powerbert train --preset quick` (fine-tune, search, re-train; resumes if interrupted);
2. `powerbert export` of the re-trained model into `<out>/models/<task>/<version>`;
3. `powerbert serve` on a free loopback port, one raw-text request to `classify_text` through
   TF Serving's REST API, and the server stopped;
4. `powerbert bench --quick`, whose last line is the speed-up against the padded baseline.
"""

import os
import socket
import subprocess
import sys
import time

DEMO_SENTENCE = "a gripping , funny and moving film ."


def add_demo_parser(subparsers):
    import argparse

    parser = subparsers.add_parser(
        "demo", help="quick pipeline, export, serve one request, quick benchmark (about 10 min)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="sst2", help="task (default: %(default)s)")
    parser.add_argument("--init", default="minilm-l6", help="pretrained encoder (default: %(default)s)")
    parser.add_argument("--out", default="runs/demo-sst2", help="run directory (default: %(default)s)")
    parser.add_argument("--data-dir", default=None, help="directory holding glue/ (default: $POWERBERT_DATA_DIR)")
    return parser


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve_one_request(base, model_name, sentence, timeout=180):
    """Start `powerbert serve` on `base`, classify `sentence` over REST, stop the server."""
    from serving.client import PredictClient

    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "powerbert_cli", "serve", "--model_name", model_name, "--model_base_path", base,
         "--rest_api_port", str(port), "--port", "0", "--log_level", "warning"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        client = PredictClient("127.0.0.1", port, model_name, timeout=30)
        deadline = time.monotonic() + timeout
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"the server stopped: {server.stderr.read().decode()[-2000:]}")
            try:
                if any(v["state"] == "AVAILABLE" for v in client.status()["model_version_status"]):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not serve {base} within {timeout} s")
            time.sleep(0.5)
        return port, client.predict(instances=[{"text": sentence}], signature_name="classify_text")
    finally:
        server.terminate()
        server.wait(timeout=30)


def demo_main(args):
    from benchmarks.cli import add_bench_parser, bench_main
    from powerbert_cli.export_run import export_run
    from training.config import resolve_config
    from training.pipeline import Pipeline, format_summary

    print("== 1/4 train (quick preset): fine-tune, search, re-train", flush=True)
    summary = Pipeline(resolve_config(args.task, "quick", init=args.init), args.out, data_dir=args.data_dir).run()
    print(format_summary(summary), flush=True)

    print("\n== 2/4 export (TF Serving layout)", flush=True)
    base = os.path.join(args.out, "models", args.task)
    version = export_run(args.out, base)
    print(f"exported {version}", flush=True)

    print("\n== 3/4 serve: one raw-text request to classify_text over TF Serving's REST API", flush=True)
    port, answer = _serve_one_request(base, args.task, DEMO_SENTENCE)
    prediction = answer["predictions"][0]
    print(f"POST http://127.0.0.1:{port}/v1/models/{args.task}:predict "
          f'{{"signature_name": "classify_text", "instances": [{{"text": "{DEMO_SENTENCE}"}}]}}', flush=True)
    print(f"-> label_name {prediction['label_name']!r}, probabilities "
          f"{[round(p, 4) for p in prediction['probabilities']]}", flush=True)

    print("\n== 4/4 quick benchmark", flush=True)
    import argparse

    bench = add_bench_parser(argparse.ArgumentParser().add_subparsers())
    bench_main(bench.parse_args(["--run", args.out, "--quick", "--out", os.path.join(args.out, "bench-results")]
                                + (["--data-dir", args.data_dir] if args.data_dir else [])))
    return 0
