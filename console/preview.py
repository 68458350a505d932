"""Live camera previews and per-session frame/pose counts, from the frames and smoothed-pose topics.

One background thread reads both topics without a consumer group, from their earliest records (the
embedded broker's end offsets cannot be trusted, so "latest" is whatever reading has reached). Per
camera it keeps the last few frames and smoothed poses; a preview is the newest frame that has its
smoothed pose, or the newest frame bare when the poses lag too far behind (or no processor runs).
Images are decoded and drawn only when a preview is asked for, and the result is cached.

The preview stays fresh when the machine cannot keep up: a partition the reader is more than
`skip_behind` records behind (by the high watermark of its last fetch) is moved forward to its last
`keep` records, and the records passed over are counted (booth_preview_skipped_total; the reader's
lag is booth_consumer_lag of the group named by PREVIEW_GROUP). Skipping is the preview's alone: the
dataset assembler reads every record in its own group. Session counts are of the records read.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from prometheus_client import Counter

from console.overlay import PreviewError, flag_counts, render_preview
from infra import kafka
from infra.consume import ConsumeLoop
from infra.settings import Settings
from schemas import Frame, SchemaError, SmoothedPose, decode

log = logging.getLogger(__name__)

SKIPPED = Counter(
    "booth_preview_skipped_total", "Records the console preview passed over to show the newest", ["topic"]
)


def preview_group(settings: Settings) -> str:
    """The name the preview reader's lag is reported under (it joins no consumer group)."""
    return f"{settings.app_id}-console-preview"


@dataclass(frozen=True)
class Preview:
    jpeg: bytes
    session: str
    camera: str
    seq: int
    posed: bool

    @property
    def etag(self) -> str:
        return f'"{self.session}.{self.seq}.{int(self.posed)}"'


@dataclass
class _Camera:
    frames: OrderedDict = field(default_factory=OrderedDict)  # (session, seq) -> Frame, arrival order
    poses: OrderedDict = field(default_factory=OrderedDict)  # (session, seq) -> SmoothedPose
    cache: Preview | None = None


@dataclass
class _SessionCounts:
    frames: int = 0
    poses: int = 0
    with_person: int = 0
    flagged_keypoints: int = 0  # keypoints of poses that carry flags
    imputed: int = 0
    outlier: int = 0
    cameras: set = field(default_factory=set)
    last_wall: float = 0.0

    def as_dict(self) -> dict:
        share = (lambda n: n / self.flagged_keypoints) if self.flagged_keypoints else (lambda n: None)
        return {
            "frames": self.frames,
            "poses": self.poses,
            "with_person": self.with_person,
            "imputed_share": share(self.imputed),
            "outlier_share": share(self.outlier),
            "cameras_seen": sorted(self.cameras),
            "last_frame_at": self.last_wall or None,
        }


def _put(buffer: OrderedDict, key, value, limit: int) -> None:
    buffer[key] = value
    buffer.move_to_end(key)
    while len(buffer) > limit:
        buffer.popitem(last=False)


class PreviewFeed:
    """Newest frame + pose per camera and per-session counts; `apply` is the whole update logic."""

    def __init__(
        self,
        settings: Settings,
        *,
        history: int = 48,
        max_pose_lag_s: float = 2.0,
        max_width: int = 640,
        retry_s: float = 2.0,
        skip_behind: int = 90,
        keep: int = 8,
    ):
        if not 0 < keep < skip_behind:
            raise ValueError(f"need 0 < keep < skip_behind, got keep={keep}, skip_behind={skip_behind}")
        self.settings = settings
        self.history = history
        self.max_pose_lag_s = max_pose_lag_s
        self.max_width = max_width
        self.retry_s = retry_s
        self.skip_behind = skip_behind
        self.keep = keep
        self.skipped = {"frames": 0, "poses": 0}
        for kind in self.skipped:
            SKIPPED.labels(kind)  # exported from the start, at 0
        self.invalid = 0
        self.last_error: str | None = None
        self._cameras: dict[str, _Camera] = {}
        self._sessions: dict[str, _SessionCounts] = {}
        self._purged: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- updating ------------------------------------------------------------------------------
    def apply(self, value: bytes | None) -> None:
        try:
            message = decode(value)
        except SchemaError as exc:
            self.invalid += 1
            self.last_error = f"invalid message on a preview topic: {exc}"
            return
        if not isinstance(message, (Frame, SmoothedPose)):
            return
        key = (message.session, message.seq)
        with self._lock:
            if message.session in self._purged:
                return
            cam = self._cameras.setdefault(message.camera, _Camera())
            counts = self._sessions.setdefault(message.session, _SessionCounts())
            counts.cameras.add(message.camera)
            if isinstance(message, Frame):
                _put(cam.frames, key, message, self.history)
                counts.frames += 1
                counts.last_wall = max(counts.last_wall, message.wall_time)
            else:
                _put(cam.poses, key, message, self.history)
                counts.poses += 1
                counts.with_person += bool(message.persons)
                if message.flags:
                    imputed, outlier = flag_counts(message)
                    counts.flagged_keypoints += len(message.flags)
                    counts.imputed += imputed
                    counts.outlier += outlier

    def _apply_all(self, records: list, _now: float) -> None:
        for record in records:
            self.apply(record.value)

    def forget(self, sessions) -> None:
        """Drop everything held of these (purged) sessions, and ignore their messages from now on."""
        new = set(sessions) - self._purged
        if not new:
            return
        with self._lock:
            self._purged |= new
            for session in new:
                self._sessions.pop(session, None)
            for name, cam in list(self._cameras.items()):
                for buffer in (cam.frames, cam.poses):
                    for key in [k for k in buffer if k[0] in new]:
                        del buffer[key]
                if cam.cache is not None and cam.cache.session in new:
                    cam.cache = None
                if not cam.frames and not cam.poses:
                    del self._cameras[name]

    def _skip_ahead(self, consumer) -> None:
        """Move every partition that is more than skip_behind records behind to its last `keep`."""
        for tp in consumer.assignment():
            end = consumer.highwater(tp)
            position = consumer.position(tp, timeout_ms=0) if end is not None else None
            if position is None or end - position <= self.skip_behind:
                continue
            consumer.seek(tp, end - self.keep)
            kind = "frames" if tp.topic == self.settings.topic_frames else "poses"
            passed = end - self.keep - position
            self.skipped[kind] += passed
            SKIPPED.labels(kind).inc(passed)

    # --- reading -------------------------------------------------------------------------------
    def _pick(self, cam: _Camera) -> tuple[Frame, SmoothedPose | None] | None:
        if not cam.frames:
            return None
        newest = next(reversed(cam.frames.values()))
        for key in reversed(cam.frames):
            if key in cam.poses:
                frame = cam.frames[key]
                if frame.session == newest.session and newest.wall_time - frame.wall_time <= self.max_pose_lag_s:
                    return frame, cam.poses[key]
                break
        return newest, None

    def preview(self, camera: str) -> Preview | None:
        """The camera's current preview (drawn on first request, then cached), or None if unseen."""
        with self._lock:
            cam = self._cameras.get(camera)
            picked = self._pick(cam) if cam else None
            cached = cam.cache if cam else None
        if cam is None or picked is None:
            return None
        frame, pose = picked
        if cached and (cached.session, cached.seq, cached.posed) == (frame.session, frame.seq, pose is not None):
            return cached
        jpeg = render_preview(frame, pose, max_width=self.max_width)
        result = Preview(jpeg, frame.session, frame.camera, frame.seq, pose is not None)
        with self._lock:
            cam.cache = result
        return result

    def cameras(self, now: float | None = None) -> list[dict]:
        now = time.time() if now is None else now
        rows = []
        with self._lock:
            for name, cam in sorted(self._cameras.items()):
                picked = self._pick(cam)
                if picked is None:
                    continue
                frame, pose = picked
                imputed, outlier = flag_counts(pose)
                rows.append(
                    {
                        "camera": name,
                        "session": frame.session,
                        "seq": frame.seq,
                        "width": frame.width,
                        "height": frame.height,
                        "wall_time": frame.wall_time,
                        "age_s": max(0.0, now - frame.wall_time),
                        "posed": pose is not None,
                        "person": bool(pose and pose.persons),
                        "imputed": imputed,
                        "outlier": outlier,
                        "url": f"/api/preview/{name}.jpg",
                    }
                )
        return rows

    def latest_pose(self, session: str) -> SmoothedPose | None:
        """The newest smoothed pose of the session, any camera (the display's live skeleton)."""
        best = None
        with self._lock:
            for cam in self._cameras.values():
                for key in reversed(cam.poses):
                    if key[0] == session:
                        pose = cam.poses[key]
                        if best is None or pose.wall_time > best.wall_time:
                            best = pose
                        break
        return best

    def sessions(self) -> dict[str, dict]:
        with self._lock:
            return {name: c.as_dict() for name, c in self._sessions.items()}

    # --- the reader thread ---------------------------------------------------------------------
    def start(self) -> PreviewFeed:
        self._thread = threading.Thread(target=self._run, name="console-preview", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout)

    def _assign(self, consumer) -> bool:
        from kafka import TopicPartition

        assigned, missing = [], []
        for topic in (self.settings.topic_frames, self.settings.topic_smoothed):
            parts = consumer.partitions_for_topic(topic)
            if not parts:
                missing.append(topic)
            assigned += [TopicPartition(topic, p) for p in sorted(parts or ())]
        if missing:
            self.last_error = f"preview: topic {', '.join(missing)} does not exist yet"
            return False
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        self.last_error = None
        return True

    def _read(self, consumer) -> None:
        def tick(_now: float, _backlog: bool) -> bool:
            self._skip_ahead(consumer)
            return False  # nothing to commit: the reader has no group

        ConsumeLoop(
            consumer,
            self._apply_all,
            tick=tick,
            lag_group=preview_group(self.settings),
            poll_ms=200,
            max_records=500,
            stop=self._stop,
        ).run()

    def _run(self) -> None:
        while not self._stop.is_set():
            consumer = None
            try:
                consumer = kafka.consumer(self.settings, group_id=None)
                if not self._assign(consumer):
                    self._stop.wait(self.retry_s)
                    continue
                self._read(consumer)
            except Exception as exc:  # noqa: BLE001 - a broker hiccup must not end the previews
                self.last_error = f"preview reader: {type(exc).__name__}: {exc}"
                log.warning("%s; retrying in %.0fs", self.last_error, self.retry_s)
                # Starting over re-reads from the beginning; counts restart with it.
                with self._lock:
                    self._cameras.clear()
                    self._sessions.clear()
                self._stop.wait(self.retry_s)
            finally:
                if consumer is not None:
                    consumer.close()


__all__ = ["Preview", "PreviewError", "PreviewFeed"]
