"""Load test of a TF Serving REST predict endpoint: throughput and latency percentiles per concurrency.

    python -m serving.loadtest --url http://127.0.0.1:8501/v1/models/sst2:predict \\
        --concurrency 1,8,32 --requests 500 --out results/loadtest-sst2.json

Works against `powerbert serve` and a real TF Serving alike. The request body is `--body FILE`
(a JSON request used as is), or built from `--texts FILE` (one text per line; `classify_text`),
or, by default, synthesized from the model's metadata: random WordPiece-id rows for integer
inputs (`input_ids` in [--min-id, --max-id), full attention mask, segment 0) and short random
sentences for string inputs. Each of `--concurrency` threads keeps one keep-alive connection.

Every level runs `--warmup` requests first, then `--requests` timed ones, and stops early after
`--max-seconds`. The JSON written to `--out` holds, per level: requests, errors (by status),
seconds, requests/s, instances/s, latency p50/p90/p99/mean/max in ms, and, when the server has
`/monitoring/stats` (ours), the TensorFlow calls made during the level.
"""

import argparse
import json
import platform
import sys
import threading
import time
from urllib.parse import urlsplit

import numpy as np

from serving.client import ErrorResponse, PredictClient

_WORDS = ("the movie was good bad great awful plot story actors not very fun dull and but it this "
          "film a an of in with really quite boring moving script").split()


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m serving.loadtest", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--url", required=True, help="http://host:port/v1/models/NAME[/versions/V]:predict")
    parser.add_argument("--concurrency", default="1,8,32", help="comma-separated client thread counts")
    parser.add_argument("--requests", type=int, default=200, help="timed requests per concurrency level")
    parser.add_argument("--warmup", type=int, default=10, help="untimed requests before each level")
    parser.add_argument("--instances", type=int, default=1, help="instances (rows) per request")
    parser.add_argument("--signature", default=None, help="signature_name (default: the server's default)")
    parser.add_argument("--format", choices=("row", "columnar"), default="row",
                        help="instances (row) or inputs (columnar) request format")
    parser.add_argument("--body", default=None, help="JSON request body file, sent as is")
    parser.add_argument("--texts", default=None, help="file of texts, one per line (string signatures)")
    parser.add_argument("--min-id", type=int, default=1000, help="smallest synthesized token id")
    parser.add_argument("--max-id", type=int, default=2000, help="synthesized token ids are below this")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-seconds", type=float, default=300.0, help="time cap of each level")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    parser.add_argument("--label", default="", help="free text stored in the results (e.g. 'power, batching')")
    parser.add_argument("--out", default="loadtest.json", help="results JSON file")
    return parser.parse_args(argv)


def split_url(url):
    """(host, port, model name, version or None) of a `...:predict` URL."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"expected http://host:port/v1/models/NAME:predict, got {url}")
    path = parts.path
    if path.endswith(":predict"):
        path = path[: -len(":predict")]
    pieces = path.strip("/").split("/")
    if len(pieces) < 3 or pieces[:2] != ["v1", "models"]:
        raise ValueError(f"not a TF Serving model URL: {url}")
    version = int(pieces[4]) if len(pieces) >= 5 and pieces[3] == "versions" else None
    return parts.hostname, parts.port or 80, pieces[2], version


def synthesize_body(metadata, args, rng):
    """A request for `args.signature` (default serving_default) from the model's metadata."""
    defs = metadata["metadata"]["signature_def"]["signature_def"]
    name = args.signature or "serving_default"
    if name not in defs:
        raise SystemExit(f"signature {name!r} not in the model's signatures {sorted(defs)}")
    texts = None
    if args.texts:
        with open(args.texts, encoding="utf-8") as f:
            texts = [line.rstrip("\n") for line in f if line.strip()]
    columns = {}
    for input_name, info in defs[name]["inputs"].items():
        dims = [int(d["size"]) for d in info["tensor_shape"].get("dim", [])]
        columns[input_name] = _synthesize(input_name, info["dtype"], dims, args, rng, texts)
    body = {}
    if args.signature:
        body["signature_name"] = args.signature
    if args.format == "columnar":
        body["inputs"] = columns
    elif len(columns) == 1:
        body["instances"] = next(iter(columns.values()))
    else:
        body["instances"] = [{k: v[i] for k, v in columns.items()} for i in range(args.instances)]
    return body


def _synthesize(name, dtype, dims, args, rng, texts):
    rows, tail = args.instances, [d for d in dims[1:]]
    if dtype == "DT_STRING":
        if texts:
            return [texts[int(rng.integers(len(texts)))] for _ in range(rows)]
        return [" ".join(rng.choice(_WORDS, size=int(rng.integers(4, 20)))) for _ in range(rows)]
    if any(d < 0 for d in tail):
        raise SystemExit(f"input {name} has a variable dimension {dims}; pass --body")
    shape = [rows] + tail
    if dtype.startswith("DT_INT") or dtype.startswith("DT_UINT"):
        if name == "input_ids":
            return rng.integers(args.min_id, args.max_id, size=shape).tolist()
        if name == "attention_mask":
            return np.ones(shape, np.int64).tolist()
        return np.zeros(shape, np.int64).tolist()
    if dtype in ("DT_FLOAT", "DT_DOUBLE", "DT_HALF", "DT_BFLOAT16"):
        return rng.standard_normal(shape).round(4).tolist()
    if dtype == "DT_BOOL":
        return (rng.random(shape) < 0.5).tolist()
    raise SystemExit(f"cannot synthesize input {name} of type {dtype}; pass --body")


def warm_up(client, path, body, count):
    for _ in range(count):
        try:
            client.request("POST", path, body)
        except (ErrorResponse, OSError):
            pass


def run_level(client, path, body, concurrency, requests, max_seconds):
    """One concurrency level: (latencies in s, {status: count} of errors, wall seconds)."""
    latencies, errors, lock = [], {}, threading.Lock()
    remaining = iter(range(requests))
    deadline = time.monotonic() + max_seconds

    def worker():
        while time.monotonic() < deadline:
            with lock:
                if next(remaining, None) is None:
                    return
            start = time.perf_counter()
            try:
                client.request("POST", path, body)
                status = None
            except ErrorResponse as e:
                status = str(e.status)
            except OSError as e:
                status = type(e).__name__
            elapsed = time.perf_counter() - start
            with lock:
                if status is None:
                    latencies.append(elapsed)
                else:
                    errors[status] = errors.get(status, 0) + 1

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, errors, time.perf_counter() - start


def summarize(latencies, errors, seconds, concurrency, instances):
    done = len(latencies)
    ms = np.asarray(latencies) * 1000 if latencies else np.zeros(1)
    return {"concurrency": concurrency, "requests": done, "errors": errors,
            "error_count": sum(errors.values()), "seconds": round(seconds, 3),
            "requests_per_s": round(done / seconds, 2) if seconds else 0.0,
            "instances_per_s": round(done * instances / seconds, 2) if seconds else 0.0,
            "latency_ms": {"p50": round(float(np.percentile(ms, 50)), 2),
                           "p90": round(float(np.percentile(ms, 90)), 2),
                           "p99": round(float(np.percentile(ms, 99)), 2),
                           "mean": round(float(ms.mean()), 2), "max": round(float(ms.max()), 2)}}


def server_stats(client):
    try:
        return client.request("GET", "/monitoring/stats")
    except (ErrorResponse, OSError):
        return None  # a real TF Serving has no such route


def tf_calls(stats, model):
    try:
        return stats["models"][model]["tf_calls"]
    except (TypeError, KeyError):
        return None


def main(argv=None):
    args = parse_args(argv)
    host, port, model, version = split_url(args.url)
    levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
    if not levels or min(levels) < 1 or args.requests < 1:
        raise SystemExit("--concurrency needs positive integers and --requests >= 1")
    client = PredictClient(host, port, model, timeout=args.timeout)
    rng = np.random.default_rng(args.seed)
    if args.body:
        with open(args.body, encoding="utf-8") as f:
            body = json.load(f)
    else:
        body = synthesize_body(client.metadata(version), args, rng)
    path = urlsplit(args.url).path
    client.request("POST", path, body)  # fail fast on a bad request, before any timing

    results = []
    for concurrency in levels:
        warm_up(client, path, body, args.warmup)
        before = server_stats(client)
        latencies, errors, seconds = run_level(client, path, body, concurrency, args.requests,
                                               args.max_seconds)
        row = summarize(latencies, errors, seconds, concurrency, args.instances)
        after = server_stats(client)
        calls = (tf_calls(after, model) - tf_calls(before, model)
                 if tf_calls(before, model) is not None and tf_calls(after, model) is not None else None)
        row["tf_calls"] = calls
        results.append(row)
        lat = row["latency_ms"]
        print(f"concurrency {concurrency:3d}: {row['requests_per_s']:8.1f} req/s "
              f"{row['instances_per_s']:8.1f} inst/s  p50 {lat['p50']:7.1f} ms  p99 {lat['p99']:7.1f} ms  "
              f"errors {row['error_count']}" + (f"  tf_calls {calls}" if calls is not None else ""),
              flush=True)
    report = {"url": args.url, "label": args.label, "signature": args.signature or "serving_default",
              "format": args.format, "instances_per_request": args.instances,
              "requests_per_level": args.requests, "warmup": args.warmup,
              "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "machine": {"platform": platform.platform(), "python": platform.python_version()},
              "results": results}
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
