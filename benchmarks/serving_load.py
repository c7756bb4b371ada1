"""Measure the REST endpoint and the converted models of a run; write results/serving.md + .json.

    python -m benchmarks.serving_load --run runs/sst2-minilm [--rounds 2] [--requests 200]

1. Exports the run's baseline (`finetune/model.keras`) and PoWER-BERT (`retrain/model.keras`)
   models, starts `powerbert serve` on each with and without server-side batching, and runs
   `serving.loadtest` at 1, 8 and 32 concurrent clients (one SST-2 dev sentence per request,
   `serving_default`). Configurations are interleaved in rounds; the table shows the median
   over rounds.
2. Converts both exports to TFLite and ONNX and times SavedModel / TFLite / onnxruntime on the
   same SST-2 dev rows at batch 1 and 32, interleaved, median over repeats.
Needs POWERBERT_DATA_DIR (or --data-dir). Run it on an otherwise idle machine.
"""

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time


CONCURRENCY = (1, 8, 32)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(port, name, timeout=180):
    from serving.client import PredictClient

    client = PredictClient("127.0.0.1", port, name, timeout=5)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status = client.status()
            if any(v["state"] == "AVAILABLE" for v in status["model_version_status"]):
                return
        except Exception:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"server for {name} did not become ready")


def load_test(base, batching, body_path, requests, out_json):
    port = free_port()
    cmd = [sys.executable, "-m", "powerbert_cli.main", "serve", "--model_base_path", base,
           "--model_name", "m", "--rest_api_port", str(port), "--port", "0"]
    if batching:
        # TF Serving's CPU advice: threads = cores, a short batching window.
        cmd += ["--enable_batching", "--max_batch_size", "32", "--batch_timeout_micros", "2000",
                "--num_batch_threads", "2", "--max_enqueued_batches", "64"]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(port, "m")
        from serving import loadtest

        loadtest.main(["--url", f"http://127.0.0.1:{port}/v1/models/m:predict", "--body", body_path,
                       "--concurrency", ",".join(map(str, CONCURRENCY)), "--requests", str(requests),
                       "--warmup", "20", "--out", out_json])
        with open(out_json) as f:
            return json.load(f)["results"]
    finally:
        server.terminate()
        server.wait(timeout=60)


def time_runners(runners, rows, batch, repeats):
    """{name: [seconds per example over the rows, one per repeat]}, runners interleaved."""
    times = {name: [] for name in runners}
    batches = [{k: v[i:i + batch] for k, v in rows.items()} for i in range(0, len(rows["input_ids"]), batch)]
    for name, run in runners.items():  # warm-up (graph tracing, TFLite resizing)
        run(batches[0])
    for r in range(repeats):
        order = list(runners)[r % len(runners):] + list(runners)[:r % len(runners)]
        for name in order:
            start = time.perf_counter()
            for b in batches:
                runners[name](b)
            times[name].append((time.perf_counter() - start) / len(rows["input_ids"]))
    return times


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rows", type=int, default=256, help="SST-2 dev rows for the format timing")
    parser.add_argument("--out", default="results/serving")
    args = parser.parse_args(argv)

    from powerbert_tf import load_tokenizer
    from serving.convert import convert_onnx, convert_tflite, load_runner
    from serving.export import export_saved_model
    from training.data import read_split
    from training.run_dir import RunDir

    run = RunDir(args.run)
    config, retention = run.check(need=("finetune", "retrain"))
    task = run.read_task()
    n = config.max_length
    tokenizer = load_tokenizer(config.init)
    dev = read_split(task, "dev", args.data_dir)
    work = tempfile.mkdtemp(prefix="serving-results-")
    bases = {}
    for name, step in (("baseline", "finetune"), ("power", "retrain")):
        model = run.load_checked_model(step, retention)
        bases[name] = os.path.join(work, name)
        export_saved_model(model, tokenizer, base=bases[name], max_length=n, label_names=task.label_names,
                           task_name=task.name, pair=task.is_pair, version=1)
    one = {k: v.numpy().tolist() for k, v in tokenizer(dev.text[:1], max_length=n).items()}
    body_path = os.path.join(work, "body.json")
    with open(body_path, "w") as f:
        json.dump({"instances": [{k: v[0] for k, v in one.items()}]}, f)

    runs = {}
    for r in range(args.rounds):
        for model_name in ("baseline", "power"):
            for batching in (False, True):
                key = f"{model_name}|{'batching' if batching else 'no batching'}"
                print(f"round {r + 1}: {key}", flush=True)
                runs.setdefault(key, []).append(load_test(
                    os.path.join(bases[model_name]), batching, body_path, args.requests,
                    os.path.join(work, f"{model_name}-{batching}-{r}.json")))

    rows = {k: v.numpy() for k, v in tokenizer(dev.text[:args.rows], max_length=n).items()}
    formats, sizes = {}, {}
    for model_name, base in bases.items():
        version = os.path.join(base, "1")
        sizes[f"{model_name} SavedModel"] = sum(
            os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(version) for f in fs)
        for fmt, convert in (("TFLite", convert_tflite), ("ONNX", convert_onnx)):
            path = os.path.join(base, f"1.{fmt.lower()}")
            convert(version, path)
            sizes[f"{model_name} {fmt}"] = os.path.getsize(path)
            formats[f"{model_name} {fmt}"] = load_runner(path, num_threads=2)
        formats[f"{model_name} SavedModel"] = load_runner(version)
    timing = {batch: time_runners(formats, rows, batch, args.repeats) for batch in (1, 32)}

    report = {"run": args.run, "command": " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:]),
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "machine": {"cores": os.cpu_count(), "platform": platform.platform()},
              "rest": runs, "format_seconds_per_example": {str(b): t for b, t in timing.items()},
              "sizes_bytes": sizes}
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out + ".json", "w") as f:
        json.dump(report, f, indent=2)
    with open(args.out + ".md", "w") as f:
        f.write(render(report))
    print(f"wrote {args.out}.md and .json")


def _median(values):
    return statistics.median(values)


def render(report):
    lines = [f"# Serving: REST endpoint and converted models ({report['run']})", "",
             f"Measured {report['date']} on {report['machine']['cores']} CPU cores "
             f"({report['machine']['platform']}) by `python -m benchmarks.serving_load "
             f"{' '.join(report['command'].split()[1:])}`. Server and load generator share the cores.", "",
             "## REST endpoint (`powerbert serve`, `serving_default`, one SST-2 dev sentence per request)", "",
             "Median over rounds (interleaved); batching = `--enable_batching --max_batch_size 32 "
             "--batch_timeout_micros 2000 --num_batch_threads 2`.", "",
             "| model | batching | clients | requests/s | p50 ms | p99 ms | TF calls / request | errors |",
             "|---|---|---|---|---|---|---|---|"]
    throughput = {}
    for key, rounds in report["rest"].items():
        model, batching = key.split("|")
        for i, level in enumerate(CONCURRENCY):
            rows = [r[i] for r in rounds]
            rps = _median([x["requests_per_s"] for x in rows])
            throughput[(model, batching, level)] = rps
            calls = [x["tf_calls"] / x["requests"] for x in rows if x.get("tf_calls") is not None]
            lines.append(f"| {model} | {batching} | {level} | {rps:.1f} | "
                         f"{_median([x['latency_ms']['p50'] for x in rows]):.1f} | "
                         f"{_median([x['latency_ms']['p99'] for x in rows]):.1f} | "
                         f"{(_median(calls) if calls else float('nan')):.2f} | "
                         f"{sum(x['error_count'] for x in rows)} |")
    lines += ["", "Ratios (requests/s):", ""]
    for level in CONCURRENCY:
        for batching in ("no batching", "batching"):
            lines.append(f"- {level} clients, {batching}: PoWER / baseline = "
                         f"{throughput[('power', batching, level)] / throughput[('baseline', batching, level)]:.2f}x")
        for model in ("baseline", "power"):
            lines.append(f"- {level} clients, {model}: batching / no batching = "
                         f"{throughput[(model, 'batching', level)] / throughput[(model, 'no batching', level)]:.2f}x")
    lines += ["", "## Converted models vs the SavedModel (SST-2 dev rows, N fixed, 2 threads)", "",
              "| model | format | size MB | ms/example batch 1 | ms/example batch 32 | vs SavedModel (b1 / b32) |",
              "|---|---|---|---|---|---|"]
    t = report["format_seconds_per_example"]
    for name in t["1"]:
        model = name.split()[0]
        b1, b32 = _median(t["1"][name]) * 1e3, _median(t["32"][name]) * 1e3
        s1, s32 = _median(t["1"][f"{model} SavedModel"]) * 1e3, _median(t["32"][f"{model} SavedModel"]) * 1e3
        lines.append(f"| {model} | {name.split()[1]} | {report['sizes_bytes'][name] / 1e6:.1f} | {b1:.2f} | "
                     f"{b32:.2f} | {s1 / b1:.2f}x / {s32 / b32:.2f}x |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
