"""`powerbert bench` plumbing: the run directory's models, peak-RSS measurement, machine facts."""

import datetime
import json
import os
import platform
import re
import threading
import time

from powerbert_tf.retention import RetentionConfig, RetentionError
from training.bench import BenchError

MODEL_FILES = {"bert": ("finetune", "model.keras"), "power": ("retrain", "model.keras")}


# === Run directory ===

def read_run_config(run_dir):
    """`<run>/config.json` as a dict, checked for the fields the benchmark needs."""
    if not os.path.isdir(run_dir):
        raise BenchError(f"run directory {run_dir!r} does not exist")
    path = os.path.join(run_dir, "config.json")
    if not os.path.isfile(path):
        raise BenchError(f"{run_dir} is not a run directory (no config.json); pass the --out "
                         f"directory of `powerbert train`")
    with open(path) as f:
        config = json.load(f)
    missing = [k for k in ("task", "init", "max_length") if k not in config]
    if missing:
        raise BenchError(f"{path} lacks {', '.join(missing)}")
    return config


class RunModels:
    """Loads the run's fine-tuned (`bert`) and re-trained (`power`) models on first use, and
    builds `power-la` (the re-trained weights with length-aware retention).

    `load_seconds[name]` and `load_rss_mb[name]` record what each load cost.
    """

    def __init__(self, run_dir, config, tokenizer, task, needed=("bert", "power")):
        self.run_dir, self.config, self.tokenizer, self.task = run_dir, config, tokenizer, task
        self.max_length = int(config["max_length"])
        self.load_seconds, self.load_rss_mb, self._models = {}, {}, {}
        for name in sorted({"power" if n == "power-la" else n for n in needed}):
            path = self.model_path(name)
            if not os.path.isfile(path):
                step = MODEL_FILES[name][0]
                raise BenchError(f"{run_dir} has no {step}/model.keras (the {step} step has not "
                                 f"finished); run `powerbert train ... --out {run_dir}` first")
        self.retention = None
        if "power" in needed or "power-la" in needed:
            path = os.path.join(run_dir, "retention.json")
            if not os.path.isfile(path):
                raise BenchError(f"{run_dir} has no retention.json (the search step has not finished)")
            try:
                self.retention = RetentionConfig.load(path)
            except (RetentionError, json.JSONDecodeError) as err:
                raise BenchError(f"{path}: {err}") from None
            if self.retention.sequence_length != self.max_length:
                raise BenchError(f"{path} is for N={self.retention.sequence_length} but config.json "
                                 f"has max_length={self.max_length}")

    def model_path(self, name):
        return os.path.join(self.run_dir, *MODEL_FILES[name])

    def fingerprint(self):
        stats = {name: [os.path.getsize(self.model_path(name)), os.stat(self.model_path(name)).st_mtime_ns]
                 for name in MODEL_FILES if os.path.isfile(self.model_path(name))}
        return {"models": stats, "max_length": self.max_length,
                "retention": list(self.retention.lengths) if self.retention else None}

    def get(self, name):
        if name not in self._models:
            before, started = rss_kb(), time.perf_counter()
            self._models[name] = self._build_length_aware() if name == "power-la" else self._load(name)
            self.load_seconds[name] = time.perf_counter() - started
            self.load_rss_mb[name] = (rss_kb() - before) / 1024
        return self._models[name]

    def _load(self, name):
        import keras

        model = keras.saving.load_model(self.model_path(name), compile=False)  # no optimizer: inference
        if name == "power":
            kept = model.encoder.retention
            if model.encoder.elimination != "hard" or kept is None:
                raise BenchError(f"{self.model_path(name)} is not a hard-extract model")
            if tuple(kept.lengths) != self.retention.lengths:
                raise BenchError(f"{self.model_path(name)} keeps {list(kept.lengths)} word vectors per "
                                 f"layer but retention.json says {list(self.retention.lengths)}")
        return model

    def _build_length_aware(self):
        return self.get("power").with_elimination(elimination="hard", retention=self.retention,
                                                  length_aware=True)

    def export(self, name, base, jit_compile=False):
        """`serving.export.export_saved_model` of model `name` as version 1 of `base`."""
        from serving.export import export_saved_model

        model = self.get(name)
        labels = list(self.task.label_names) if model.num_classes > 1 else []
        return export_saved_model(model, self.tokenizer, base=base, max_length=self.max_length,
                                  label_names=labels, task_name=self.task.name,
                                  pair=self.task.is_pair, version=1, jit_compile=jit_compile)


# === Memory ===

def _status_kb(field):
    with open("/proc/self/status") as f:
        found = re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.MULTILINE)
    return int(found.group(1)) if found else 0


def rss_kb():
    """Resident set size of this process (VmRSS), in kB; 0 where /proc is missing."""
    try:
        return _status_kb("VmRSS")
    except OSError:
        return 0


def _can_reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _status_kb("VmHWM") > 0
    except OSError:
        return False


class PeakRss:
    """Context manager: `peak_mb` = peak RSS inside the block minus RSS at its start.

    Exact where Linux lets a process reset its high-water mark (`5` written to
    /proc/self/clear_refs resets VmHWM to the current RSS; VmHWM is read at the end); elsewhere
    a thread samples VmRSS every `interval` seconds (can miss peaks shorter than that).
    """

    exact = None  # decided once per process

    def __init__(self, interval=0.002):
        self.interval, self.peak_mb = interval, None
        if PeakRss.exact is None:
            PeakRss.exact = _can_reset_peak()
        self.method = ("VmHWM after resetting it (clear_refs 5), minus VmRSS before" if PeakRss.exact
                       else f"max of VmRSS sampled every {interval * 1000:g} ms, minus VmRSS before")

    def __enter__(self):
        self._before = rss_kb()
        self._max = self._before
        if PeakRss.exact:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        else:
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(self.interval):
            self._max = max(self._max, rss_kb())

    def __exit__(self, *exc):
        if PeakRss.exact:
            peak = _status_kb("VmHWM")
        else:
            self._stop.set()
            self._thread.join()
            peak = max(self._max, rss_kb())
        self.peak_mb = max(peak - self._before, 0) / 1024
        return False


# === Machine ===

def machine_info():
    """Cores, CPU model, memory, load, versions and the UTC date (for the report)."""
    info = {"date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "logical_cpus": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform()}
    try:
        info["usable_cpus"] = len(os.sched_getaffinity(0))
    except AttributeError:
        pass
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
        model = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
        info["cpu_model"] = model.group(1).strip() if model else "unknown"
        flags = re.search(r"^flags\s*:\s*(.+)$", text, re.MULTILINE)
        if flags:
            info["simd"] = [f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")
                            if f in flags.group(1).split()]
        with open("/proc/meminfo") as f:
            info["mem_total_gb"] = round(int(re.search(r"MemTotal:\s+(\d+)", f.read()).group(1)) / 2**20, 1)
    except (OSError, AttributeError):
        pass
    info["versions"] = package_versions()
    return info


def package_versions():
    import importlib.metadata as metadata

    versions = {}
    for package in ("tensorflow", "keras", "numpy", "onnxruntime", "tf2onnx", "onnx", "ai-edge-litert"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def load_average():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None
