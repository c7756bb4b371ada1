"""`ModelManager`: the served models, their version labels and the model config file (TF Serving's
`ServerCore` and its config polling).

The models come from name=base path pairs or from `--model_config_file`, which is read once, or
every `--model_config_file_poll_wait_seconds`: models added, removed, or with a new base path,
version policy or labels then take effect. A file that does not parse or is refused (see
`serving.model_config`) changes nothing: at startup the server does not start; while serving the
previous config keeps serving, and the error is logged and shown in `/monitoring/stats`.

Labels are checked as TF Serving checks them, against the versions available before the new
config is applied, so that a reload either applies whole or not at all. The first config is the
exception: its models load first, then its labels are checked (TF Serving checks them before
loading anything, so there a label in the first config needs
`--allow_version_labels_for_unavailable_models`).
"""

import logging
import threading

from serving.config_protos import ConfigError
from serving.errors import NOT_FOUND, ServingError
from serving.model_config import check_labels, read_model_config, specs_from_paths
from serving.model_store import ModelStore
from serving.polling import Poller
from serving.servable import Servable

log = logging.getLogger("serving")


class ModelManager:
    """The `ModelStore` of each model and the label map, replaced whole on each reload.

    Args:
        models: {name: base path}, used when `config_file` is None.
        config_file: a `ModelServerConfig` text file, read now (so a bad one raises here).
        poll_seconds: seconds between versions polls of each base path.
        config_poll_seconds: seconds between reads of `config_file`; 0 reads it once.
        allow_unavailable_labels: TF Serving's `--allow_version_labels_for_unavailable_models`.
        loader: `(name, version, path, stats) -> Servable`.

    Raises:
        ConfigError: `config_file` cannot be read or is refused.
    """

    def __init__(self, models=None, config_file=None, poll_seconds=1.0, config_poll_seconds=0,
                 allow_unavailable_labels=False, loader=Servable):
        self.config_file = config_file
        self.poll_seconds, self.config_poll_seconds = poll_seconds, config_poll_seconds
        self.allow_unavailable_labels = allow_unavailable_labels
        self._loader = loader
        self._first = read_model_config(config_file) if config_file else specs_from_paths(models or {})
        self.stores = {}  # name -> ModelStore; replaced, never mutated
        self.labels = {}  # name -> {label: version}; replaced, never mutated
        self._specs = {}  # name -> ModelSpec applied
        self.config_error = None
        self.reloads = 0
        self._started = False
        self._lock = threading.Lock()
        self._poller = Poller(self.reload, config_poll_seconds, "poll-model-config")

    # === Lifecycle ===

    def start(self):
        """Loads the first config's models (once; later calls do nothing), then polls the file.

        Raises:
            ConfigError: a label of the first config points at a version that did not load.
        """
        with self._lock:
            if self._started:
                return
            self._started = True
            try:
                self._apply(self._first or [], first=True)
            except ConfigError as e:
                raise ConfigError(self._named(e)) from None
        if self.config_file and self.config_poll_seconds > 0:
            self._poller.start()

    def stop(self):
        self._poller.stop()
        for store in self.stores.values():
            store.stop()

    def reload(self):
        """Re-reads the config file and applies it; False (error logged and kept) if refused."""
        try:
            specs = read_model_config(self.config_file)
            with self._lock:
                if specs is None:
                    log.debug("%s is empty: taking no action", self.config_file)
                elif {s.name: s for s in specs} != self._specs:
                    self._apply(specs, first=False)
                    self.reloads += 1
        except ConfigError as e:
            message = self._named(e)
            if message != self.config_error:  # once per distinct error, not once per poll
                log.error("model config not reloaded, the previous one keeps serving: %s", message)
            self.config_error = message
            return False
        except Exception:  # a bug of ours: keep serving and keep polling
            log.exception("reloading %s failed", self.config_file)
            return False
        self.config_error = None
        return True

    def _apply(self, specs, first):
        """Makes `specs` the served models; raises ConfigError (nothing changed, unless `first`)."""
        new = {spec.name: spec for spec in specs}
        if not first:
            labels = check_labels(specs, _available(self.stores), self.labels, self.allow_unavailable_labels)
        stores, retired = dict(self.stores), []
        for name, spec in new.items():
            old = self._specs.get(name)
            if old is None or old.base_path != spec.base_path:
                store = ModelStore(name, spec.base_path, self.poll_seconds, self._loader, spec.policy)
                store.start()
                if name in stores:
                    retired.append(stores[name])  # after the new store's first load: no gap
                stores[name] = store
            elif old.policy != spec.policy:
                stores[name].set_policy(spec.policy)
        retired += [stores.pop(name) for name in list(stores) if name not in new]
        if first:
            self.stores = stores  # for stop() if the labels are refused
            labels = check_labels(specs, _available(stores), {}, self.allow_unavailable_labels)
        self.stores, self.labels, self._specs = stores, labels, new
        for store in retired:
            store.stop()
        log.info("serving models %s%s", sorted(new), f" from {self.config_file}" if self.config_file else "")

    def _named(self, error):
        """The error's message, starting with the config file's path (once)."""
        message = str(error)
        if self.config_file and not message.startswith(self.config_file):
            message = f"{self.config_file}: {message}"
        return message

    # === Queries ===

    def store(self, name, version=None):
        """The `ModelStore` of `name`; TF Serving's 404 if it is not served."""
        store = self.stores.get(name)
        if store is None:
            spec = f"Specific({name}, {version})" if version is not None else f"Latest({name})"
            raise ServingError(f"Servable not found for request: {spec}", NOT_FOUND)
        return store

    def version_for_label(self, name, label):
        """The version `label` names for model `name`; TF Serving's 400 if none."""
        version = self.labels.get(name, {}).get(label)
        if version is None:
            raise ServingError(f"Unrecognized servable version label: {label}"[:300])
        return version

    def config_status(self):
        """The model config file, reloads and the last refused reload's error, for /monitoring/stats."""
        return {"file": self.config_file, "poll_seconds": self.config_poll_seconds,
                "reloads": self.reloads, "error": self.config_error}


def _available(stores):
    """(model name) -> the versions its store has available, from `stores`."""
    return lambda name: stores[name].available_versions() if name in stores else set()
