"""The live mirror: the reference dancer does what a camera's visitor does, as it happens.

A reader thread takes the camera's smoothed poses from the smoothed-pose topic (no consumer group,
from the live end: only the present matters) and offers each to the Mirror; a render thread turns
the newest into a frame of the dancer:

- the visitor's pose is the camera's main person (SmoothedPose.persons: the track the session
  follows), never one of the others in the picture;
- it is normalized from the visitor's body to the dancer's with the trainer's normalization
  (trainer.normalize: fitted on the visitor's recent poses against the reference's, refitted as
  they come), then rendered by the dancer's generator (trainer.references.generator) at the
  reference's framing;
- the newest pose wins: a pose not yet rendered when a newer one comes is dropped (superseded),
  and a pose older than max_age_s when its turn comes is dropped (stale); both are counted, so a
  slow machine shows a lower rate, never a growing delay;
- without a generator of the dancer the frame is the dancer's skeleton (the normalized pose map)
  with a line saying so; a visitor who leaves (poses without a person, or no poses) is held at
  the last pose for hold_s, then the dancer idles at rest (their median pose in the reference).

Each frame is a JPEG with its number, the capture time of its pose and its delay (capture to
encoded frame); the console streams them (console.mirror). Rate, delay and drops are Prometheus
metrics (booth_mirror_*) and in `state()`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
from prometheus_client import Counter, Gauge, Histogram

from schemas import SchemaError, SmoothedPose, decode
from schemas.keypoints import NUM_KEYPOINTS

log = logging.getLogger(__name__)

FRAMES = Counter("booth_mirror_frames_total", "Frames of the reference dancer the mirror rendered", ["camera"])
DROPPED = Counter(
    "booth_mirror_dropped_poses_total",
    "Poses the mirror did not render: superseded (a newer one came first), stale (too old when their "
    "turn came), invalid (undecodable)",
    ["camera", "reason"],
)
DELAY = Histogram(
    "booth_mirror_delay_seconds",
    "From the capture of a pose's frame to the mirror's frame of it encoded",
    ["camera"],
    buckets=(0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.0),
)
RATE = Gauge("booth_mirror_fps", "Frames a second the mirror rendered over the last few seconds", ["camera"])
GENERATOR = Gauge(
    "booth_mirror_generator", "1 when the mirror renders the dancer's generator, 0 the skeleton", ["camera"]
)

REFIT_EVERY = 30  # poses between refits of the visitor -> dancer normalization
WINDOW = 150  # the visitor's recent poses the normalization is fitted on
MIN_FIT = 5  # poses before a normalization is fitted (until then: the first pose's body alone)
SCORE = 0.3


@dataclass(frozen=True)
class MirrorFrame:
    number: int  # counts up from 1 per mirror
    jpeg: bytes
    mode: str  # "dancer", "skeleton", "holding", "idle"
    capture_wall: float | None  # wall time of the pose's capture (None: idle, no pose)
    delay_s: float | None
    pose: np.ndarray | None = None  # [17, 3] the pose drawn, in the frame's pixels (the dancer's body)


@dataclass
class _Offer:
    pose: np.ndarray | None  # [17, 3] the main person, None: nobody in the frame
    capture_wall: float
    seq: int


def main_person(message: SmoothedPose) -> np.ndarray | None:
    """The camera's main person (the tracked one) as [17, 3], or None when nobody is in the frame."""
    if not message.persons:
        return None
    pose = np.asarray(message.persons[0].keypoints, np.float32)
    return pose if pose.shape == (NUM_KEYPOINTS, 3) else None


class Mirror:
    """Newest visitor pose in, frames of the dancer out (see the module docstring).

    dancer: a trainer.references.generator.DancerGenerator, or None for the skeleton; ref: the
    reference (poses, src_size) when there is no dancer. Thread-safe: offer() from the reader,
    step() from the renderer, latest()/wait()/state() from the web server."""

    def __init__(
        self,
        camera: str,
        ref,
        dancer=None,
        *,
        why_no_dancer: str = "",
        max_age_s: float = 0.5,
        hold_s: float = 2.0,
        width: int = 480,
        jpeg_quality: int = 80,
        clock: Callable[[], float] = time.time,
    ):
        from trainer.framing import DEFAULT_STYLES, WholeFrame

        self.camera, self.ref, self.dancer = camera, ref, dancer
        self.why_no_dancer = why_no_dancer
        self.max_age_s, self.hold_s, self.jpeg_quality, self.clock = max_age_s, hold_s, jpeg_quality, clock
        w, h = ref.src_size
        self.k = min(1.0, width / w)  # reference pixels -> displayed pixels
        self.size = (max(2, round(w * self.k)), max(2, round(h * self.k)))
        style = (dancer.info.get("posemap_style") if dancer else None) or DEFAULT_STYLES["whole"]
        gen_size = int(dancer.info["size"]) if dancer else 256
        self.framing = WholeFrame(gen_size, style, "pose", {"mirror": self.size})
        usable = np.asarray(ref.usable, bool) if ref.usable is not None else np.ones(len(ref.poses), bool)
        self.ref_poses = np.asarray(ref.poses, np.float32)[usable] if usable.any() else np.asarray(ref.poses)
        self.rest = np.median(self.ref_poses, axis=0).astype(np.float32)  # the dancer at rest
        self._recent: deque[np.ndarray] = deque(maxlen=WINDOW)
        self._normalizer = None
        self._since_fit = 0
        self._lock = threading.Condition()
        self._offer: _Offer | None = None
        self._frame: MirrorFrame | None = None
        self._last_person_wall: float | None = None
        self._last_pose: np.ndarray | None = None  # the visitor's, as rendered last
        self._idle = False
        self.counts = {"offered": 0, "rendered": 0, "superseded": 0, "stale": 0, "invalid": 0, "no_person": 0}
        self._times: deque[float] = deque(maxlen=120)
        self._delays: deque[float] = deque(maxlen=300)
        GENERATOR.labels(camera).set(1 if dancer else 0)
        for reason in ("superseded", "stale", "invalid"):
            DROPPED.labels(camera, reason)

    # --- in ------------------------------------------------------------------------------------
    def offer_message(self, value: bytes | None) -> None:
        """A record of the smoothed-pose topic: this camera's poses are offered, others ignored."""
        try:
            message = decode(value)
        except SchemaError as exc:
            self._count("invalid")
            log.warning("mirror %s: invalid message on the smoothed-pose topic: %s", self.camera, exc)
            return
        if isinstance(message, SmoothedPose) and message.camera == self.camera:
            self.offer(main_person(message), message.wall_time, message.seq)

    def offer(self, pose: np.ndarray | None, capture_wall: float, seq: int = 0) -> None:
        """The newest pose of the camera's main person (None: nobody); an unrendered older one is dropped."""
        with self._lock:
            self.counts["offered"] += 1
            if self._offer is not None:
                self.counts["superseded"] += 1
                DROPPED.labels(self.camera, "superseded").inc()
            self._offer = _Offer(pose, capture_wall, seq)
            self._lock.notify_all()

    def _count(self, reason: str) -> None:
        with self._lock:
            self.counts[reason] += 1
        DROPPED.labels(self.camera, reason).inc()

    # --- rendering -----------------------------------------------------------------------------
    def _normalize(self, pose: np.ndarray) -> np.ndarray:
        """The visitor's pose placed and sized as the dancer (reference pixels)."""
        from trainer.normalize import fit_body_normalizer, fit_normalizer

        self._recent.append(pose)
        self._since_fit += 1
        if self._normalizer is None or (self._since_fit >= REFIT_EVERY and len(self._recent) >= MIN_FIT):
            visitor = np.stack(self._recent)
            try:
                self._normalizer = fit_normalizer(visitor, self.ref_poses)
            except ValueError:  # feet or head not seen yet: by the body alone, as a session's dance is
                try:
                    self._normalizer = fit_body_normalizer(visitor, self.ref_poses)  # type: ignore[assignment]
                except ValueError:
                    return pose  # too little of a person to place: drawn where it is
            self._since_fit = 0
        return self._normalizer.apply(pose)

    def _drawn(self, pose_ref: np.ndarray) -> np.ndarray:
        """A pose in reference pixels in the displayed frame's pixels."""
        pose = np.array(pose_ref, np.float32, copy=True)
        pose[:, :2] *= self.k
        return pose

    def _draw(self, pose_ref: np.ndarray, note: str) -> tuple[np.ndarray, str]:
        """(RGB frame at the display size, mode) of a pose in reference pixels."""
        pose = self._drawn(pose_ref)
        if self.dancer is not None:
            [(frame, _map)] = list(self.framing.frames(self.dancer.generator, pose[None], "mirror"))
            mode = "dancer"
        else:
            from trainer.framing import unletterbox
            from vision.posemap import render_pose_map

            drawn = render_pose_map(pose, self.size, self.framing.size, style=self.framing.style)
            frame = unletterbox(drawn, self.size)
            frame = _caption(frame, self.why_no_dancer or "no generator of this dancer yet")
            mode = "skeleton"
        if note:
            frame = _caption(frame, note, bottom=True)
        return frame, mode

    def _publish(
        self, rgb: np.ndarray, mode: str, capture_wall: float | None, pose: np.ndarray | None = None
    ) -> MirrorFrame:
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        ok, jpg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        now = self.clock()
        delay = None if capture_wall is None else max(0.0, now - capture_wall)
        with self._lock:
            number = (self._frame.number if self._frame else 0) + 1
            self._frame = MirrorFrame(number, jpg.tobytes(), mode, capture_wall, delay, pose)
            self.counts["rendered"] += 1
            self._times.append(now)
            if delay is not None:
                self._delays.append(delay)
            self._lock.notify_all()
        FRAMES.labels(self.camera).inc()
        if delay is not None:
            DELAY.labels(self.camera).observe(delay)
        RATE.labels(self.camera).set(self.fps())
        return self._frame

    def step(self, timeout: float = 0.2) -> MirrorFrame | None:
        """Render the newest pose (waiting up to timeout for one); None when nothing was rendered.
        Also moves a mirror whose visitor has gone from holding to idle."""
        with self._lock:
            if self._offer is None:
                self._lock.wait(timeout)
            offer, self._offer = self._offer, None
        now = self.clock()
        if offer is None:
            return self._maybe_idle(now)
        if now - offer.capture_wall > self.max_age_s:
            self._count("stale")
            return None
        if offer.pose is None or (offer.pose[:, 2] >= SCORE).sum() < 3:
            with self._lock:
                self.counts["no_person"] += 1
            return self._maybe_idle(now)
        self._last_person_wall, self._idle = now, False
        self._last_pose = offer.pose
        placed = self._normalize(offer.pose)
        rgb, mode = self._draw(placed, "")
        return self._publish(rgb, mode, offer.capture_wall, self._drawn(placed))

    def _maybe_idle(self, now: float) -> MirrorFrame | None:
        """The visitor has gone: the last frame holds for hold_s, then the dancer idles at rest."""
        if self._idle:
            return None
        gone_since = self._last_person_wall
        if gone_since is not None and now - gone_since < self.hold_s:
            return None  # the last frame stays on the screen: holding
        self._idle = True
        rgb, _mode = self._draw(self.rest, "waiting for a visitor")
        return self._publish(rgb, "idle", None, self._drawn(self.rest))

    # --- out -----------------------------------------------------------------------------------
    def latest(self) -> MirrorFrame | None:
        with self._lock:
            return self._frame

    def wait(self, after: int, timeout: float) -> MirrorFrame | None:
        """The first frame numbered above `after`, waiting up to timeout; None if none came."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._frame is None or self._frame.number <= after:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._lock.wait(left)
            return self._frame

    def fps(self, window_s: float = 3.0) -> float:
        now = self.clock()
        with self._lock:
            recent = [t for t in self._times if now - t <= window_s]
        if len(recent) < 2:
            return 0.0
        return (len(recent) - 1) / max(recent[-1] - recent[0], 1e-6)

    def mode(self) -> str:
        if self._idle or self._frame is None:
            return "idle"
        if self._last_person_wall is not None and self.clock() - self._last_person_wall > 0.5:
            return "holding"
        return self._frame.mode

    def state(self) -> dict:
        with self._lock:
            delays = sorted(self._delays)
            counts = dict(self.counts)
        pct = (lambda q: round(delays[min(len(delays) - 1, int(q * len(delays)))] * 1000, 1)) if delays else None
        return {
            "camera": self.camera,
            "reference": self.ref.name,
            "reference_version": self.ref.version,
            "generator": self.dancer is not None,
            "message": "" if self.dancer is not None else (self.why_no_dancer or "no generator of this dancer yet"),
            "mode": self.mode(),
            "fps": round(self.fps(), 2),
            "delay_ms_p50": pct(0.5) if pct else None,
            "delay_ms_p95": pct(0.95) if pct else None,
            **counts,
        }

    # --- threads -------------------------------------------------------------------------------
    def run_renderer(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.step()
            except Exception:
                log.exception("mirror %s: rendering failed", self.camera)
                stop.wait(0.5)


def _caption(rgb: np.ndarray, text: str, bottom: bool = False) -> np.ndarray:
    out = np.ascontiguousarray(rgb).copy()
    h = out.shape[0]
    y = h - 10 if bottom else 20
    for colour, weight in (((0, 0, 0), 3), ((255, 255, 255), 1)):
        cv2.putText(out, text[:80], (8, y), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, weight, cv2.LINE_AA)
    return out


def load_mirror(settings, camera: str, reference: str, **options) -> Mirror:
    """A Mirror of `reference`'s dancer for `camera`: with its generator when one is trained, else
    the skeleton and why. FileNotFoundError when there is no such reference."""
    from trainer.references import load_reference_version
    from trainer.references.generator import NoGenerator, load_dancer

    try:
        # One torch thread: beside the pose stage on two cores, more threads only contend (bench_mirror).
        dancer = load_dancer(settings, reference, threads=options.pop("threads", 1))
        return Mirror(camera, dancer.ref, dancer, **options)
    except NoGenerator as exc:
        options.pop("threads", None)
        return Mirror(camera, load_reference_version(settings, reference), None, why_no_dancer=str(exc), **options)


class MirrorFeed:
    """A Mirror fed from the smoothed-pose topic, with its reader and renderer threads."""

    def __init__(self, settings, mirror: Mirror, retry_s: float = 2.0):
        import uuid

        self.settings, self.mirror, self.retry_s = settings, mirror, retry_s
        self.id = uuid.uuid4().hex[:12]  # a page whose stream came from another feed reopens it
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> MirrorFeed:
        for target, name in ((self._read, "reader"), (self.mirror.run_renderer, "renderer")):
            args = () if target == self._read else (self._stop,)
            t = threading.Thread(target=target, args=args, name=f"mirror-{self.mirror.camera}-{name}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout)

    def _read(self) -> None:
        from kafka import TopicPartition

        from infra import kafka

        while not self._stop.is_set():
            consumer = None
            try:
                consumer = kafka.consumer(self.settings, group_id=None)
                parts = consumer.partitions_for_topic(self.settings.topic_smoothed)
                if not parts:
                    self.last_error = f"topic {self.settings.topic_smoothed} does not exist yet"
                    self._stop.wait(self.retry_s)
                    continue
                assigned = [TopicPartition(self.settings.topic_smoothed, p) for p in sorted(parts)]
                consumer.assign(assigned)
                consumer.seek_to_end(*assigned)  # live: what was before the mirror started is past
                self.last_error = None
                while not self._stop.is_set():
                    batches = consumer.poll(timeout_ms=100, max_records=500)
                    for records in batches.values():
                        for record in records:
                            self.mirror.offer_message(record.value)
            except Exception as exc:  # noqa: BLE001 - a broker hiccup must not end the mirror
                self.last_error = f"mirror reader: {type(exc).__name__}: {exc}"
                log.warning("%s; retrying in %.0fs", self.last_error, self.retry_s)
                self._stop.wait(self.retry_s)
            finally:
                if consumer is not None:
                    consumer.close()


def replay(mirror: Mirror, poses: list, walls: list[float], seconds: float = 3.0) -> list[MirrorFrame]:
    """Offer recorded poses (each [17, 3] or None) to a running-free mirror at their own pace, for at
    most `seconds`, as if live (their capture times shifted to now); the frames it rendered.
    The demo shows the mirror this way on its own clip."""
    if not poses:
        return []
    stop = threading.Event()
    renderer = threading.Thread(target=mirror.run_renderer, args=(stop,), name="mirror-replay", daemon=True)
    renderer.start()
    frames: list[MirrorFrame] = []
    shown = 0
    t0, w0 = time.time(), walls[0]
    try:
        for pose, wall in zip(poses, walls):
            due = t0 + (wall - w0)
            if due - t0 > seconds:
                break
            while time.time() < due:  # collect what was rendered while waiting for the pose's time
                frame = mirror.wait(shown, max(0.0, due - time.time()))
                if frame is not None and frame.number > shown:
                    shown = frame.number
                    frames.append(frame)
            mirror.offer(pose, time.time())
        frame = mirror.wait(shown, 0.5)
        if frame is not None and frame.number > shown:
            frames.append(frame)
    finally:
        stop.set()
        renderer.join(2)
    return frames
