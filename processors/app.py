"""The stream-processing worker: one Faust app, two agents.

    frames --[estimate_poses]--> poses --[smooth_poses]--> poses.smoothed
                 |                           |
                 +------> deadletter <-------+

Topics carry raw envelopes (schemas/) and are decoded by the agents themselves, so a bad message
becomes a dead letter with its reason instead of crashing the agent. Pose inference is CPU-bound
and runs in a one-thread executor (TFLite and OpenCV release the GIL), never on the event loop;
frames are estimated one at a time, in order, since backends track the person from frame to frame.
The smoother keeps a per-camera state in a table whose changelog lets a restarted or rebalanced
worker carry on where the last one stopped (processors/faust_fixes.py keeps that restart lossless).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from concurrent.futures import ThreadPoolExecutor

import cv2
import faust
import numpy as np
from prometheus_client import Counter, Histogram

from infra import deadletters, metrics
from infra.changelog import SMOOTHER_TABLE
from infra.kafka import faust_broker_options
from infra.metrics_names import set_consumer_lag
from infra.settings import Settings
from processors import faust_fixes
from schemas import Frame, Person, PoseEstimate, SchemaError, SmoothedPose, parse_frame_key
from schemas.ids import InvalidId
from schemas.images import ImageError, decode_bgr
from schemas.keypoints import IMPUTED, OUTLIER, empty_keypoints
from vision.smoothing import OnlineSmoother, SmoothingParams

log = logging.getLogger(__name__)

POSE_FRAMES = Counter("booth_pose_frames_total", "Frames with a pose estimate published", ["backend", "device"])
POSE_LATENCY = Histogram(
    "booth_pose_latency_seconds",
    "Pose inference time per frame",
    ["backend"],
    buckets=(0.002, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.2, 0.5, 1.0),
)
CAPTURE_TO_POSE = Histogram(
    "booth_capture_to_pose_seconds",
    "Wall time from capture to pose published",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 1.0, 2.0, 5.0, 10.0),
)
SMOOTHED = Counter("booth_smooth_poses_total", "Smoothed poses published", ["mode"])
KEYPOINT_FLAGS = Counter("booth_smooth_keypoints_total", "Smoothed keypoints by flag", ["flag"])
NO_PERSON = Counter("booth_smooth_no_person_total", "Frames where no person was present after imputation")


class Rejected(Exception):
    """A message this stage cannot use; the text is the dead letter's reason."""


def decode_frame(key: bytes | None, raw: bytes | None) -> tuple[Frame, np.ndarray]:
    """Validate a frame message and decode its image to RGB, or raise Rejected with the reason."""
    try:
        frame = Frame.decode(raw)
    except SchemaError as exc:
        raise Rejected(f"invalid Frame: {exc}") from None
    try:
        if key is None or parse_frame_key(key) != (frame.session, frame.camera):
            raise Rejected(f"key {key!r} does not match the frame's {frame.session}/{frame.camera}")
    except InvalidId as exc:
        raise Rejected(f"bad key: {exc}") from None
    try:
        bgr = decode_bgr(frame)
    except ImageError as exc:
        raise Rejected(str(exc)) from None
    return frame, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


class PoseStage:
    """The synchronous part of the pose agent: decode, estimate, build the PoseEstimate."""

    def __init__(self, estimator):
        self.estimator = estimator
        self.backend = getattr(estimator, "name", type(estimator).__name__)
        self.device = getattr(estimator, "device", "cpu")

    def __call__(self, key: bytes | None, raw: bytes | None) -> PoseEstimate:
        frame, rgb = decode_frame(key, raw)
        t0 = time.perf_counter()
        persons = self.estimator.estimate(rgb, key=f"{frame.session}/{frame.camera}")
        seconds = time.perf_counter() - t0
        POSE_LATENCY.labels(self.backend).observe(seconds)
        return PoseEstimate(
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
            persons=[Person.from_array(p.keypoints, p.score) for p in persons[:8]],
        )


class SmoothStage:
    """The smoothing agent's core: the state is a plain dict so it can live in a Faust table."""

    def __init__(self, params: SmoothingParams):
        self.params = params

    def __call__(self, state: dict | None, pose: PoseEstimate) -> tuple[dict, SmoothedPose | None]:
        smoother = OnlineSmoother.from_state(state, self.params) if state else OnlineSmoother(self.params)
        last_seq = state.get("last_seq", -1) if state else -1
        if pose.seq <= last_seq:
            return state, None  # a redelivery after a restart: already smoothed and published
        observed = pose.persons[0].array() if pose.persons else empty_keypoints()
        try:
            smoothed, flags, present = smoother.update(observed, pose.capture_ns / 1e9)
        except ValueError as exc:  # e.g. a capture time that goes backwards: this pose, not the agent
            raise Rejected(f"cannot smooth {pose.session}/{pose.camera} seq {pose.seq}: {exc}") from None
        new_state = smoother.to_state()
        new_state["last_seq"] = pose.seq
        persons = [Person.from_array(smoothed, pose.persons[0].score if pose.persons else 0.0)] if present else []
        out = SmoothedPose(
            session=pose.session,
            camera=pose.camera,
            seq=pose.seq,
            capture_ns=pose.capture_ns,
            wall_time=pose.wall_time,
            width=pose.width,
            height=pose.height,
            backend=pose.backend,
            persons=persons,
            flags=[int(f) for f in flags] if present else [],
            mode="online",
            latency_ms=max(0.0, (time.time() - pose.wall_time) * 1000),
        )
        return new_state, out


def build_app(settings: Settings, estimator=None, smoothing: SmoothingParams | None = None) -> faust.App:
    datadir = settings.state_dir / "faust" / settings.app_id
    datadir.mkdir(parents=True, exist_ok=True)
    faust_fixes.apply(settings)
    app = faust.App(
        settings.group("processors"),
        **faust_broker_options(settings),
        store="memory://",  # the table's changelog topic is what makes its state durable
        datadir=str(datadir),
        web_enabled=False,
        topic_partitions=settings.partitions_streams,
        producer_linger_ms=0,
    )
    raw = dict(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    frames = app.topic(settings.topic_frames, partitions=settings.partitions_streams, **raw)
    poses = app.topic(settings.topic_poses, partitions=settings.partitions_streams, **raw)
    smoothed = app.topic(settings.topic_smoothed, partitions=settings.partitions_streams, **raw)
    deadletter = app.topic(settings.topic_deadletter, partitions=settings.partitions_control, **raw)
    states = app.Table(
        SMOOTHER_TABLE, default=None, partitions=settings.partitions_streams, key_type=str
    )  # values: JSON-able dicts (the app's default json serializer); its changelog: infra.changelog
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pose")  # one frame at a time, in order
    holder: dict = {"stage": None}

    def pose_stage() -> PoseStage:
        if holder["stage"] is None:
            est = estimator
            if est is None:
                from vision.pose import load_estimator

                est = load_estimator(settings.pose_backend, settings.models_dir, num_threads=settings.pose_threads)
            log.info("pose backend %s on %s", getattr(est, "name", "?"), getattr(est, "device", "?"))
            holder["stage"] = PoseStage(est)
        return holder["stage"]

    async def dead_letter(stage: str, reason: str, topic: str, event) -> None:
        msg = event.message
        letter = deadletters.build(stage, reason, topic, msg.key, msg.value, msg.partition, msg.offset)
        await deadletter.send(key=msg.key, value=letter.encode())

    def estimate(stage: PoseStage, key: bytes | None, value: bytes | None):
        try:
            return stage(key, value)
        except Rejected as exc:
            return exc
        except Exception as exc:
            log.exception("pose estimation failed")
            return Rejected(f"pose estimation failed: {type(exc).__name__}: {exc}")

    async def publish(event, result) -> None:
        if isinstance(result, Rejected):
            await dead_letter("pose", str(result), settings.topic_frames, event)
            return
        await poses.send(key=event.message.key, value=result.encode())
        POSE_FRAMES.labels(result.backend, result.device).inc()
        CAPTURE_TO_POSE.observe(max(0.0, time.time() - result.wall_time))

    @app.agent(frames, name="estimate_poses")
    async def estimate_poses(stream):
        # One frame at a time, in order, on one inference thread (backends track the person from
        # frame to frame). The loop below hands frames to that thread up to `pose_prefetch` ahead;
        # a second task publishes their poses in the same order and only then acknowledges each
        # frame, so a crash redelivers what was not published and never skips it. The thread never
        # waits for the event loop between frames.
        loop = asyncio.get_running_loop()
        manual = stream.noack()
        queued: asyncio.Queue = asyncio.Queue(maxsize=settings.pose_prefetch)

        async def publish_in_order():
            while True:
                event, future = await queued.get()
                await publish(event, await future)
                await manual.ack(event)

        publisher = asyncio.ensure_future(publish_in_order())
        try:
            async for event in manual.events():
                future = loop.run_in_executor(executor, estimate, pose_stage(), event.message.key, event.message.value)
                put = asyncio.ensure_future(queued.put((event, future)))
                await asyncio.wait({put, publisher}, return_when=asyncio.FIRST_COMPLETED)
                if publisher.done():  # it only stops by failing: let the agent fail with it
                    put.cancel()
                    publisher.result()
        finally:
            publisher.cancel()

    smooth_stage = SmoothStage(smoothing or SmoothingParams())

    @app.agent(poses, name="smooth_poses")
    async def smooth_poses(stream):
        async for event in stream.events():
            try:
                pose = PoseEstimate.decode(event.message.value)
                key = f"{pose.session}/{pose.camera}"
            except SchemaError as exc:
                await dead_letter("smooth", f"invalid PoseEstimate: {exc}", settings.topic_poses, event)
                continue
            try:
                state, out = smooth_stage(states.get(key), pose)
            except Rejected as exc:
                await dead_letter("smooth", str(exc), settings.topic_poses, event)
                continue
            except Exception as exc:
                log.exception("smoothing failed")
                await dead_letter(
                    "smooth", f"smoothing failed: {type(exc).__name__}: {exc}", settings.topic_poses, event
                )
                continue
            if out is None:
                continue
            states[key] = state
            await smoothed.send(key=event.message.key, value=out.encode())
            SMOOTHED.labels("online").inc()
            if not out.persons:
                NO_PERSON.inc()
            for bit, name in ((IMPUTED, "imputed"), (OUTLIER, "outlier")):
                KEYPOINT_FLAGS.labels(name).inc(sum(1 for f in out.flags if f & bit))

    @app.timer(interval=5.0)
    async def report_consumer_lag():
        """booth_consumer_lag of the agents' source partitions. The end is the high watermark of the
        last fetch response (true on the embedded broker, unlike its ListOffsets "latest"); the done
        mark is this worker's last commit (records its agents finished) or, before one, the position."""
        lags = {}
        try:
            for tp in app.consumer.assignment():
                if tp.topic not in (settings.topic_frames, settings.topic_poses):
                    continue  # table changelogs are read for recovery, not consumed
                end = app.consumer.highwater(tp)
                done = app.monitor.tp_committed_offsets.get(tp)  # cleared by Faust on every rebalance
                if done is None and end is not None:
                    done = await asyncio.wait_for(app.consumer.position(tp), timeout=2.0)
                if end is not None and done is not None:
                    lags[(tp.topic, tp.partition)] = end - done
        except Exception as exc:  # noqa: BLE001 - mid-rebalance or not started: try again next round
            log.debug("consumer lag not measured this round: %s", exc)
            return
        set_consumer_lag(app.conf.id, lags)

    return app


def run_worker(settings: Settings, loglevel: str = "warning") -> None:
    """`booth process`: run one worker; several workers split the partitions between them."""
    metrics.serve(settings, "processors")
    app = build_app(settings)
    worker = faust.Worker(app, loglevel=loglevel, quiet=True)
    # Faust's startup leaves a large heap that every full collection would walk again, holding the
    # GIL the inference thread needs: freeze it, and collect the young generation less often.
    gc.freeze()
    gc.set_threshold(10_000, 50, 100)
    worker.execute_from_commandline()
