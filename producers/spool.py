"""High-speed mode (``--record-first``): record to MP4 now, publish the finished files later.

The capture thread only reads, stamps and queues the raw frame; a writer thread feeds it to the
H.264 encoder (libx264, preset ultrafast, tune zerolatency, CRF 12, yuv420p: near-lossless, about
3 ms per 640x480 frame on one core, ~150 KB per frame). No JPEG and no network on the capture path,
so it keeps up with the camera's full rate (ffv1 was slower and larger here). Frames keep the
source's own resolution (cropped to even sizes, which yuv420p needs); resizing to the run's size
and JPEG encoding happen when publishing.

Each recording is one folder in the spool (``settings.state_dir / "spool"``), so the video and its
sidecar always move together (a folder rename is atomic: no half pair survives a crash):

    pending/<session>.<camera>.<first capture_ns>/video.mp4     PTS in microseconds from the first frame
    pending/<session>.<camera>.<first capture_ns>/sidecar.json  ids, publish size and quality, and per
                                                                frame [seq, capture_ns, wall_time]

Ids cannot hold dots, so the names are unambiguous. A recording is written under ``recording/`` and
renamed into ``pending/`` once its sidecar is written. A publisher (this process, or ``booth
publish-spool`` elsewhere) claims a recording by locking its sidecar (an exclusive flock, held while
it publishes) and renaming the folder into ``publishing/``, so two publishers never take the same
one; it sends every frame with its ORIGINAL seq and timestamps, then moves it to ``done/`` (or
deletes it). A recording that fails to publish goes back to ``pending/`` to be retried, or to
``failed/`` when it cannot be read. A publisher that crashed leaves its recording in
``publishing/`` with no lock held: the next publishing pass (any process) takes it back to
``pending/``. A retried recording is sent again from its start: consumers drop the repeated seqs.

Recordings hold visitors' frames: `booth retention apply` deletes those in ``done/`` and
``failed/`` older than the frames' retention, and `booth session purge` a session's, on the host
they run on (infra.retention reads this layout).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Iterator, Mapping
from fractions import Fraction
from pathlib import Path
from typing import cast

import cv2
import numpy as np

from infra.settings import Settings
from producers.broker import connect
from producers.camera import DEFAULT_SIZE, CameraPipeline, check_options, open_sources, wait_pipelines
from producers.frame_queue import FrameQueue
from producers.sources import Source, SourceError, SourceFrame
from producers.summary import CameraStats, Summary
from producers.timeline import Anchor, Timeline
from producers.workers import Worker
from schemas import validate_id

log = logging.getLogger(__name__)

SIDECAR_FORMAT = 1
CODEC = "libx264"
CODEC_OPTIONS = {"preset": "ultrafast", "tune": "zerolatency", "crf": "12"}
PTS_TIME_BASE = Fraction(1, 1_000_000)  # microseconds: variable frame rate is kept in the container too
STATES = ("recording", "pending", "publishing", "done", "failed")
VIDEO, SIDECAR = "video.mp4", "sidecar.json"


class Claim:
    """A recording this process holds in ``publishing/``: its sidecar's flock is held until release."""

    def __init__(self, path: Path, fd: int):
        self.path, self._fd = path, fd

    @property
    def video(self) -> Path:
        return self.path / VIDEO

    @property
    def sidecar(self) -> Path:
        return self.path / SIDECAR

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing drops the flock
            self._fd = -1


def _try_lock(sidecar: Path) -> int | None:
    """An fd holding an exclusive flock on sidecar, or None if another process holds it."""
    fd = os.open(sidecar, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


class Spool:
    """The spool folders; created on first use."""

    def __init__(self, root: Path):
        self.root = Path(root)
        for state in STATES:
            (self.root / state).mkdir(parents=True, exist_ok=True)
        self._adopt_flat_pairs()

    def _adopt_flat_pairs(self) -> None:
        """Recordings of the earlier layout (<stem>.mp4 + <stem>.json side by side, each renamed on
        its own) become folders; a pair a crash split across two states is put back together, in
        pending/ unless it had reached done/ or failed/."""
        halves: dict[str, dict[str, Path]] = {}
        for state in STATES:
            for path in self.dir(state).iterdir():
                if path.is_file() and path.suffix in (".mp4", ".json"):
                    halves.setdefault(path.stem, {})[path.suffix] = path
        for stem, pair in halves.items():
            if ".mp4" not in pair or ".json" not in pair:
                continue  # a recording that never finished: nothing to publish
            where = pair[".json"].parent.name
            state = where if where in ("done", "failed") and pair[".mp4"].parent.name == where else "pending"
            folder = self.dir(state) / stem
            folder.mkdir(exist_ok=True)
            os.replace(pair[".mp4"], folder / VIDEO)
            os.replace(pair[".json"], folder / SIDECAR)
            log.warning("spool: %s moved to the folder layout in %s/", stem, state)

    @classmethod
    def of(cls, settings: Settings, root: Path | None = None) -> Spool:
        return cls(root or Path(settings.state_dir) / "spool")

    def dir(self, state: str) -> Path:
        return self.root / state

    def recordings(self, state: str, session: str | None = None) -> list[Path]:
        """Recording folders in a state, oldest recording first (by first capture time, the name's
        last part: one camera's segments go out in order)."""
        found = sorted((p for p in self.dir(state).iterdir() if p.is_dir()), key=_capture_order)
        if session is not None:
            found = [p for p in found if p.name.startswith(session + ".")]
        return found

    def pending(self, session: str | None = None) -> list[Path]:
        """Complete recordings waiting to be published."""
        return [p for p in self.recordings("pending", session) if (p / SIDECAR).is_file()]

    def move(self, recording: Path, state: str) -> Path:
        """Move a recording (its folder, atomically) to another state; returns its new path. Raises
        FileNotFoundError if someone else moved it first."""
        target = self.dir(state) / recording.name
        os.replace(recording, target)
        return target

    def claim(self, recording: Path) -> Claim | None:
        """Take a pending recording for publishing, or None if another publisher has it."""
        try:
            fd = _try_lock(recording / SIDECAR)
        except FileNotFoundError:
            return None  # moved by another publisher
        if fd is None:
            return None
        try:
            return Claim(self.move(recording, "publishing"), fd)
        except FileNotFoundError:
            os.close(fd)
            return None

    def reclaim(self) -> list[Path]:
        """Recordings left in publishing/ by a publisher that died (no lock held) go back to
        pending/; returns their new paths."""
        back = []
        for recording in self.recordings("publishing"):
            try:
                fd = _try_lock(recording / SIDECAR)
            except FileNotFoundError:
                continue  # finished or moved meanwhile
            if fd is None:
                continue  # its publisher is alive
            try:
                back.append(self.move(recording, "pending"))
                log.warning(
                    "spool: %s was left in publishing/ by a publisher that stopped; it is pending again", recording.name
                )
            except FileNotFoundError:
                pass  # another run reclaimed or removed it between the lock and the move
            finally:
                os.close(fd)
        return back


def _capture_order(recording: Path) -> tuple[int, str]:
    first_ns = recording.name.rsplit(".", 1)[-1]
    return (int(first_ns) if first_ns.isdigit() else 0, recording.name)


# --- recording -------------------------------------------------------------------------------------
class SpoolWriter:
    """One recording: frames go straight to the H.264 encoder; timestamps are kept for the sidecar."""

    def __init__(
        self,
        spool: Spool,
        session: str,
        camera: str,
        first_frame: np.ndarray,
        first_capture_ns: int,
        fps_hint: float | None,
        publish_size: tuple[int, int],
        publish_quality: int,
    ):
        import av

        self.spool, self.session, self.camera = spool, session, camera
        self.stem = f"{session}.{camera}.{first_capture_ns}"
        self.folder = spool.dir("recording") / self.stem
        self.folder.mkdir()
        self.path = self.folder / VIDEO
        height, width = first_frame.shape[:2]
        self.width, self.height = width - width % 2, height - height % 2
        self.first_capture_ns = first_capture_ns
        self.publish_size, self.publish_quality = publish_size, publish_quality
        self.frames: list[list] = []
        self._last_pts = -1
        self._container = av.open(str(self.path), "w", format="mp4")
        rate = Fraction(fps_hint).limit_denominator(1001) if fps_hint else Fraction(30)
        self._stream = cast(av.VideoStream, self._container.add_stream(CODEC, rate=rate, options=dict(CODEC_OPTIONS)))
        self._stream.width, self._stream.height, self._stream.pix_fmt = self.width, self.height, "yuv420p"
        self._stream.time_base = self._stream.codec_context.time_base = PTS_TIME_BASE

    def write(self, image: np.ndarray, seq: int, capture_ns: int, wall_time: float) -> None:
        import av

        if image.shape[0] != self.height or image.shape[1] != self.width:
            image = image[: self.height, : self.width]
            if image.shape[:2] != (self.height, self.width):  # the source changed size mid-run
                image = cv2.resize(image, (self.width, self.height))
        # OpenCV's BT.601 conversion is several times faster than the generic one in PyAV.
        yuv = np.asarray(cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_BGR2YUV_I420), np.uint8)
        frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
        # PTS must rise strictly; two frames within one microsecond get consecutive ticks.
        self._last_pts = max((capture_ns - self.first_capture_ns) // 1000, self._last_pts + 1)
        frame.pts, frame.time_base = self._last_pts, PTS_TIME_BASE
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames.append([seq, capture_ns, wall_time])

    def finish(self) -> Path:
        """Close the video, write the sidecar, and queue the pair in pending/; returns the sidecar."""
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()
        sidecar = {
            "format": SIDECAR_FORMAT,
            "session": self.session,
            "camera": self.camera,
            "video": VIDEO,
            "codec": f"{CODEC} " + " ".join(f"{k}={v}" for k, v in CODEC_OPTIONS.items()),
            "width": self.width,
            "height": self.height,
            "publish": {"size": list(self.publish_size), "quality": self.publish_quality},
            "frames": self.frames,
        }
        (self.folder / SIDECAR).write_text(json.dumps(sidecar, separators=(",", ":")))
        return self.spool.move(self.folder, "pending")

    def abort(self) -> None:
        try:
            self._container.close()
        except Exception:  # noqa: BLE001 - a broken recording is removed either way
            pass
        shutil.rmtree(self.folder, ignore_errors=True)


class Recorder:
    """One camera in record-first mode: a capture thread that only reads and stamps, and a writer
    thread that encodes. The queue between them (``buffer`` frames, blocking when full) absorbs
    encoder hiccups; nothing is dropped."""

    def __init__(
        self,
        spool: Spool,
        session: str,
        camera: str,
        source: Source,
        *,
        anchor: Anchor,
        speed: float,
        fps: float | None,
        max_frames: int | None,
        segment_s: float | None,
        publish_size: tuple[int, int],
        publish_quality: int,
        stop: threading.Event,
        buffer: int = 120,
    ):
        self.spool, self.session, self.camera, self.source = spool, session, camera, source
        self.max_frames, self.segment_ns = max_frames, int(segment_s * 1e9) if segment_s else None
        self.publish_size, self.publish_quality = publish_size, publish_quality
        self.stop = stop
        self.timeline = Timeline(anchor, live=source.live, speed=speed, fps=fps, stop=stop)
        self.stats = CameraStats(camera, source=source.description)
        self.queue = FrameQueue(buffer, "block")
        self.segments: list[Path] = []
        self.workers = [Worker(self._capture, f"capture-{camera}"), Worker(self._write, f"record-{camera}")]

    def start(self) -> Recorder:
        for worker in self.workers:
            worker.start()
        return self

    def _capture(self) -> None:
        seq = 0
        try:
            for frame, stamps in self.timeline.stamped(self.source):
                self.queue.put((frame.image, seq, *stamps))
                seq += 1
                if self.max_frames is not None and seq >= self.max_frames:
                    break
        except SourceError as exc:
            self.stats.error = str(exc)
            log.error("camera %s: %s", self.camera, exc)
        except Exception as exc:
            self.stats.error = f"{type(exc).__name__}: {exc}"
            log.exception("camera %s: capture failed", self.camera)
        finally:
            self.queue.close()

    def _write(self) -> None:
        writer: SpoolWriter | None = None
        try:
            for image, seq, capture_ns, wall in iter(self.queue.get, None):
                if writer is not None and self.segment_ns and capture_ns - writer.first_capture_ns >= self.segment_ns:
                    self._finish(writer)
                    writer = None
                if writer is None:
                    writer = SpoolWriter(
                        self.spool,
                        self.session,
                        self.camera,
                        image,
                        capture_ns,
                        self.source.nominal_fps,
                        self.publish_size,
                        self.publish_quality,
                    )
                writer.write(image, seq, capture_ns, wall)
                self.stats.count("recorded")
        except Exception as exc:
            self.stats.error = f"recording failed: {type(exc).__name__}: {exc}"
            log.exception("camera %s: recording failed", self.camera)
            self.queue.discard()
            self.stop.set()
        finally:
            if writer is not None:
                try:
                    self._finish(writer)
                except Exception as exc:  # noqa: BLE001
                    self.stats.error = f"could not finish {writer.path.name}: {exc}"
                    writer.abort()

    def _finish(self, writer: SpoolWriter) -> None:
        sidecar = writer.finish()
        self.segments.append(sidecar)
        log.info("camera %s: recorded %d frames to %s", self.camera, len(writer.frames), sidecar.with_suffix(".mp4"))


def record_cameras(
    settings: Settings,
    session: str,
    sources: Mapping[str, object],
    *,
    fps: float | None = None,
    speed: float = 1.0,
    size: tuple[int, int] = DEFAULT_SIZE,
    quality: int = 90,
    max_frames: int | None = None,
    duration_s: float | None = None,
    stop: threading.Event | None = None,
    segment_s: float | None = None,
    spool_dir: Path | None = None,
) -> Summary:
    """Record every camera to the spool (no JPEG, no network); ``size`` and ``quality`` are stored
    for the publisher. ``segment_s`` cuts recordings into files of that length, so publishing can
    start while a long capture goes on. Returns a Summary whose ``recorded`` counts the frames."""
    size = (int(size[0]), int(size[1]))
    validate_id(session, "session")
    check_options(size, quality, 1, "block", speed, fps, max_frames)
    if segment_s is not None and segment_s <= 0:
        raise ValueError(f"segment length must be positive, got {segment_s}")
    stop = stop or threading.Event()
    spool = Spool.of(settings, spool_dir)
    opened = open_sources(sources, size=size, fps=fps)
    try:
        anchor = Anchor.now()
        recorders = [
            Recorder(
                spool,
                session,
                camera,
                source,
                anchor=anchor,
                speed=speed,
                fps=fps,
                max_frames=max_frames,
                segment_s=segment_s,
                publish_size=size,
                publish_quality=quality,
                stop=stop,
            )
            for camera, source in opened.items()
        ]
        for r in recorders:
            r.start()
        _wait_workers([w for r in recorders for w in r.workers], stop, duration_s)
        summary = Summary(session, elapsed_s=(time.monotonic_ns() - anchor.mono_ns) / 1e9, title="recorded")
        for r in recorders:
            r.stats.close()
            summary.cameras[r.camera] = r.stats
        return summary
    finally:
        for source in opened.values():
            source.close()


def _wait_workers(workers: list[Worker], stop: threading.Event, duration_s: float | None) -> None:
    deadline = None if duration_s is None else time.monotonic() + duration_s
    while any(w.running for w in workers):
        try:
            if deadline is not None and time.monotonic() >= deadline:
                stop.set()
            for w in workers:
                w.wait(0.1)
        except KeyboardInterrupt:
            log.warning("stopping: finishing the recordings")
            stop.set()


# --- publishing ------------------------------------------------------------------------------------
def read_sidecar(sidecar: Path) -> dict:
    try:
        meta = json.loads(sidecar.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SourceError(f"sidecar {sidecar} cannot be read: {exc}") from None
    if meta.get("format") != SIDECAR_FORMAT:
        raise SourceError(f"sidecar {sidecar} has format {meta.get('format')!r}; this build reads {SIDECAR_FORMAT}")
    for name in ("session", "camera", "frames", "publish"):
        if name not in meta:
            raise SourceError(f"sidecar {sidecar} lacks {name!r}")
    return meta


class SpoolFileSource(Source):
    """A recording played back with its original sequence numbers and capture timestamps."""

    def __init__(self, video: Path, frames: list[list]):
        from producers.sources import VideoFileSource

        self._video = VideoFileSource(video)
        self.frames = frames
        self.description = f"recording {video.parent.name} ({len(frames)} frames)"

    def __iter__(self) -> Iterator[SourceFrame]:
        count = 0
        for count, decoded in enumerate(self._video, start=1):
            if count > len(self.frames):
                raise SourceError(f"{self.description}: the video holds more frames than its sidecar lists")
            seq, capture_ns, wall_time = self.frames[count - 1]
            yield SourceFrame(decoded.image, capture_ns=int(capture_ns), wall_time=float(wall_time), seq=int(seq))
        if count != len(self.frames):
            raise SourceError(
                f"{self.description}: the video holds {count} frames; its sidecar lists {len(self.frames)}"
            )

    def close(self) -> None:
        self._video.close()


def publish_spool(
    settings: Settings,
    *,
    session: str | None = None,
    spool_dir: Path | None = None,
    follow_until: threading.Event | None = None,
    stop: threading.Event | None = None,
    keep: bool = True,
    speed: float = 0.0,
    queue_size: int = 64,
    producer=None,
    connect_timeout_s: float = 30.0,
    flush_timeout_s: float = 30.0,
    poll_s: float = 0.5,
    retry_s: float = 5.0,
) -> Summary:
    """Publish every pending recording (of ``session``, or all) with its original timestamps.

    Without ``follow_until`` one pass is made; with it, the spool is watched until the event is set,
    then a last pass publishes what is left. ``speed`` 0 sends as fast as possible (1 = at the
    recorded pace). Nothing is dropped: the queue blocks. A file the broker did not fully take goes
    back to pending and ends the pass (following, the next pass waits ``retry_s``). ``stop`` aborts
    at once (the file being sent goes back to pending). Returns the combined Summary.
    """
    if session is not None:
        validate_id(session, "session")
    stop = stop or threading.Event()
    spool = Spool.of(settings, spool_dir)
    total = Summary(session or "(all)", title="published")
    owned = producer is None
    try:
        while not stop.is_set():
            last_pass = follow_until is None or follow_until.is_set()
            delivered = True
            spool.reclaim()
            for recording in spool.pending(session):
                if stop.is_set():
                    break
                if producer is None:
                    producer = connect(settings, connect_timeout_s, topic=settings.topic_frames)
                result = _publish_one(
                    settings,
                    spool,
                    recording,
                    producer,
                    stop=stop,
                    keep=keep,
                    speed=speed,
                    queue_size=queue_size,
                    flush_timeout_s=flush_timeout_s,
                )
                if result is not None:
                    total.merge(result)
                    if any(s.failed for s in result.cameras.values()):
                        delivered = False  # the broker is in trouble: later files would fail too
                        break
            if last_pass:
                break
            if follow_until is not None:
                follow_until.wait(poll_s if delivered else retry_s)
        return total
    finally:
        if owned and producer is not None:
            producer.close(timeout=5)


def _publish_one(
    settings: Settings,
    spool: Spool,
    recording: Path,
    producer,
    *,
    stop: threading.Event,
    keep: bool,
    speed: float,
    queue_size: int,
    flush_timeout_s: float,
) -> Summary | None:
    claim = spool.claim(recording)
    if claim is None:
        return None  # another publisher took it
    try:
        return _publish_claimed(
            settings,
            spool,
            claim,
            producer,
            stop=stop,
            keep=keep,
            speed=speed,
            queue_size=queue_size,
            flush_timeout_s=flush_timeout_s,
        )
    finally:
        claim.release()


def _publish_claimed(
    settings: Settings,
    spool: Spool,
    claim: Claim,
    producer,
    *,
    stop: threading.Event,
    keep: bool,
    speed: float,
    queue_size: int,
    flush_timeout_s: float,
) -> Summary:
    claimed = claim.path
    try:
        meta = read_sidecar(claim.sidecar)
        source = SpoolFileSource(claim.video, meta["frames"])
    except SourceError as exc:
        log.error("%s", exc)
        spool.move(claimed, "failed")
        session, camera, _ = (claimed.name.split(".") + ["?", "?"])[:3]
        summary = Summary(session, title="published")
        summary.cameras[camera] = CameraStats(camera, source=claimed.name, error=str(exc))
        return summary
    session, camera = meta["session"], meta["camera"]
    started = time.monotonic_ns()
    try:
        pipeline = CameraPipeline(
            settings,
            session,
            camera,
            source,
            producer,
            anchor=Anchor.now(),
            size=tuple(meta["publish"]["size"]),
            quality=int(meta["publish"]["quality"]),
            queue_size=queue_size,
            policy="block",
            speed=speed,
            stop=stop,
        ).start()
        wait_pipelines([pipeline], stop, None, drain_timeout_s=flush_timeout_s)
        try:
            producer.flush(timeout=flush_timeout_s)
        except Exception as exc:  # noqa: BLE001 - unacknowledged frames count as failed
            log.warning("%s: not every frame was acknowledged: %s", claimed.name, exc)
    finally:
        source.close()
    stats = pipeline.stats
    stats.close()
    complete = stats.error is None and stats.failed == 0 and stats.acknowledged == len(meta["frames"])
    if complete:
        if keep:
            spool.move(claimed, "done")
        else:
            shutil.rmtree(claimed)
    else:
        unreadable = stats.error is not None and stats.failed == 0
        spool.move(claimed, "failed" if unreadable else "pending")
        log.error(
            "%s was not fully published (%s); it is in %s",
            claimed.name,
            stats.error or f"{stats.failed} failed",
            "failed/" if unreadable else "pending/ for a retry",
        )
    summary = Summary(session, title="published", elapsed_s=(time.monotonic_ns() - started) / 1e9)
    summary.cameras[camera] = stats
    return summary


class BackgroundPublisher:
    """publish_spool in a thread, following the spool until finish() (used while recording)."""

    def __init__(self, settings: Settings, **options):
        self.until, self.stop = threading.Event(), threading.Event()
        self._result: Summary | None = None
        self._error: BaseException | None = None
        self._worker = Worker(lambda: self._run(settings, options), "spool-publisher").start()

    def _run(self, settings: Settings, options: dict) -> None:
        try:
            self._result = publish_spool(settings, follow_until=self.until, stop=self.stop, **options)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller by finish()
            self._error = exc

    @property
    def running(self) -> bool:
        return self._worker.running

    def wait(self, timeout: float | None = None) -> bool:
        return self._worker.wait(timeout)

    def interrupt(self) -> None:
        """First call: finish what is pending, then stop; second call: stop at once."""
        (self.stop if self.until.is_set() else self.until).set()

    def finish(self, timeout: float | None = None) -> Summary:
        """Publish what is still pending, then stop; re-raises the publisher's error (BrokerUnavailable...)."""
        self.until.set()
        if not self._worker.wait(timeout):
            self.stop.set()
            self._worker.wait()
        if self._error is not None:
            raise self._error
        assert self._result is not None  # the worker sets one of the two
        return self._result
