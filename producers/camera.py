"""Camera runs: capture -> fit inside --size -> JPEG -> bounded queue -> Kafka, one pair of threads per camera.

The capture thread reads, stamps, resizes and encodes, then hands the message to a bounded
FrameQueue; it never touches the network. The sender thread takes from the queue and calls the
(shared, thread-safe) KafkaProducer; the send futures' callbacks count acknowledgements and
failures. Every count is mirrored in the Prometheus metrics (producers.metrics).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import cast

import cv2

from infra.settings import Settings
from producers import metrics
from producers.broker import connect
from producers.frame_queue import POLICIES, FrameQueue, Policy
from producers.sources import Source, SourceError, open_source
from producers.summary import CameraStats, Summary
from producers.timeline import Anchor, Timeline
from producers.workers import Worker
from schemas import Frame, SessionEvent, frame_key, validate_id
from schemas.messages import MAX_FRAME_PIXELS, MAX_FRAME_SIDE

log = logging.getLogger(__name__)

DEFAULT_SIZE = (640, 480)


def check_size(size: tuple[int, int]) -> None:
    """A frame size the Frame schema accepts (at least 16 pixels a side, at most 8K)."""
    if len(size) != 2 or not all(isinstance(v, int) and 16 <= v <= MAX_FRAME_SIDE for v in size):
        raise ValueError(f"size must be (width, height) in pixels between 16 and {MAX_FRAME_SIDE}, got {size}")
    if size[0] * size[1] > MAX_FRAME_PIXELS:
        raise ValueError(f"size {size[0]}x{size[1]} is more than {MAX_FRAME_PIXELS} pixels (8K)")


def check_options(
    size: tuple[int, int],
    quality: int,
    queue_size: int,
    policy: str,
    speed: float,
    fps: float | None,
    max_frames: int | None,
) -> None:
    """Reject bad run options with a message naming the option."""
    check_size(size)
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be between 1 and 100, got {quality}")
    if queue_size < 1:
        raise ValueError(f"queue size must be at least 1, got {queue_size}")
    if policy not in POLICIES:
        raise ValueError(f"queue policy {policy!r} is not one of {', '.join(POLICIES)}")
    if speed < 0:
        raise ValueError(f"speed must be 0 (as fast as possible) or positive, got {speed}")
    if fps is not None and fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max frames must be at least 1, got {max_frames}")


def open_sources(sources: Mapping[str, object], size=None, fps=None) -> dict[str, Source]:
    """Validate the camera ids and open every source; nothing stays open if one fails."""
    if not sources:
        raise SourceError("no sources given")
    opened: dict[str, Source] = {}
    try:
        for camera, spec in sources.items():
            validate_id(camera, "camera id")
            try:
                opened[camera] = open_source(spec, size=size, fps=fps)
            except SourceError as exc:
                raise SourceError(f"camera {camera}: {exc}") from None
    except BaseException:
        for source in opened.values():
            source.close()
        raise
    return opened


def fit_size(source: tuple[int, int], bound: tuple[int, int]) -> tuple[int, int]:
    """The size a frame of ``source`` (width, height) is sent at under the bound ``bound``: shrunk
    to fit inside it (never enlarged: that adds bytes, not detail), aspect kept, both sides even
    (the video encoders' 4:2:0 chroma needs it), so the aspect changes by at most a pixel's worth.

    A 1280x720 camera under 640x480 is sent at 640x360, a 1024x512 clip at 640x320."""
    width, height = int(source[0]), int(source[1])
    if width < 16 or height < 16:
        raise ValueError(f"a {width}x{height} frame is too small (at least 16 pixels a side)")
    scale = min(1.0, bound[0] / width, bound[1] / height)
    return max(16, int(width * scale + 0.5) // 2 * 2), max(16, int(height * scale + 0.5) // 2 * 2)


def encode_jpeg(image, bound: tuple[int, int], quality: int) -> tuple[bytes, int, int]:
    """JPEG-encode a BGR image at fit_size(its size, bound); returns (jpeg, width, height)."""
    height, width = image.shape[:2]
    size = fit_size((width, height), bound)
    if size != (width, height):
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("the JPEG encoder refused the frame")
    return buffer.tobytes(), size[0], size[1]


class _RateLimitedWarning:
    """Log the first problem at once, then at most one summary line every few seconds."""

    def __init__(self, every_s: float = 5.0):
        self.every_s, self._last, self._held = every_s, 0.0, 0
        self._lock = threading.Lock()

    def __call__(self, message: str, *args) -> None:
        with self._lock:
            now = time.monotonic()
            if now - self._last < self.every_s:
                self._held += 1
                return
            held, self._held, self._last = self._held, 0, now
        log.warning(message + (f" (and {held} more since the last report)" if held else ""), *args)


class CameraPipeline:
    """One camera's capture and sender threads."""

    def __init__(
        self,
        settings: Settings,
        session: str,
        camera: str,
        source: Source,
        producer,
        *,
        anchor: Anchor,
        size=DEFAULT_SIZE,
        quality: int = 90,
        queue_size: int = 8,
        policy: str = "drop-oldest",
        speed: float = 1.0,
        fps: float | None = None,
        max_frames: int | None = None,
        stop: threading.Event | None = None,
    ):
        self.settings, self.session, self.camera, self.source = settings, session, camera, source
        self.producer, self.size, self.quality, self.max_frames = producer, tuple(size), quality, max_frames
        self.topic, self.key = settings.topic_frames, frame_key(session, camera)
        self.stop = stop or threading.Event()
        self.abandon = threading.Event()  # set when a stopped run cannot drain: the queue is discarded
        self.stats = CameraStats(camera, source=source.description)
        self.last_acknowledged = -1  # the seq of the last frame the broker took (for the end marker)
        self._last_lock = threading.Lock()
        depth = metrics.QUEUE_DEPTH.labels(camera=camera)
        self.queue = FrameQueue(
            queue_size, cast(Policy, policy), on_drop=lambda n: self.stats.count("dropped", n), on_depth=depth.set
        )
        self.timeline = Timeline(anchor, live=source.live, speed=speed, fps=fps, stop=self.stop)
        self._encode_time = metrics.ENCODE_SECONDS.labels(camera=camera)
        self._warn = _RateLimitedWarning()
        self.capture = Worker(self._capture, f"capture-{camera}")
        self.sender = Worker(self._send, f"send-{camera}")

    def start(self) -> CameraPipeline:
        self.capture.start()
        self.sender.start()
        return self

    # --- capture thread ---------------------------------------------------------------------------
    def _capture(self) -> None:
        counter = 0
        try:
            for frame, (capture_ns, wall) in self.timeline.stamped(self.source):
                seq = frame.seq if frame.seq is not None else counter
                counter = seq + 1
                started = time.perf_counter()
                jpeg, width, height = encode_jpeg(frame.image, self.size, self.quality)
                self._encode_time.observe(time.perf_counter() - started)
                value = Frame(
                    session=self.session,
                    camera=self.camera,
                    seq=seq,
                    capture_ns=capture_ns,
                    wall_time=wall,
                    width=width,
                    height=height,
                    image=jpeg,
                ).encode()
                self.stats.count("captured")
                self.queue.put((seq, value))
                if self.max_frames is not None and self.stats.captured >= self.max_frames:
                    break
        except SourceError as exc:
            self.stats.error = str(exc)
            log.error("camera %s: %s", self.camera, exc)
        except Exception as exc:
            self.stats.error = f"{type(exc).__name__}: {exc}"
            log.exception("camera %s: capture failed", self.camera)
        finally:
            self.queue.close()

    # --- sender thread ----------------------------------------------------------------------------
    def _send(self) -> None:
        backoff = 0.0
        while True:
            item = self.queue.get()
            if item is None:
                return
            seq, value = item
            if self.abandon.is_set():
                self.stats.count("dropped")
                self.queue.discard()  # counts what it discards
                continue
            self.stats.count("sent")
            self.stats.count("bytes_sent", len(value))
            try:
                future = self.producer.send(self.topic, key=self.key, value=value)
            except Exception as exc:  # noqa: BLE001 - KafkaTimeoutError (no metadata), buffer full, closed producer
                self.stats.count("failed")
                backoff = min(max(backoff * 2, 0.25), 5.0)
                self._warn(
                    "camera %s: frame not handed to the broker at %s (%s); backing off %.2f s",
                    self.camera,
                    self.settings.kafka_bootstrap,
                    exc,
                    backoff,
                )
                self.abandon.wait(backoff)
                continue
            backoff = 0.0
            future.add_callback(self._acknowledged, seq)
            future.add_errback(self._failed)

    def _acknowledged(self, seq: int, _metadata) -> None:
        if self.stats.count("acknowledged"):
            with self._last_lock:
                self.last_acknowledged = max(self.last_acknowledged, seq)

    def _failed(self, exc) -> None:
        if self.stats.count("failed"):
            self._warn("camera %s: the broker did not take a frame: %s", self.camera, exc)


def run_cameras(
    settings: Settings,
    session: str,
    sources: Mapping[str, object],
    *,
    fps: float | None = None,
    speed: float = 1.0,
    size: tuple[int, int] = DEFAULT_SIZE,
    quality: int = 90,
    queue_size: int = 8,
    policy: str = "drop-oldest",
    max_frames: int | None = None,
    duration_s: float | None = None,
    stop: threading.Event | None = None,
    producer=None,
    connect_timeout_s: float = 30.0,
    drain_timeout_s: float = 15.0,
    flush_timeout_s: float = 30.0,
) -> Summary:
    """Capture every camera of ``sources`` (camera id -> source) and produce Frames until the sources
    end, ``max_frames`` per camera, ``duration_s``, or ``stop`` is set (Ctrl-C sets it too).

    A source is anything open_source takes: a camera index, "/dev/videoN", a video file, an image
    folder, a stream URL, a list of RGB arrays, or a Source. ``speed`` paces media sources (1 = real
    time, 2 = twice as fast, 0 = as fast as possible); live sources run at their own rate. ``fps``
    caps the rate (and is the frame rate of folders and arrays, default 30). ``producer`` lets a
    caller share a KafkaProducer; otherwise one is connected (with retries) and closed here.

    Raises InvalidId (bad session or camera id), SourceError (a source cannot be opened),
    BrokerUnavailable or ValueError (bad options). Returns the Summary; its ``ok`` is False when a
    camera failed or frames were not delivered.
    """
    size = (int(size[0]), int(size[1]))
    validate_id(session, "session")
    check_options(size, quality, queue_size, policy, speed, fps, max_frames)
    stop = stop or threading.Event()
    opened = open_sources(sources, size=size, fps=fps)
    owned = producer is None
    try:
        if owned:
            producer = connect(settings, connect_timeout_s, topic=settings.topic_frames)
        anchor = Anchor.now()
        pipelines = [
            CameraPipeline(
                settings,
                session,
                camera,
                source,
                producer,
                anchor=anchor,
                size=size,
                quality=quality,
                queue_size=queue_size,
                policy=policy,
                speed=speed,
                fps=fps,
                max_frames=max_frames,
                stop=stop,
            ).start()
            for camera, source in opened.items()
        ]
        wait_pipelines(pipelines, stop, duration_s, drain_timeout_s)
        try:
            producer.flush(timeout=flush_timeout_s)
        except Exception as exc:  # noqa: BLE001 - what is still unacknowledged counts as failed below
            log.warning("not every frame was acknowledged within %.0f s: %s", flush_timeout_s, exc)
        summary = Summary(session, elapsed_s=(time.monotonic_ns() - anchor.mono_ns) / 1e9)
        for pipeline in pipelines:
            pending = pipeline.stats.close()
            if pending:
                log.warning("camera %s: %d frames were never acknowledged", pipeline.camera, pending)
            summary.cameras[pipeline.camera] = pipeline.stats
        announce_end(settings, session, pipelines, producer)
        return summary
    finally:
        if owned and producer is not None:
            producer.close(timeout=5)
        for source in opened.values():
            source.close()


def announce_end(settings: Settings, session: str, pipelines: list[CameraPipeline], producer) -> None:
    """Tell the assembler this run is over and the seq of each camera's last acknowledged frame (a
    `camera-end` event): it then closes the session once those frames' poses are in, however late,
    instead of a fixed time after the session's end. Without it (a camera killed, a broker away)
    the assembler falls back to its end grace, which the log says."""
    event = SessionEvent(
        session=session,
        kind="camera-end",
        wall_time=time.time(),
        cameras=[p.camera for p in pipelines],
        last_seq={p.camera: p.last_acknowledged for p in pipelines},
    )
    try:
        producer.send(settings.topic_sessions, key=session.encode(), value=event.encode()).get(timeout=30)
    except Exception as exc:  # noqa: BLE001 - the frames are delivered; only the early close is lost
        log.warning(
            "the end of this camera run could not be announced (%s): the assembler closes the session by its end grace",
            exc,
        )


def wait_pipelines(
    pipelines: list[CameraPipeline], stop: threading.Event, duration_s: float | None, drain_timeout_s: float
) -> None:
    """Wait for capture to end (Ctrl-C or the duration stop it), then give the senders
    ``drain_timeout_s`` to empty their queues before discarding what is left."""
    deadline = None if duration_s is None else time.monotonic() + duration_s
    while any(p.capture.running for p in pipelines):
        try:
            if deadline is not None and time.monotonic() >= deadline:
                stop.set()
            for p in pipelines:
                p.capture.wait(0.1)
        except KeyboardInterrupt:
            if stop.is_set():
                break
            log.warning("stopping: sending what is queued (Ctrl-C again to discard it)")
            stop.set()
    drain_deadline = time.monotonic() + drain_timeout_s
    try:
        while any(p.sender.running for p in pipelines) and time.monotonic() < drain_deadline:
            for p in pipelines:
                p.sender.wait(0.1)
    except KeyboardInterrupt:
        pass
    for p in pipelines:
        if p.sender.running:
            log.warning(
                "camera %s: discarding %d queued frames the broker did not take in time", p.camera, len(p.queue)
            )
            p.abandon.set()
            p.queue.close()
    for p in pipelines:
        p.capture.wait()
        p.sender.wait()
