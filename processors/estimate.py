"""The pose agent's estimation step: validate a frame, decode it, run the pose backend.

`PoseStage` is the synchronous step. `Inference` runs it for the agent, one frame at a time and in
order (backends follow the person from frame to frame), in a child process of its own by default:
the step's Python parts (pre- and post-processing around the GIL-free model call) then never wait
for the event loop's Python, which on two cores held the stage to about 0.6x of a bare loop
(bench/bench_pose_stage.py measures both ways). The child only estimates; what it measured comes
back with each result and the worker's metrics count it.

A child that dies (a crash in a native library) is started again and the frame tried once more; a
frame that kills it twice is rejected (a dead letter) instead of taking the worker down with it. A
replacement that dies while loading is started again too; if none starts, each frame it held is
rejected with that reason: the agent never stops on it and its offsets move on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import pickle
import struct
import sys
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

from prometheus_client import Counter, Histogram

from schemas import Frame, Person, PoseEstimate, SchemaError, parse_frame_key
from schemas.ids import InvalidId
from schemas.images import ImageError, decode_rgb, reduction_for
from schemas.messages import MAX_PERSONS

log = logging.getLogger(__name__)

POSE_LATENCY = Histogram(
    "booth_pose_latency_seconds",
    "Pose inference time per frame",
    ["backend"],
    buckets=(0.002, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.2, 0.5, 1.0),
)
PEOPLE_DROPPED = Counter(
    "booth_pose_people_dropped_total", "People found beyond pose_max_people and not carried", ["backend"]
)
# Where a worker's CPU goes, per step (thread CPU time: what the step cost the cores, not how long
# it waited for them). The rest of the worker's CPU is its event loop: Kafka, Faust, messages.
_CPU = Counter("booth_pose_cpu_seconds_total", "CPU seconds a pose worker spent per step", ["step"])
CPU_SECONDS = {step: _CPU.labels(step) for step in ("decode", "inference", "tracking", "smoothing")}
DECODED = Counter(
    "booth_pose_decoded_frames_total", "Frames decoded by the pose stage, by DCT reduction (1 = whole)", ["reduction"]
)
RESTARTS = Counter(
    "booth_pose_inference_restarts_total", "Times the pose worker's inference process died and was started again"
)


class Rejected(Exception):
    """A message this stage cannot use; the text is the dead letter's reason."""


def parse_frame(key: bytes | None, raw: bytes | None) -> Frame:
    """Validate a frame message and its key, or raise Rejected with the reason."""
    try:
        frame = Frame.decode(raw)
    except SchemaError as exc:
        raise Rejected(f"invalid Frame: {exc}") from None
    try:
        if key is None or parse_frame_key(key) != (frame.session, frame.camera):
            raise Rejected(f"key {key!r} does not match the frame's {frame.session}/{frame.camera}")
    except InvalidId as exc:
        raise Rejected(f"bad key: {exc}") from None
    return frame


def decode_image(frame: Frame, reduce: int = 1):
    """The frame's image as RGB, at 1/reduce of its size where the encoding allows (see
    schemas.images.decode_rgb), and the factor used; or Rejected with the reason."""
    try:
        return decode_rgb(frame, reduce)
    except ImageError as exc:
        raise Rejected(str(exc)) from None


def decode_frame(key: bytes | None, raw: bytes | None):
    """Validate a frame message and decode its image to RGB at full size, or raise Rejected."""
    frame = parse_frame(key, raw)
    return frame, decode_image(frame)[0]


class Cost(NamedTuple):
    """What estimating one frame cost, for the worker's metrics (measured where it ran)."""

    backend: str
    decode_cpu_s: float
    inference_cpu_s: float
    inference_s: float
    reduction: int
    dropped: int


def record(cost: Cost) -> None:
    CPU_SECONDS["decode"].inc(cost.decode_cpu_s)
    CPU_SECONDS["inference"].inc(cost.inference_cpu_s)
    DECODED.labels(str(cost.reduction)).inc()
    POSE_LATENCY.labels(cost.backend).observe(cost.inference_s)
    if cost.dropped:
        PEOPLE_DROPPED.labels(cost.backend).inc(cost.dropped)


class PoseStage:
    """Decode, estimate, build the PoseEstimate (untracked).

    max_people: people kept per frame, strongest first; the rest are counted (``dropped`` and
    booth_pose_people_dropped_total).
    reduced_decode: decode a JPEG only as large as the backend will look at it (Estimator.input_scale:
    MoveNet sees 192 pixels across the frame or its tracking crop), straight to RGB. False decodes
    every frame whole (the comparison the accuracy test and the benchmark make).
    """

    def __init__(self, estimator, max_people: int = 8, reduced_decode: bool = True):
        if not 1 <= max_people <= MAX_PERSONS:
            raise ValueError(f"max_people must be in 1..{MAX_PERSONS}, got {max_people}")
        self.estimator = estimator
        self.max_people = max_people
        self.reduced_decode = reduced_decode
        self.backend = getattr(estimator, "name", type(estimator).__name__)
        self.device = getattr(estimator, "device", "cpu")
        PEOPLE_DROPPED.labels(self.backend)  # exported from the start, at 0: dashboards see no gap

    def __call__(self, key: bytes | None, raw: bytes | None) -> PoseEstimate:
        pose, cost = self.estimate(key, raw)
        record(cost)
        return pose

    def estimate(self, key: bytes | None, raw: bytes | None) -> tuple[PoseEstimate, Cost]:
        """The estimate and what it cost, without touching this process's metrics."""
        cpu0 = time.thread_time()
        frame = parse_frame(key, raw)
        stream = f"{frame.session}/{frame.camera}"
        reduce = 1
        if self.reduced_decode:
            reduce = reduction_for(self.estimator.input_scale(stream, frame.width, frame.height))
        rgb, reduce = decode_image(frame, reduce)
        t0, cpu1 = time.perf_counter(), time.thread_time()
        persons = self.estimator.estimate_scaled(rgb, stream, 1.0 / reduce)
        seconds = time.perf_counter() - t0
        cpu2 = time.thread_time()
        persons = sorted(persons, key=lambda p: -p.score)  # backends promise it; the limit relies on it
        dropped = max(0, len(persons) - self.max_people)
        pose = PoseEstimate(
            session=frame.session,
            camera=frame.camera,
            seq=frame.seq,
            capture_ns=frame.capture_ns,
            wall_time=frame.wall_time,
            width=frame.width,
            height=frame.height,
            backend=self.backend,
            device=self.device if self.device in ("edgetpu", "cpu", "cuda") else "cpu",
            inference_ms=seconds * 1000,
            pose_wall_time=time.time(),
            persons=[Person.from_array(p.keypoints, p.score) for p in persons[: self.max_people]],
            dropped=dropped,
        )
        return pose, Cost(self.backend, cpu1 - cpu0, cpu2 - cpu1, seconds, reduce, dropped)


class InferenceUnavailable(RuntimeError):
    """The pose backend could not be loaded: the worker cannot estimate anything."""


class _ChildDied(Exception):
    """The inference process ended with frames still in it."""


def _estimate_safely(stage: PoseStage, key: bytes | None, raw: bytes | None):
    """(PoseEstimate, Cost) or (Rejected, None): a frame's own problem is an answer, not an error."""
    try:
        return stage.estimate(key, raw)
    except Rejected as exc:
        return exc, None
    except Exception as exc:  # one frame's failure is that frame's dead letter
        log.exception("pose estimation failed")
        return Rejected(f"pose estimation failed: {type(exc).__name__}: {exc}"), None


# The child speaks length-prefixed pickles over a pair of pipes: frames in, in order, and one
# answer per frame out, in the same order. No helper threads on the worker's side: the event loop
# writes and reads the pipes itself, so feeding the child never waits for a GIL handover.
_LENGTH = struct.Struct("!I")


def _pack(obj) -> bytes:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(data)) + data


def keep_buffers_on_heap() -> None:
    """Have glibc's allocator keep large buffers on the heap, in this process, from now on.

    Each frame's decoded image (0.9 MB at 640x480, 6 MB at 1080p) is otherwise mapped and unmapped
    frame after frame, its pages faulted in and zeroed again each time: on two cores shared with
    the event loop and the broker that cost the inference process 8.0 instead of 7.3 ms of CPU a
    frame (bench/bench_pose_stage.py). A bare loop alone does not gain from it (measured). Where
    the C library is not glibc this does nothing.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    mallopt(m_mmap_threshold, 32 << 20)  # fixed: no longer adjusted by the allocator itself
    mallopt(m_trim_threshold, 128 << 20)


def _load_stage(backend: str, models_dir: str | None, threads: int, max_people: int) -> PoseStage:
    """The stage with its backend loaded where it will run, or InferenceUnavailable saying why."""
    from vision.pose import load_estimator

    try:
        estimator = load_estimator(backend, models_dir and Path(models_dir), num_threads=threads)
    except Exception as exc:
        raise InferenceUnavailable(f"pose backend {backend!r} could not be loaded: {exc}") from exc
    return PoseStage(estimator, max_people)


def _child_main(args: str) -> None:
    """The inference process: load the backend, say so, then estimate frames until stdin ends."""
    keep_buffers_on_heap()
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # whatever a library prints goes to stderr, never into the answers
    frames = sys.stdin.buffer
    try:
        stage = _load_stage(*json.loads(args))
    except InferenceUnavailable as exc:  # told to the worker, which stops with it
        answers.write(_pack(("unavailable", str(exc), "")))
        answers.flush()
        return
    answers.write(_pack(("ready", stage.backend, stage.device)))
    answers.flush()
    while len(head := frames.read(_LENGTH.size)) == _LENGTH.size:
        key, raw = pickle.loads(frames.read(_LENGTH.unpack(head)[0]))
        answers.write(_pack(_estimate_safely(stage, key, raw)))
        answers.flush()


# Imported, not run as __main__: the classes it pickles must keep this module's name.
_CHILD_CODE = "import sys; from processors.estimate import _child_main; _child_main(sys.argv[1])"


class Inference:
    """Runs a PoseStage for the pose agent, one frame at a time, in submission order.

    where: "process" (a child process loads the backend and estimates: an Edge TPU is then opened
    by that process alone) or "thread" (a thread of the worker). An estimator given here runs in a
    thread: it already lives in this process. Call `start` first, then `submit` each frame and
    await `result` for each, in the same order.
    """

    START_ATTEMPTS = 3

    def __init__(self, backend: str, models_dir, threads: int, max_people: int, where: str = "process", estimator=None):
        self.where = "thread" if estimator is not None else where
        if self.where not in ("process", "thread"):
            raise ValueError(f"inference runs in a 'process' or a 'thread', not {where!r}")
        self._load = (backend, models_dir and str(models_dir), threads, max_people)
        self._estimator = estimator
        self._stage: PoseStage | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pose")
        self._child: asyncio.subprocess.Process | None = None
        self._waiting: deque[asyncio.Future] = deque()  # the child's frames, oldest first
        self._reader: asyncio.Task | None = None
        self._restarting = asyncio.Lock()
        self.backend = self.device = ""

    async def start(self) -> str:
        """Load the backend where it will run and say which it is (raises InferenceUnavailable)."""
        if self.where == "thread":
            stage = await asyncio.get_running_loop().run_in_executor(self._thread, self._thread_stage)
            self.backend, self.device = stage.backend, stage.device
        elif self._child is None or self._child.returncode is not None:
            child = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                _CHILD_CODE,
                json.dumps(self._load),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                cwd=str(Path(__file__).resolve().parent.parent),
                limit=2**24,
            )
            try:
                kind, backend, device = await self._answer(child)
            except _ChildDied:
                await child.wait()
                raise
            if kind != "ready":
                await child.wait()
                raise InferenceUnavailable(backend)
            self._child, self._waiting = child, deque()
            self._reader = asyncio.ensure_future(self._read(child, self._waiting))
            self.backend, self.device = backend, device
            PEOPLE_DROPPED.labels(backend)  # exported from the start, at 0, as PoseStage does in-process
        return f"{self.backend} on {self.device}"

    def _thread_stage(self) -> PoseStage:
        if self._stage is None:
            if self._estimator is not None:
                self._stage = PoseStage(self._estimator, self._load[3])
            else:
                self._stage = _load_stage(*self._load)
        return self._stage

    @staticmethod
    async def _answer(child: asyncio.subprocess.Process):
        assert child.stdout is not None
        try:
            head = await child.stdout.readexactly(_LENGTH.size)
            return pickle.loads(await child.stdout.readexactly(_LENGTH.unpack(head)[0]))
        except asyncio.IncompleteReadError:
            raise _ChildDied from None

    async def _read(self, child: asyncio.subprocess.Process, waiting: deque) -> None:
        try:
            while True:
                answer = await self._answer(child)
                future = waiting.popleft()
                if not future.done():
                    future.set_result(answer)
        except _ChildDied:
            for future in waiting:
                if not future.done():
                    future.set_exception(_ChildDied())
            waiting.clear()

    def submit(self, key: bytes | None, raw: bytes | None) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        if self.where == "thread":
            return loop.run_in_executor(self._thread, _estimate_safely, self._thread_stage(), key, raw)
        future = loop.create_future()
        future.child = self._child  # type: ignore[attr-defined]  # which process it went to
        child = self._child
        if child is None or child.returncode is not None or self._reader is None or self._reader.done():
            future.set_exception(_ChildDied())
        else:
            assert child.stdin is not None
            self._waiting.append(future)
            child.stdin.write(_pack((key, raw)))
        return future

    async def result(self, future: asyncio.Future, key: bytes | None, raw: bytes | None) -> PoseEstimate | Rejected:
        """The frame's estimate (its cost counted in this process's metrics), or Rejected. Never
        raises: a frame whose process died is tried again in a fresh one; one that dies with it
        twice, or that no new process could be started for, is Rejected with the reason."""
        for attempt in (1, 2):
            try:
                pose, cost = await future
            except _ChildDied:
                if attempt == 2:
                    return Rejected("the inference process died twice while estimating this frame")
                problem = await self._replace(future.child)  # type: ignore[attr-defined]
                if problem is not None:
                    return Rejected(problem)
                future = self.submit(key, raw)
                continue
            if cost is not None:
                record(cost)
            return pose
        raise AssertionError("unreachable")

    async def _replace(self, dead) -> str | None:
        """A live process in place of `dead` (already done if another frame saw it die first), or
        the reason none could be started. A replacement that dies while loading (killed with the
        first, out of memory) is tried again, `START_ATTEMPTS` times in all."""
        async with self._restarting:
            child = self._child
            if child is not None and child is not dead and child.returncode is None:
                return None
            problem = ""
            for attempt in range(1, self.START_ATTEMPTS + 1):
                RESTARTS.inc()
                code = await self._child.wait() if self._child is not None else None
                log.error("the pose inference process ended (exit code %s); starting another", code)
                self._child = None
                try:
                    await self.start()
                    return None
                except _ChildDied:
                    problem = "it died while loading"
                except (InferenceUnavailable, OSError) as exc:
                    problem = str(exc)
                log.error("pose inference process %d of %d failed to start: %s", attempt, self.START_ATTEMPTS, problem)
                await asyncio.sleep(0.2 * attempt)
            return f"the inference process could not be started again ({self.START_ATTEMPTS} tries): {problem}"

    async def close(self) -> None:
        """End the child (it stops at the end of its input) and the thread."""
        child, self._child = self._child, None
        if child is not None and child.returncode is None and child.stdin is not None:
            child.stdin.close()
            try:
                await asyncio.wait_for(child.wait(), 10)
            except TimeoutError:
                child.kill()
                await child.wait()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
        self._thread.shutdown(wait=False)
