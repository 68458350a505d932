"""What several test modules share: processes, topic readers and writers, synthetic frames and
clips, a served app, metrics scrapes. Test modules import from here, never from each other."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np

from infra import kafka
from infra.objectstore import ObjectStore
from infra.stack import wait_exited
from infra.waiting import wait_until
from schemas import Frame, Person, SmoothedPose, decode, frame_key
from schemas.keypoints import NUM_KEYPOINTS, OBSERVED, SMOOTHED

__all__ = ["wait_until"]

# --- worker processes -------------------------------------------------------------------------------


def worker_env(settings, metrics_port: int = -1) -> dict[str, str]:
    """The environment that gives a `booth process` subprocess exactly these settings."""
    return settings.to_env(metrics_port=metrics_port)


def start_worker(
    settings, log_path: Path, metrics_port: int = -1, loglevel: str = "warning", backend: str = "movenet"
) -> subprocess.Popen:
    """A `booth process` worker (MoveNet unless told) in its own process, its output in log_path."""
    log = open(log_path, "ab")
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "booth.cli", "process", "--backend", backend, "--loglevel", loglevel],
            env=worker_env(settings, metrics_port),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    finally:
        log.close()  # the child holds its own descriptor


def stop_worker(worker: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
    if worker.poll() is None:
        worker.send_signal(sig)
        try:
            worker.wait(timeout)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(10)


def running(worker: subprocess.Popen, log_path: Path | None = None) -> bool:
    """True while the worker runs; an AssertionError with the end of its log once it has exited."""
    if worker.poll() is not None:
        tail = log_path.read_text()[-3000:] if log_path is not None and log_path.exists() else ""
        raise AssertionError(f"the worker exited with code {worker.returncode}:\n{tail}")
    return True


def children_running(parent: int, code: str) -> set[int]:
    """Pids of `parent`'s children whose command line holds `code` (an inference process: "_child_main")."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == parent and code.encode() in cmdline:
            found.add(int(entry))
    return found


class KillNewChildren(threading.Thread):
    """SIGKILLs the next `count` inference processes `parent` starts, each `after_s` after it appears."""

    def __init__(self, parent: int, known: set[int], count: int, after_s: float = 0.05, timeout_s: float = 60):
        super().__init__(daemon=True)
        self.parent, self.known, self.count, self.after_s = parent, set(known), count, after_s
        self.deadline, self.killed = time.monotonic() + timeout_s, []

    def run(self) -> None:
        while len(self.killed) < self.count and time.monotonic() < self.deadline:
            for pid in sorted(children_running(self.parent, "_child_main") - self.known):
                self.known.add(pid)
                time.sleep(self.after_s)
                os.kill(pid, signal.SIGKILL)
                self.killed.append(pid)
            time.sleep(0.005)


def kill_service(stack, name: str, sig: int = signal.SIGKILL) -> None:
    """Stop one embedded service the way a crash (SIGKILL) or an operator (SIGTERM) would."""
    entry = stack._load()[name]
    os.kill(entry.pid, sig)
    if not wait_exited(entry.pid, 10):
        raise AssertionError(f"{name} (pid {entry.pid}) did not stop")


def produce_frames(settings, messages) -> None:
    """(key, value) pairs onto the frames topic."""
    p = kafka.producer(settings)
    for key, value in messages:
        p.send(settings.topic_frames, key=key, value=value)
    p.flush()
    p.close()


class TopicReader:
    """Reads a topic from its start without a consumer group, so it never disturbs the pipeline
    (and never asks the broker for end offsets)."""

    def __init__(self, settings, topic: str):
        self.consumer = kafka.consumer(settings, topic, group_id=None, consumer_timeout_ms=300)
        self.records: list = []

    def poll(self) -> list:
        for batch in self.consumer.poll(timeout_ms=300).values():
            self.records.extend(batch)
        return self.records

    def messages(self) -> list:
        return [decode(r.value) for r in self.records]

    def close(self) -> None:
        self.consumer.close()


# Assembler settings that close and write a small test session in about a second.
FAST_ASSEMBLER = dict(
    shard_size=4,
    resolution=64,
    end_grace_s=1.0,
    unknown_session_grace_s=1.0,
    commit_interval_s=0.2,
    min_samples=5,
    quiet=True,
)


# --- frames, clips and images ---------------------------------------------------------------------
W, H = 320, 240


def clip_frames(
    shared_dir: Path,
    session: str,
    camera: str,
    n: int,
    *,
    start: int = 0,
    size: tuple[int, int] = (320, 240),
    seed: int = 3,
    frame_clock: bool = False,
) -> list[Frame]:
    """Frames start..start+n of the squat photo drifting across the canvas (a person on every
    frame). Capture times come from the monotonic clock, or with frame_clock exactly 1/30 s apart."""
    from vision.pose.synthetic import moving_photo_clip

    photo = cv2.cvtColor(cv2.imread(str(shared_dir / "data/images/squat.png")), cv2.COLOR_BGR2RGB)
    out = []
    clip = moving_photo_clip(photo, n_frames=max(start + n, 60), size=size, seed=seed)[start : start + n]
    for seq, (rgb, _affine) in enumerate(clip, start=start):
        ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        assert ok
        out.append(
            Frame(
                session=session,
                camera=camera,
                seq=seq,
                capture_ns=seq * 33_333_333 if frame_clock else time.monotonic_ns(),
                wall_time=time.time(),
                width=size[0],
                height=size[1],
                image=jpg.tobytes(),
            )
        )
    return out


def video_frames(shared_dir: Path, session: str, camera: str, start: int, n: int) -> list[Frame]:
    """Frames start..start+n of the shared vtest.avi (768x576, several pedestrians, 10 fps), as
    JPEG Frames with seq = the video frame number and capture times 100 ms apart."""
    cap = cv2.VideoCapture(str(shared_dir / "data" / "videos" / "vtest.avi"))
    try:
        for _ in range(start):  # read, not seek: seeking lands on key frames only
            assert cap.grab(), f"vtest.avi has fewer than {start} frames"
        out = []
        for seq in range(start, start + n):
            ok, bgr = cap.read()
            assert ok, f"vtest.avi has no frame {seq}"
            ok, jpg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 90])
            assert ok
            h, w = bgr.shape[:2]
            out.append(
                Frame(
                    session=session,
                    camera=camera,
                    seq=seq,
                    capture_ns=seq * 100_000_000,
                    wall_time=time.time(),
                    width=w,
                    height=h,
                    image=jpg.tobytes(),
                )
            )
        return out
    finally:
        cap.release()


def make_frame(session: str, camera: str, seq: int, wall_time: float | None = None) -> Frame:
    """A gradient with a square that moves with seq, so consecutive previews differ."""
    image = np.zeros((H, W, 3), np.uint8)
    image[..., 0] = np.linspace(40, 160, W, dtype=np.uint8)[None, :]
    image[..., 1] = np.linspace(60, 120, H, dtype=np.uint8)[:, None]
    x = 20 + (seq * 17) % (W - 60)
    cv2.rectangle(image, (x, 150), (x + 40, 190), (240, 240, 240), -1)
    ok, jpg = cv2.imencode(".jpg", image)
    assert ok
    return Frame(
        session=session,
        camera=camera,
        seq=seq,
        capture_ns=seq * 33_333_333,
        wall_time=time.time() if wall_time is None else wall_time,
        width=W,
        height=H,
        image=jpg.tobytes(),
    )


def make_pose(frame: Frame, flags: dict[int, int] | None = None, person: bool = True) -> SmoothedPose:
    """A standing stick figure drifting with seq; ``flags`` overrides some keypoints' flag bits."""
    base = np.array(
        [
            [160, 40],
            [166, 34],
            [154, 34],
            [174, 38],
            [146, 38],
            [185, 70],
            [135, 70],
            [200, 105],
            [120, 105],
            [210, 140],
            [110, 140],
            [175, 135],
            [145, 135],
            [178, 175],
            [142, 175],
            [180, 215],
            [140, 215],
        ],
        np.float32,
    )
    kp = np.concatenate([base + [frame.seq % 20, 0], np.full((NUM_KEYPOINTS, 1), 0.9, np.float32)], axis=1)
    bits = [OBSERVED | SMOOTHED] * NUM_KEYPOINTS
    for i, f in (flags or {}).items():
        bits[i] = f
    return SmoothedPose(
        session=frame.session,
        camera=frame.camera,
        seq=frame.seq,
        capture_ns=frame.capture_ns,
        wall_time=frame.wall_time,
        width=W,
        height=H,
        backend="synthetic",
        persons=[Person.from_array(kp, 0.9)] if person else [],
        flags=bits if person else [],
    )


BITS = 8


def counter_frame(number: int, size: tuple[int, int] = (320, 240)) -> np.ndarray:
    """An RGB frame showing ``number``."""
    width, height = size
    image = np.full((height, width, 3), (40, 90, 160), np.uint8)
    cv2.putText(image, f"#{number}", (10, height // 2), cv2.FONT_HERSHEY_SIMPLEX, 2.0, (255, 255, 0), 3)
    block = width // BITS
    for bit in range(BITS):
        value = 255 if (number >> bit) & 1 else 0
        image[height - block :, bit * block : (bit + 1) * block] = value
    return image


def read_counter(image: np.ndarray) -> int:
    """The number shown by a counter_frame, from any resized, lossy copy (BGR or RGB)."""
    gray = image.mean(axis=2) if image.ndim == 3 else image
    height, width = gray.shape
    block = width / BITS
    row = int(height - block / 2)
    return sum(1 << bit for bit in range(BITS) if gray[row, int((bit + 0.5) * block)] > 128)


def decode_jpeg(data: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "the payload is not a decodable JPEG"
    return image


def write_counter_video(path: Path, frames: int = 30, size: tuple[int, int] = (320, 240), fps: int = 30) -> Path:
    from producers.sources import write_video

    return write_video(path, [counter_frame(number, size) for number in range(frames)], fps=fps)


def with_sof_size(jpeg: bytes, width: int, height: int) -> bytes:
    """The same JPEG with the size in its frame header (SOF0) rewritten: what a bomb looks like."""
    at = jpeg.index(b"\xff\xc0") + 5  # marker, segment length (2), sample precision (1)
    return jpeg[:at] + height.to_bytes(2, "big") + width.to_bytes(2, "big") + jpeg[at + 4 :]


# --- topics, apps and metrics ----------------------------------------------------------------------
def send(settings, items) -> None:
    """items: (topic, message) pairs; stream messages get the session/camera key as the pipeline does."""
    p = kafka.producer(settings)
    for topic, message in items:
        key = frame_key(message.session, message.camera) if hasattr(message, "camera") else message.session.encode()
        p.send(topic, key=key, value=message.encode())
    p.flush()
    p.close()


def read_topic(settings, topic: str, idle_s: float = 1.0) -> list:
    """Everything on a topic, read from the start with no group until quiet."""
    consumer = kafka.consumer(settings, topic, group_id=None)
    out, last = [], time.monotonic()
    try:
        while time.monotonic() - last < idle_s:
            for records in consumer.poll(timeout_ms=100).values():
                out += [decode(r.value) for r in records]
                last = time.monotonic()
    finally:
        consumer.close()
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(app):
    """uvicorn on a free loopback port in a thread, as `booth console` runs it."""
    import uvicorn

    from console.app import SERVER_OPTIONS

    port = free_port()
    options = {**SERVER_OPTIONS, "timeout_graceful_shutdown": 1}
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, **options))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, timeout=15, what="uvicorn to start")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def pixel_marks(image: bytes, size: int = 24) -> tuple[bytes, str]:
    """A piece of an image's pixel data (from the second half of a JPEG's scan) and how it reads
    in the text form of any bytes holding it: a log or a repr containing it holds pixels. The
    piece has no quotes or backslashes, whose escaping depends on what surrounds them."""
    for start in range(len(image) // 2, len(image) - size - 2):
        piece = image[start : start + size]
        if not any(c in piece for c in b"'\"\\"):
            return piece, repr(piece)[2:-1]
    raise AssertionError("no quote-free piece in the image")


def with_default_reference(settings, name: str = "dance"):
    """The settings with a default reference dance that exists in the store (its latest.json, as
    `booth reference add` leaves it): sessions may then start without naming one."""
    from infra.objectstore import ObjectStore
    from schemas import layout

    ObjectStore(settings).put(layout.reference_latest_key(name), b'{"name": "%s", "version": 1}' % name.encode())
    return settings.model_copy(update={"default_reference": name})


# --- the console's login --------------------------------------------------------------------------
CONSOLE_PASSWORD = "operator-test-password"  # test settings only


def console_settings(settings, **updates):
    """The settings with an operator password, as the console needs."""
    from pydantic import SecretStr

    return settings.model_copy(update={"console_password": SecretStr(CONSOLE_PASSWORD), **updates})


def logged_in(client, base: str = "http://127.0.0.1"):
    """A TestClient or httpx client, logged in through POST /login, sending the console's Origin."""
    client.headers["Origin"] = base
    response = client.post(f"{base}/login", json={"password": CONSOLE_PASSWORD})
    assert response.status_code == 200, response.text
    return client


@contextlib.contextmanager
def fake_metrics():
    """A /metrics endpoint whose pose counter climbs, standing in for the processors."""
    from prometheus_client import CollectorRegistry, Counter, start_http_server

    registry = CollectorRegistry()
    frames = Counter("booth_pose_frames", "frames", registry=registry)
    frames.inc(500)
    server, _thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    stop = threading.Event()

    def climb():
        while not stop.wait(0.05):
            frames.inc(3)

    ticker = threading.Thread(target=climb, daemon=True)
    ticker.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/metrics"
    finally:
        stop.set()
        ticker.join()
        server.shutdown()


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    """A process's /metrics as {(sample name, sorted labels): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


# --- assembled sessions and reference dances ---------------------------------------------------------


def assemble(settings, syn) -> dict:
    """Run a SyntheticSession's messages through a real assembler (64 px maps); returns its manifest."""
    from assembler.consumer import Assembler
    from assembler.synthetic import produce
    from dataset import read_manifest

    produce(
        settings,
        [syn.event_message(settings, syn.start())]
        + syn.stream_messages(settings)
        + [syn.event_message(settings, syn.end())],
    )
    fast = {**FAST_ASSEMBLER, "shard_size": 8}
    Assembler(settings, group_id=settings.group("assembler"), **fast).run(idle_exit=1.5, serve_metrics=False)
    manifest = read_manifest(settings, syn.session)
    assert manifest is not None and manifest["samples"] == len(syn.expected_samples())
    return manifest


def add_dance(settings, shared_dir: Path, tmp_path: Path, name: str = "dance", frames: int = 18) -> None:
    """A reference dance of `frames` poses, estimated (MoveNet) from a clip of a real photo."""
    from trainer.references import add_reference
    from trainer.references.video import write_mp4
    from vision.pose.synthetic import moving_photo_clip

    photo = cv2.cvtColor(cv2.imread(str(shared_dir / "data/images/squat.png")), cv2.COLOR_BGR2RGB)
    clip = [f for f, _ in moving_photo_clip(photo, n_frames=60, size=(320, 240), seed=3)[:frames]]
    write_mp4(tmp_path / f"{name}.mp4", clip, 30)
    add_reference(settings, tmp_path / f"{name}.mp4", name, backend="movenet")


# --- guided capture -------------------------------------------------------------------------------
def dance_poses(n: int = 24) -> np.ndarray:
    """A short dance of synthetic figures: front with arms down, out and up, then a turn to the back."""
    from trainer.figure import figure

    steps = [(0, "down"), (0, "out"), (0, "up"), (90, "out"), (180, "down"), (180, "up")]
    return np.stack([figure(*steps[i * len(steps) // n]) for i in range(n)])


def store_dance(settings, name: str, poses: np.ndarray, fps: float = 12.0) -> None:
    """A reference dance in the store with these poses, as `booth reference add` leaves one (no video)."""
    from trainer.references.store import Smoothed, _store_version

    n = len(poses)
    smoothed = Smoothed(poses, np.zeros((n, NUM_KEYPOINTS), np.uint8), np.ones(n, bool), "", 0, 0)
    times = np.arange(n, dtype=np.float64) / fps
    meta = {"frames": n, "fps": fps, "duration_s": (n - 1) / fps, "backend": "synthetic", "glitches": 0}
    meta.update({"usable_frames": n, "corrections": 0, "src_size": [640, 480]})
    _store_version(
        ObjectStore(settings),
        name,
        1,
        raw=poses,
        times=times,
        src_size=(640, 480),
        smoothed=smoothed,
        preview=b"",
        meta=meta,
        corrections_text=None,
    )


def figure_pose(session: str, camera: str, seq: int, pose: np.ndarray | None, others: int = 0) -> SmoothedPose:
    """A smoothed pose of one figure (trainer.figure) in a 640x480 frame; None: nobody in the frame."""
    extra = [Person.from_array(pose + [200, 0, 0], 0.8, track=2 + i) for i in range(others)] if pose is not None else []
    return SmoothedPose(
        session=session,
        camera=camera,
        seq=seq,
        capture_ns=seq * 33_333_333,
        wall_time=time.time(),
        width=640,
        height=480,
        backend="synthetic",
        persons=[Person.from_array(pose, 0.9, track=1)] if pose is not None else [],
        flags=[OBSERVED | SMOOTHED] * NUM_KEYPOINTS if pose is not None else [],
        others=extra,
    )
