"""Daemon threads whose end is an Event.

Waiting on the Event survives Ctrl-C: on Python 3.11 a KeyboardInterrupt landing inside
Thread.join() can leave is_alive() False while the thread still runs, and a stop would then skip
the final flush and summary.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class Worker:
    def __init__(self, target: Callable[[], None], name: str):
        self.done = threading.Event()
        self._target = target
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        try:
            self._target()
        finally:
            self.done.set()

    def start(self) -> Worker:
        self.thread.start()
        return self

    @property
    def running(self) -> bool:
        return not self.done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """True once the target has returned."""
        return self.done.wait(timeout)
