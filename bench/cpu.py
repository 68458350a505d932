"""Where the cores go: CPU seconds per process, per thread of this process, per step of a worker.

CPU time (user + system, from /proc) is what a stage costs the machine whatever else runs on it,
so these figures hold on a busy box where wall-clock rates do not. Linux only.
"""

from __future__ import annotations

import os
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


def _stat_cpu(path: str) -> float | None:
    try:
        fields = Path(path).read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime + stime


def process_cpu(pid: int) -> float:
    """CPU seconds the process has used so far (its threads included, its children not)."""
    value = _stat_cpu(f"/proc/{pid}/stat")
    if value is None:
        raise ProcessLookupError(pid)
    return value


def descendants(pid: int) -> list[int]:
    """The live processes `pid` started, and theirs (a worker's inference process)."""
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids = [int(k) for k in (task / "children").read_text().split()]
        except OSError:
            continue
        for kid in kids:
            out += [kid, *descendants(kid)]
    return out


def tree_cpu(pid: int) -> float:
    """CPU seconds of the process and of its live descendants."""
    total = process_cpu(pid)
    for kid in descendants(pid):
        total += _stat_cpu(f"/proc/{kid}/stat") or 0.0
    return total


class ThreadCpu:
    """CPU seconds per thread of this process, grouped by thread name, from start() to stop().

    Threads that end in between still count: a sampler reads /proc/self/task every `every_s` and
    keeps each thread's last reading (so up to `every_s` of a thread's last moments can be missed).
    """

    def __init__(self, every_s: float = 0.2):
        self.every_s = every_s
        self._start: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._names: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)

    def _sample(self) -> dict[int, float]:
        names = {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}
        self._names.update(names)
        out = {}
        for tid in os.listdir("/proc/self/task"):
            value = _stat_cpu(f"/proc/self/task/{tid}/stat")
            if value is not None:
                out[int(tid)] = value
        return out

    def start(self) -> ThreadCpu:
        self._start = self._sample()
        self._last = dict(self._start)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self._last.update(self._sample())

    def stop(self, group: Callable[[str], str]) -> dict[str, float]:
        """CPU seconds per group(thread name) since start()."""
        self._stop.set()
        self._thread.join()
        self._last.update(self._sample())
        totals: dict[str, float] = {}
        for tid, value in self._last.items():
            name = group(self._names.get(tid, "?"))
            totals[name] = totals.get(name, 0.0) + value - self._start.get(tid, 0.0)
        return totals


def scrape_counter(port: int, name: str, label: str) -> dict[str, float]:
    """The values of a labelled counter on a local /metrics endpoint, by label value."""
    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                out[sample.labels[label]] = sample.value
    return out


def wait_for_metrics(port: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
