"""`Poller`: a function called every few seconds on a daemon thread, until stopped (the version
polls of each model's base path and the model config file's re-reads)."""

import logging
import threading

log = logging.getLogger("serving")


class Poller:
    """Calls `poll()` every `seconds` on a daemon thread named `name`, from `start()` until
    `stop()`; an exception is logged and polling goes on. Stopping is final."""

    def __init__(self, poll, seconds, name):
        self._poll, self.seconds, self.name = poll, seconds, name
        self._stop = threading.Event()
        self._thread = None

    def start(self):
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
            self._thread.start()

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def _loop(self):
        while not self._stop.wait(self.seconds):
            try:
                self._poll()
            except Exception:  # keep polling whatever one poll hit
                log.exception("%s failed", self.name)
