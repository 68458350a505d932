"""Per-camera counts of a run, kept in step with the Prometheus counters, and their table."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from producers import metrics

FIELDS = ("captured", "recorded", "sent", "acknowledged", "dropped", "failed", "bytes_sent")


@dataclass
class CameraStats:
    """Counts for one camera. Identities once a run has finished: captured == sent + dropped and
    sent == acknowledged + failed (frames not acknowledged by the end count as failed)."""

    camera: str
    source: str = ""
    captured: int = 0
    recorded: int = 0
    sent: int = 0
    acknowledged: int = 0
    dropped: int = 0
    failed: int = 0
    bytes_sent: int = 0
    error: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    _closed: bool = field(default=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Export every series at 0 from the start: a rate() over a series that does not exist yet
        # (no drop so far) shows "no data" on a dashboard instead of 0.
        for counter in metrics.COUNTERS.values():
            counter.labels(camera=self.camera)

    def count(self, name: str, n: int = 1) -> bool:
        """Add n to a count and to its metric; ignored (False) once the run is closed."""
        if n <= 0:
            return False
        with self._lock:
            if self._closed:
                return False
            setattr(self, name, getattr(self, name) + n)
        metrics.COUNTERS[name].labels(camera=self.camera).inc(n)
        return True

    def close(self) -> int:
        """End the run: frames sent but neither acknowledged nor failed become failed. Returns how many."""
        with self._lock:
            pending = self.sent - self.acknowledged - self.failed
            self.failed += max(pending, 0)
            self._closed = True
        if pending > 0:
            metrics.FRAMES_FAILED.labels(camera=self.camera).inc(pending)
        return max(pending, 0)

    def as_dict(self) -> dict:
        return {
            "camera": self.camera,
            "source": self.source,
            **{f: getattr(self, f) for f in FIELDS},
            "error": self.error,
        }


@dataclass
class Summary:
    session: str
    cameras: dict[str, CameraStats] = field(default_factory=dict)
    elapsed_s: float = 0.0
    title: str = "camera run"

    @property
    def ok(self) -> bool:
        """No camera failed to read or deliver (drops are a policy, not a failure)."""
        return all(s.error is None and s.failed == 0 for s in self.cameras.values())

    def total(self, name: str) -> int:
        return sum(getattr(s, name) for s in self.cameras.values())

    def merge(self, other: Summary) -> Summary:
        """Add another run's counts (publishing several spool files of one camera, say)."""
        for camera, theirs in other.cameras.items():
            mine = self.cameras.setdefault(camera, CameraStats(camera, source=theirs.source))
            for name in FIELDS:
                setattr(mine, name, getattr(mine, name) + getattr(theirs, name))
            if theirs.error:
                mine.error = theirs.error if not mine.error else f"{mine.error}; {theirs.error}"
        self.elapsed_s += other.elapsed_s
        return self

    def as_dict(self) -> dict:
        return {
            "session": self.session,
            "elapsed_s": round(self.elapsed_s, 3),
            "cameras": [s.as_dict() for s in self.cameras.values()],
        }

    def table(self):
        from rich import box
        from rich.table import Table

        recording = self.total("recorded") > 0 and self.total("captured") == 0
        counts = ["recorded"] if recording else ["captured", "sent", "acknowledged", "dropped", "failed"]
        table = Table(title=f"{self.title}: session {self.session}, {self.elapsed_s:.1f} s", box=box.SIMPLE_HEAD)
        table.add_column("camera")
        for name in counts:
            table.add_column(name, justify="right")
        if not recording:
            table.add_column("MB sent", justify="right")
        table.add_column("fps", justify="right")
        for s in self.cameras.values():
            fps = f"{getattr(s, counts[0]) / self.elapsed_s:.1f}" if self.elapsed_s > 0 else "-"
            sent = [] if recording else [f"{s.bytes_sent / 1e6:.1f}"]
            table.add_row(
                s.camera,
                *(str(getattr(s, f)) for f in counts),
                *sent,
                fps,
                style=None if s.error is None and s.failed == 0 else "red",
            )
        return table

    def print(self, console=None) -> None:
        from rich.console import Console

        console = console or Console()
        console.print(self.table())
        for s in self.cameras.values():
            if s.error:
                console.print(f"[red]camera {s.camera}: {s.error}[/red]")
