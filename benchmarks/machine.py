"""Measurement plumbing of the benchmarks: peak RSS, machine facts, load average."""

import datetime
import os
import platform
import re
import threading


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
    for package in ("tensorflow", "keras", "numpy", "onnxruntime", "tf2onnx", "onnx", "ai-edge-litert",
                    "torch", "transformers"):
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
