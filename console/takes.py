"""The console runs the take: a guide (console.guide) per recording session, the configured cameras
as supervised children (`booth camera`), and the dances the display and the picker show.

A session the console starts gets a guide with its target and time cap, and the cameras in
settings console_cameras. A session started elsewhere (the command line) that publishes no
coverage of its own within FOLLOW_AFTER_S gets a guide too, without an end of its own, so the
display and the console follow it. A camera child ends with its session (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from console.guide import Guide, Take
from infra.settings import Settings

log = logging.getLogger(__name__)

FOLLOW_AFTER_S = 3.0
FOLLOW_WITHIN_S = 600.0  # sessions started longer ago than this are not picked up
DANCE_FRAMES = 300  # the display's and the picker's copy of a dance: evenly spaced frames


@dataclass
class _Take:
    session: str
    guide: Guide | None
    thread: threading.Thread
    stop: threading.Event
    cameras: subprocess.Popen | None = None
    camera_log: Path | None = None
    own: bool = True
    error: str | None = None
    started: float = field(default_factory=time.time)


class Takes:
    def __init__(self, settings: Settings):
        self.settings = settings
        self._takes: dict[str, _Take] = {}
        self._dances: dict[tuple[str, int], dict] = {}
        self._lock = threading.Lock()

    # --- the dances --------------------------------------------------------------------------
    def dance(self, name: str) -> dict:
        """{name, version, fps, size, frames, poses}: the reference's poses for drawing (at most
        DANCE_FRAMES, rounded to a pixel); FileNotFoundError for an unknown one."""
        from trainer.references import load_reference_version
        from trainer.references.store import latest_version

        version = latest_version(self.settings, name)
        if version is None:
            raise FileNotFoundError(f"no reference dance named {name}")
        with self._lock:
            cached = self._dances.get((name, version))
        if cached is not None:
            return cached
        ref = load_reference_version(self.settings, name, version)
        pick = np.unique(np.linspace(0, len(ref.poses) - 1, min(len(ref.poses), DANCE_FRAMES)).round().astype(int))
        times = ref.times[pick] - ref.times[0]
        duration = float(ref.times[-1] - ref.times[0]) if len(ref.times) > 1 else 0.0
        out = {
            "name": name,
            "version": version,
            "size": list(ref.src_size),
            "frames": len(ref.poses),
            "duration_s": round(duration, 3),
            "times": [round(float(t), 3) for t in times],
            "poses": np.round(ref.poses[pick], 1).tolist(),
        }
        with self._lock:
            self._dances[(name, version)] = out
        return out

    # --- the takes ---------------------------------------------------------------------------
    def start(self, session: str, reference: str, take: Take, *, started_at: float, own: bool = True) -> None:
        """For the console's own sessions, start the cameras; then follow the session (a guide
        thread). A dance that cannot be read leaves the session recording without a meter, said
        in the take's error."""
        entry = _Take(session, None, threading.Thread(target=lambda: None), threading.Event(), own=own)
        with self._lock:
            self._takes[session] = entry
        if own:
            self._start_cameras(entry, take)
        try:
            entry.guide = Guide(self.settings, session, reference, take, started_at=started_at, end_session=own)
        except (FileNotFoundError, KeyError, ValueError) as exc:
            entry.error = f"no coverage meter for {session}: reference dance {reference!r} cannot be read ({exc})"
            log.warning("%s", entry.error)
            return
        entry.thread = threading.Thread(target=self._run, args=(entry,), name=f"guide-{session}", daemon=True)
        entry.thread.start()

    def end(self, session: str) -> None:
        """The operator ended the session: its cameras stop now (its guide sees the end itself)."""
        entry = self._takes.get(session)
        if entry is not None:
            threading.Thread(target=self._stop_cameras, args=(entry,), daemon=True).start()

    def _run(self, entry: _Take) -> None:
        try:
            if entry.guide is not None:
                entry.guide.run(entry.stop)
        except Exception as exc:  # noqa: BLE001 - said on the console; the session still records
            entry.error = f"the coverage guide of {entry.session} stopped: {type(exc).__name__}: {exc}"
            log.warning("%s", entry.error)
        finally:
            self._stop_cameras(entry)

    def _start_cameras(self, entry: _Take, take: Take) -> None:
        sources = self.settings.console_camera_sources()
        if not sources:
            return
        args = [sys.executable, "-m", "booth.cli", "camera", "--session", entry.session, "--no-metrics"]
        for camera, source in sources.items():
            args += ["--source", f"{camera}={source}"]
        if take.max_seconds:
            args += ["--duration", f"{take.max_seconds + 5:g}"]  # a last stop, should the guide die
        fd, name = tempfile.mkstemp(prefix=f"booth-camera-{entry.session}-", suffix=".log")
        entry.camera_log = Path(name)
        with os.fdopen(fd, "wb") as out:
            entry.cameras = subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, env=self.settings.to_env(), start_new_session=True
            )

    def _stop_cameras(self, entry: _Take, grace: float = 5.0) -> None:
        child = entry.cameras
        if child is None or child.poll() is not None:
            return
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(grace)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(grace)

    def follow(self, rows: list[dict], now: float | None = None) -> None:
        """Guide the recording sessions started elsewhere that nobody guides (see module doc)."""
        now = time.time() if now is None else now
        for row in rows:
            started = row.get("started_at")
            if row.get("state") != "start" or not started or not row.get("reference"):
                continue
            if row["session"] in self._takes or row.get("coverage") is not None:
                continue
            if not FOLLOW_AFTER_S <= now - started <= FOLLOW_WITHIN_S:
                continue
            self.start(row["session"], row["reference"], Take(), started_at=started, own=False)

    def status(self, session: str) -> dict[str, Any] | None:
        entry = self._takes.get(session)
        if entry is None:
            return None
        cameras = None
        if entry.cameras is not None:
            rc = entry.cameras.poll()
            cameras = {"running": rc is None, "exit_code": rc, "log": str(entry.camera_log)}
        return {"own": entry.own, "cameras": cameras, "error": entry.error, "guided": entry.guide is not None}

    def errors(self) -> list[str]:
        return [e.error for e in list(self._takes.values()) if e.error]

    def close(self) -> None:
        for entry in list(self._takes.values()):
            entry.stop.set()
        for entry in list(self._takes.values()):
            if entry.thread.is_alive():
                entry.thread.join(5)
            self._stop_cameras(entry)
