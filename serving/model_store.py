"""The versions of one model under a base path: loaded, polled and swapped like TF Serving's.

TF Serving's defaults (`sources/storage_path/file_system_storage_path_source.cc`, `latest` policy,
`AvailabilityPreservingPolicy`): only numeric child directories are versions, the highest one is
served, a new version is loaded before the old one is unloaded, and a version that fails to load
leaves the previous one serving, with its error visible in the model status.

Added here: a version that appears while serving is loaded only once its files (names, sizes,
mtimes) have not changed for one poll, so a directory still being copied is not loaded half
written. A failed version is retried only when its files change.
"""

import logging
import os
import threading
from dataclasses import dataclass

from tensorflow.core.protobuf import error_codes_pb2

from serving.errors import NOT_FOUND, ServingError, describe_exception
from serving.savedmodel import list_versions
from serving.servable import CallStats, Servable

log = logging.getLogger("serving")
_MAX_FILES = 10000


@dataclass
class VersionRecord:
    version: int
    state: str  # TF Serving's ManagerState: START, LOADING, AVAILABLE, UNLOADING, END
    error_code: str = "OK"
    error_message: str = ""
    fingerprint: tuple = None

    def to_json(self):
        return {"version": str(self.version), "state": self.state,
                "status": {"error_code": self.error_code, "error_message": self.error_message}}


class ModelStore:
    """Serves the highest loadable version of `<base_path>/<version>/`, polling for new ones.

    Args:
        name: the model name of the URLs.
        base_path: the directory holding numeric version directories.
        poll_seconds: seconds between polls (TF Serving's `--file_system_poll_wait_seconds`);
            0 polls once, at `start()`.
        loader: `(name, version, path, stats) -> Servable`, replaceable in tests.
    """

    def __init__(self, name, base_path, poll_seconds=1.0, loader=Servable):
        self.name, self.base_path, self.poll_seconds = name, base_path, poll_seconds
        self.stats = CallStats()
        self._loader = loader
        self._lock = threading.Lock()
        self._records = {}
        self._seen = {}
        self._serving = None
        self._warned = set()
        self._stop = threading.Event()
        self._thread = None

    # === Lifecycle ===

    def start(self):
        """Loads the highest loadable version now, then polls in a daemon thread."""
        self.poll_once(settle=False)
        if self.poll_seconds > 0 and self._thread is None:
            self._thread = threading.Thread(target=self._poll_loop, name=f"poll-{self.name}", daemon=True)
            self._thread.start()

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def _poll_loop(self):
        while not self._stop.wait(self.poll_seconds):
            try:
                self.poll_once()
            except Exception:  # keep polling whatever one poll hit
                log.exception("polling %s failed", self.base_path)

    def poll_once(self, settle=True):
        """Loads the highest new version that loads; `settle`: skip files changed since last poll."""
        dirs = self._version_dirs()
        current = self._serving
        current_present = current is not None and current.version in dirs
        candidates = sorted((v for v in dirs if not current_present or v > current.version), reverse=True)
        for version in candidates:
            fingerprint = _fingerprint(dirs[version])
            previous, self._seen[version] = self._seen.get(version), fingerprint
            record = self._records.get(version)
            if record is not None and record.state == "END" and record.fingerprint == fingerprint \
                    and record.error_code != "OK":
                continue  # failed with these very files: wait until they change
            if settle and previous != fingerprint:
                self._set(version, "START", fingerprint=fingerprint)
                continue  # still changing, or just appeared: look again next poll
            if self._load(version, dirs[version], fingerprint):
                return

    def _load(self, version, path, fingerprint):
        self._set(version, "LOADING", fingerprint=fingerprint)
        try:
            servable = self._loader(self.name, version, path, self.stats)
        except Exception as e:  # corrupt, incomplete or unreadable: keep what is serving
            code = _error_code(e)
            message = describe_exception(e)
            log.error("model %s version %d failed to load (%s): %s", self.name, version, code, message)
            self._set(version, "END", code, message, fingerprint)
            return False
        with self._lock:
            old, self._serving = self._serving, servable
        self._set(version, "AVAILABLE", fingerprint=fingerprint)
        if old is not None:
            self._set(old.version, "END")
        log.info("model %s now serves version %d (%s)", self.name, version, path)
        return True

    def _set(self, version, state, code="OK", message="", fingerprint=None):
        with self._lock:
            record = self._records.setdefault(version, VersionRecord(version, state))
            record.state, record.error_code, record.error_message = state, code, message
            if fingerprint is not None:
                record.fingerprint = fingerprint

    def _version_dirs(self):
        try:
            found = list_versions(self.base_path)
        except OSError:
            self._warn_once("base", f"Could not find base path {self.base_path} for servable {self.name}")
            return {}
        dirs = {}
        for version, path in found:
            if version in dirs:
                self._warn_once(f"dup{version}", f"Duplicate version directories for version {version} "
                                f"under {self.base_path}; serving {dirs[version]}")
                continue
            dirs[version] = path
        if not dirs:
            self._warn_once("empty", f"No versions of servable {self.name} found under base path "
                            f"{self.base_path}. Did you forget to name your leaf directory as a number "
                            "(eg. '/1/')?")
        return dirs

    def _warn_once(self, key, message):
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message)

    # === Queries ===

    @property
    def serving(self):
        return self._serving

    def get(self, version=None):
        """The servable for a request: the served version, or `version` if that is the one served."""
        servable = self._serving
        if version is None:
            if servable is None:
                raise ServingError(f"Servable not found for request: Latest({self.name})", NOT_FOUND)
        elif servable is None or servable.version != version:
            raise ServingError(f"Servable not found for request: Specific({self.name}, {version})", NOT_FOUND)
        return servable

    def status(self, version=None):
        """TF Serving's `GetModelStatusResponse` JSON: every version seen, newest first."""
        with self._lock:
            records = sorted((r.to_json() for r in self._records.values()), key=lambda r: -int(r["version"]))
        if version is not None:
            records = [r for r in records if r["version"] == str(version)]
            if not records:
                raise ServingError(f"Could not find version {version} of model {self.name}", NOT_FOUND)
        if not records:
            raise ServingError(f"Could not find any versions of model {self.name}", NOT_FOUND)
        return {"model_version_status": records}


# === Helpers ===

def _error_code(error):
    code = getattr(error, "error_code", None)
    if isinstance(code, int) and code in error_codes_pb2.Code.values():
        return error_codes_pb2.Code.Name(code)
    if isinstance(error, FileNotFoundError):
        return "NOT_FOUND"
    if isinstance(error, OSError):
        return "DATA_LOSS" if "parse" in str(error).lower() else "UNKNOWN"
    return "UNKNOWN"


def _fingerprint(path):
    """(relative path, size, mtime) of every file under `path`: changes while a copy is running."""
    entries = []
    for root, _, files in os.walk(path):
        for name in files:
            full = os.path.join(root, name)
            try:
                info = os.stat(full)
            except OSError:
                continue
            entries.append((os.path.relpath(full, path), info.st_size, info.st_mtime_ns))
            if len(entries) > _MAX_FILES:
                return tuple(sorted(entries))
    return tuple(sorted(entries))
