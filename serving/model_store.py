"""The versions of one model under a base path: loaded, polled and swapped like TF Serving's.

TF Serving's rules (`sources/storage_path/file_system_storage_path_source.cc`,
`AvailabilityPreservingPolicy`): only numeric child directories are versions; the version policy
names the versions to serve (`latest`: the `num_versions` highest, 1 by default; `all`; `specific`
versions); a new version is loaded before an old one is unloaded, and a version that fails to load
leaves what was serving in place, with its error visible in the model status.

Added here: a version that appears while serving is loaded only once its files (names, sizes,
mtimes) have not changed for one poll, so a directory still being copied is not loaded half
written. A failed version is retried only when its files change, and `latest` passes over it to
the next highest version that loads (TF Serving would serve nothing in its place).
"""

import logging
import os
import threading
from dataclasses import dataclass

from tensorflow.core.protobuf import error_codes_pb2

from serving.errors import NOT_FOUND, ServingError, describe_exception
from serving.model_config import VersionPolicy
from serving.polling import Poller
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
    """Serves the versions of `<base_path>/<version>/` its policy names, polling for changes.

    Args:
        name: the model name of the URLs.
        base_path: the directory holding numeric version directories.
        poll_seconds: seconds between polls (TF Serving's `--file_system_poll_wait_seconds`);
            0 polls once, at `start()`.
        loader: `(name, version, path, stats) -> Servable`, replaceable in tests.
        policy: the `VersionPolicy`; `set_policy` changes it while serving.
    """

    def __init__(self, name, base_path, poll_seconds=1.0, loader=Servable, policy=VersionPolicy()):
        self.name, self.base_path, self.poll_seconds = name, base_path, poll_seconds
        self.policy = policy
        self.stats = CallStats()
        self._loader = loader
        self._lock = threading.Lock()  # records and the servables map
        self._poll_lock = threading.Lock()  # one poll at a time: the poll thread and config reloads
        self._records = {}
        self._seen = {}
        self._servables = {}  # version -> Servable; replaced, never mutated, so readers need no lock
        self._warned = set()
        self._poller = Poller(self.poll_once, poll_seconds, f"poll-{name}")

    # === Lifecycle ===

    def start(self):
        """Loads what the policy names now, then polls in a daemon thread."""
        self.poll_once(settle=False)
        if self.poll_seconds > 0:
            self._poller.start()

    def stop(self):
        self._poller.stop()

    def set_policy(self, policy):
        """Serves what `policy` names from now on: loads its versions, then unloads the others."""
        self.policy = policy
        self.poll_once(settle=False)

    def poll_once(self, settle=True):
        """Loads the versions the policy names; `settle`: skip files changed since the last poll.

        Versions the policy no longer names are unloaded only once one it names is available, so
        the model never goes from serving to not serving.
        """
        with self._poll_lock:
            dirs = self._version_dirs()
            wanted = self._serve_wanted(dirs, settle)
            if wanted:
                for version in sorted(set(self._servables) - wanted):
                    self._unload(version)

    def _serve_wanted(self, dirs, settle):
        """The versions to serve, each loaded by now: the policy's, minus those that do not load."""
        policy = self.policy
        if policy.kind == "specific":
            for version in policy.versions:
                if version not in dirs:
                    self._warn_once(f"specific{version}",
                                    f"Version {version} of servable {self.name}, which was requested to be "
                                    "served as a 'specific' version in the servable's version policy, was "
                                    "not found in the file system")
            candidates, limit = [v for v in sorted(dirs, reverse=True) if v in policy.versions], None
        elif policy.kind == "all":
            candidates, limit = sorted(dirs, reverse=True), None
        else:
            candidates, limit = sorted(dirs, reverse=True), max(policy.num_versions, 1)
        chosen = set()
        for version in candidates:
            if limit is not None and len(chosen) == limit:
                break
            if version in self._servables or (self._ready(version, dirs[version], settle)
                                              and self._load(version, dirs[version])):
                chosen.add(version)
        return chosen

    def _ready(self, version, path, settle):
        """Whether to try loading `version` now: not failed with these very files, and settled."""
        fingerprint = _fingerprint(path)
        previous, self._seen[version] = self._seen.get(version), fingerprint
        record = self._records.get(version)
        if record is not None and record.state == "END" and record.fingerprint == fingerprint \
                and record.error_code != "OK":
            return False  # failed with these very files: wait until they change
        if settle and previous != fingerprint:
            self._set(version, "START", fingerprint=fingerprint)
            return False  # still changing, or just appeared: look again next poll
        return True

    def _load(self, version, path):
        fingerprint = self._seen.get(version)
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
            self._servables = {**self._servables, version: servable}
        self._set(version, "AVAILABLE", fingerprint=fingerprint)
        log.info("model %s now serves version %d (%s)", self.name, version, path)
        return True

    def _unload(self, version):
        """Drops `version`; requests already holding it finish on it."""
        with self._lock:
            self._servables = {v: s for v, s in self._servables.items() if v != version}
        self._set(version, "END")
        log.info("model %s no longer serves version %d", self.name, version)

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
        """The highest available version's servable (TF Serving's `Latest`), or None."""
        servables = self._servables
        return servables[max(servables)] if servables else None

    def available_versions(self):
        return set(self._servables)

    def get(self, version=None):
        """The servable for a request: the highest available version, or `version` if available."""
        if version is None:
            servable = self.serving
            if servable is None:
                raise ServingError(f"Servable not found for request: Latest({self.name})", NOT_FOUND)
            return servable
        servable = self._servables.get(version)
        if servable is None:
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
