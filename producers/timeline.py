"""Capture timestamps, frame-rate cap and real-time pacing for one camera.

Live sources are stamped when read. Media sources (files, folders, arrays) carry positions on their
own timeline; the run anchors that timeline at its start (shared by all cameras, so several files
stay in step), which gives each frame a monotonic ``capture_ns`` and a wall-clock time that do not
depend on how fast the frames are then sent: ``speed`` only changes when they leave.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from producers.sources import SourceFrame


@dataclass
class Anchor:
    """The instant a run starts, on both clocks."""

    mono_ns: int
    wall: float

    @classmethod
    def now(cls) -> Anchor:
        return cls(time.monotonic_ns(), time.time())


class Timeline:
    def __init__(
        self,
        anchor: Anchor,
        *,
        live: bool,
        speed: float = 1.0,
        fps: float | None = None,
        stop: threading.Event | None = None,
    ):
        if speed < 0:
            raise ValueError(f"speed must be 0 (as fast as possible) or positive, got {speed}")
        if fps is not None and fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.anchor, self.live, self.speed = anchor, live, speed
        self.period_ns = int(1e9 / fps) if fps else 0
        self.stop = stop or threading.Event()
        self._first_capture_ns: int | None = None
        self._next_due: int | None = None

    def stamped(self, source):
        """(frame, (capture_ns, wall_time)) for each frame of `source` kept by admit(), until the
        source ends or the run stops."""
        for frame in source:
            if self.stop.is_set():
                return
            stamps = self.admit(frame)
            if stamps is not None:
                yield frame, stamps
            elif self.stop.is_set():
                return

    def admit(self, frame: SourceFrame) -> tuple[int, float] | None:
        """(capture_ns, wall_time) for a frame to keep, after waiting for its time to be sent;
        None for a frame skipped by the rate cap or when the run is stopping."""
        if frame.capture_ns is not None:
            capture_ns = frame.capture_ns
            wall = frame.wall_time if frame.wall_time is not None else time.time()
            if self._first_capture_ns is None:
                self._first_capture_ns = capture_ns
            media_ns = capture_ns - self._first_capture_ns
        else:
            media_ns = int(round((frame.pts_s or 0.0) * 1e9))
            capture_ns = self.anchor.mono_ns + media_ns
            wall = self.anchor.wall + media_ns / 1e9
        if not self._keep(media_ns):
            return None
        if not self.live and self.speed > 0:
            delay_s = (self.anchor.mono_ns + media_ns / self.speed - time.monotonic_ns()) / 1e9
            if delay_s > 0 and self.stop.wait(delay_s):
                return None
        return None if self.stop.is_set() else (capture_ns, wall)

    def _keep(self, media_ns: int) -> bool:
        """The fps cap: keep a frame once its slot is due (a quarter period of slack for jitter)."""
        if not self.period_ns:
            return True
        if self._next_due is not None and media_ns + self.period_ns // 4 < self._next_due:
            return False
        if self._next_due is None or media_ns - self._next_due >= self.period_ns:
            self._next_due = media_ns + self.period_ns  # first frame, or after a gap: restart the grid
        else:
            self._next_due += self.period_ns
        return True
