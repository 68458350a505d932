"""Sessions, training, renditions, stage throughput and dead letters: `booth status`'s data, kept fresh.

A background thread owns one `tools.status_view.StatusWatcher` (Kafka consumers are not thread-safe)
and refreshes it about once a second; the web handlers only read the latest snapshot.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from infra.settings import Settings
from tools.status_view import StatusWatcher

log = logging.getLogger(__name__)


class StatusFeed:
    def __init__(
        self,
        settings: Settings,
        *,
        targets: dict[str, str] | None = None,
        interval_s: float = 1.0,
        idle_s: float = 0.3,
        retry_s: float = 3.0,
    ):
        self.settings = settings
        self.targets = targets
        self.interval_s = interval_s
        self.idle_s = idle_s
        self.retry_s = retry_s
        self.last_error: str | None = None
        self._snapshot: dict[str, Any] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def latest(self) -> dict[str, Any] | None:
        with self._lock:
            return self._snapshot

    def start(self) -> StatusFeed:
        self._thread = threading.Thread(target=self._run, name="console-status", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            watcher = None
            try:
                watcher = StatusWatcher(self.settings, targets=self.targets, idle_s=self.idle_s)
                # The watcher assigns partitions once; a topic created later needs a new watcher.
                rebuild_at = time.monotonic() + self.retry_s if watcher.errors else None
                while not self._stop.is_set():
                    snap = watcher.refresh()
                    with self._lock:
                        self._snapshot = snap
                    self.last_error = None
                    if rebuild_at is not None and time.monotonic() > rebuild_at:
                        break
                    self._stop.wait(self.interval_s)
            except Exception as exc:  # noqa: BLE001 - keep serving the last snapshot and try again
                self.last_error = f"status reader: {type(exc).__name__}: {exc}"
                log.warning("%s; retrying in %.0fs", self.last_error, self.retry_s)
                self._stop.wait(self.retry_s)
            finally:
                if watcher is not None:
                    watcher.close()
