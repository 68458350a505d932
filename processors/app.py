"""The stream-processing worker: one Faust app, two agents.

    frames --[estimate_poses: estimate, track]--> poses --[smooth_poses]--> poses.smoothed
                 |                                          |
                 +-------------> deadletter <---------------+

Topics carry raw envelopes (schemas/) and are decoded by the agents themselves, so a bad message
becomes a dead letter with its reason instead of crashing the agent. Pose inference is CPU-bound
and runs off the event loop, in a child process by default (processors/estimate.py); frames are
estimated one at a time, in order, since backends track the person from frame to frame.
The pose agent keeps at most ``pose_max_people`` people a frame (the strongest; the rest are
counted) and gives each a track id from the camera's identity tracker (vision.tracking). The
smoother imputes and smooths each track on its own and names one the camera's main person. Both
keep their per-camera state in tables whose changelogs let a restarted or rebalanced worker carry
on where the last one stopped (processors/faust_fixes.py keeps that restart lossless).
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import logging
import time

import faust
import numpy as np
from prometheus_client import Counter, Histogram

from infra import deadletters, metrics
from infra.changelog import SMOOTHER_TABLE, TRACKER_TABLE
from infra.kafka import changelog_configs, faust_broker_options
from infra.metrics_names import LOG_RESETS, set_consumer_lag
from infra.settings import Settings
from processors import faust_fixes
from processors.estimate import CPU_SECONDS, Inference, InferenceUnavailable, Rejected, keep_buffers_on_heap
from schemas import Person, PoseEstimate, SchemaError, SmoothedPose
from schemas.keypoints import IMPUTED, OUTLIER, empty_keypoints
from vision.smoothing import OnlineSmoother, SmoothingParams
from vision.tracking import PoseTracker, TrackingParams

log = logging.getLogger(__name__)

POSE_FRAMES = Counter("booth_pose_frames_total", "Frames with a pose estimate published", ["backend", "device"])
CAPTURE_TO_POSE = Histogram(
    "booth_capture_to_pose_seconds",
    "Wall time from capture to pose published",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 1.0, 2.0, 5.0, 10.0),
)
SMOOTHED = Counter("booth_smooth_poses_total", "Smoothed poses published", ["mode"])
KEYPOINT_FLAGS = Counter("booth_smooth_keypoints_total", "Smoothed keypoints by flag", ["flag"])
NO_PERSON = Counter("booth_smooth_no_person_total", "Frames where the main person was not present after imputation")
TRACKS_STARTED = Counter("booth_tracks_started_total", "Identity tracks started (a new person in a camera)")
TRACKS_ENDED = Counter("booth_tracks_ended_total", "Identity tracks ended (a person gone longer than track_max_lost_s)")
SMOOTHED_PEOPLE = Counter("booth_smooth_people_total", "People in smoothed poses (the main person and the others)")


class TrackStage:
    """The pose agent's identity tracking: one PoseTracker per camera, its state a plain dict so
    it can live in a Faust table.

    A frame at or before the last one tracked (a redelivery after a restart) is matched against
    the tracks without changing them; a person it cannot match gets no id rather than a new one.
    """

    def __init__(self, params: TrackingParams):
        self.params = params

    def __call__(self, state: dict | None, pose: PoseEstimate) -> tuple[dict | None, PoseEstimate]:
        """(the new state, or None when unchanged; the estimate with track ids)."""
        tracker = PoseTracker.from_state(state, self.params) if state else PoseTracker(self.params)
        poses = [p.array() for p in pose.persons]
        t = pose.capture_ns / 1e9
        if state and pose.seq <= state.get("last_seq", -1):
            ids, ended, new_state = tracker.assign(poses, t), [], None
        else:
            known = set(tracker.live)
            result = tracker.update(poses, t)
            ids, ended = result.tracks, result.ended
            new_state = tracker.to_state()
            new_state["last_seq"] = pose.seq
            TRACKS_STARTED.inc(len({i for i in ids if i is not None} - known))
            TRACKS_ENDED.inc(len(ended))
        persons = [p.model_copy(update={"track": i}) for p, i in zip(pose.persons, ids)]
        return new_state, pose.model_copy(update={"persons": persons, "ended_tracks": ended})


# A track the smoother holds but has not seen for this long is dropped even if its end was never
# announced (e.g. the tracker's state was lost): no per-track state outlives its person for long.
ORPHAN_S = 60.0
SMOOTH_STATE_VERSION = 2


class SmoothStage:
    """The smoothing agent's core: one OnlineSmoother per track of a camera, and the main person.

    The state is a plain dict so it can live in a Faust table: one record per camera holding every
    track's smoother, so a frame's update is one changelog record. Only tracked people are smoothed
    (the pose agent leaves untracked only what is too little of a person to follow). A track that
    ended (PoseEstimate.ended_tracks) is closed: its smoother is removed. The main person is the
    camera's main track, kept while that track lives; when it ends (or before there is one) the
    strongest person present in the frame becomes the main person.
    """

    def __init__(self, params: SmoothingParams):
        self.params = params

    def __call__(self, state: dict | None, pose: PoseEstimate) -> tuple[dict | None, SmoothedPose | None]:
        last_seq = state.get("last_seq", -1) if state else -1
        if pose.seq <= last_seq:
            return state, None  # a redelivery after a restart: already smoothed and published
        if not state or state.get("version") != SMOOTH_STATE_VERSION:
            # Nothing yet, or a single-person state from before tracking: start the camera afresh.
            state = {"version": SMOOTH_STATE_VERSION, "t_last": None, "main": None, "tracks": {}}
        t = pose.capture_ns / 1e9
        if state["t_last"] is not None and t <= state["t_last"]:
            raise Rejected(
                f"cannot smooth {pose.session}/{pose.camera} seq {pose.seq}: frames must arrive in capture "
                f"order: t={t} is not after t={state['t_last']}"
            )
        observed = {p.track: p for p in pose.persons if p.track is not None}
        ended = set(pose.ended_tracks)
        tracks: dict[str, dict] = {}
        smoothed: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for key in sorted(set(state["tracks"]) | {str(k) for k in observed}, key=int):
            track = int(key)
            entry = state["tracks"].get(key)
            if track in ended or (entry is not None and track not in observed and t - entry["seen"] > ORPHAN_S):
                continue
            smoother = (
                OnlineSmoother.from_state(entry["smoother"], self.params) if entry else OnlineSmoother(self.params)
            )
            person = observed.get(track)
            try:
                out, flags, present = smoother.update(person.array() if person else empty_keypoints(), t)
            except ValueError as exc:
                raise Rejected(f"cannot smooth {pose.session}/{pose.camera} seq {pose.seq}: {exc}") from None
            tracks[key] = {"smoother": smoother.to_state(), "seen": t if person else entry["seen"]}
            if present:
                smoothed[track] = (out, flags)
        main = state["main"] if str(state["main"]) in tracks else None
        if main is None and smoothed:
            main = min(smoothed, key=lambda k: (-observed[k].score, k))

        def person(track: int) -> Person:
            out, flags = smoothed[track]
            return Person.from_array(out, observed[track].score, track=track, flags=[int(f) for f in flags])

        persons = [person(main)] if main in smoothed else []
        new_state = {"version": SMOOTH_STATE_VERSION, "last_seq": pose.seq, "t_last": t, "main": main, "tracks": tracks}
        result = SmoothedPose(
            session=pose.session,
            camera=pose.camera,
            seq=pose.seq,
            capture_ns=pose.capture_ns,
            wall_time=pose.wall_time,
            width=pose.width,
            height=pose.height,
            backend=pose.backend,
            persons=persons,
            flags=persons[0].flags if persons else [],
            others=[person(k) for k in sorted(smoothed) if k != main],
            mode="online",
            latency_ms=max(0.0, (time.time() - pose.wall_time) * 1000),
        )
        return new_state, result


def tracking_params(settings: Settings, smoothing: SmoothingParams) -> TrackingParams:
    """The tracker's settings; what counts as a person is the smoother's own test."""
    return TrackingParams(
        max_lost_s=settings.track_max_lost_s,
        confidence_threshold=smoothing.confidence_threshold,
        min_keypoints=smoothing.min_keypoints,
        min_torso=smoothing.min_torso,
    )


def build_app(settings: Settings, estimator=None, smoothing: SmoothingParams | None = None) -> faust.App:
    datadir = settings.state_dir / "faust" / settings.app_id
    datadir.mkdir(parents=True, exist_ok=True)
    faust_fixes.apply(settings)
    for topic in (settings.topic_frames, settings.topic_poses):  # exported from the start, at 0
        LOG_RESETS.labels(settings.group("processors"), topic)
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
    deadletter = app.topic(
        settings.topic_deadletter, partitions=settings.topic_partitions()[settings.topic_deadletter], **raw
    )
    # Values: JSON-able dicts (the app's default json serializer), one per session/camera; their
    # changelogs: infra.changelog (purge and retention tombstone them). Compacted within
    # broker_retention_hours (infra.kafka.changelog_configs), so tombstoned state goes; with the write
    # quorum of the project's topics (their replication factor is the app's topic_replication_factor).
    configs = {**changelog_configs(settings), "min.insync.replicas": str(settings.kafka_min_insync_replicas)}
    table = dict(default=None, partitions=settings.partitions_streams, key_type=str, extra_topic_configs=configs)
    states = app.Table(SMOOTHER_TABLE, **table)
    trackers = app.Table(TRACKER_TABLE, **table)
    smoothing = smoothing or SmoothingParams()
    track_stage = TrackStage(tracking_params(settings, smoothing))
    inference = Inference(
        settings.pose_backend,
        settings.models_dir,
        settings.pose_threads,
        settings.pose_max_people,
        where=settings.pose_inference,
        estimator=estimator,
    )

    async def dead_letter(stage: str, reason: str, topic: str, event) -> None:
        msg = event.message
        letter = deadletters.build(stage, reason, topic, msg.key, msg.value, msg.partition, msg.offset)
        await deadletter.send(key=deadletters.record_key(letter), value=letter.encode())

    def track(result: PoseEstimate) -> PoseEstimate | Rejected:
        """Track ids for an estimate, the camera's tracker state updated in its table. Runs in the
        frame's own context (Faust writes a table's changelog to the partition of the event in it)."""
        key = f"{result.session}/{result.camera}"
        cpu0 = time.thread_time()
        try:
            state, tracked = track_stage(trackers.get(key), result)
        except Exception as exc:
            log.exception("tracking failed")
            return Rejected(f"tracking failed: {type(exc).__name__}: {exc}")
        finally:
            CPU_SECONDS["tracking"].inc(time.thread_time() - cpu0)
        if state is not None:
            trackers[key] = state
        return tracked

    async def publish(event, result, context: contextvars.Context) -> None:
        if isinstance(result, PoseEstimate):
            result = context.run(track, result)
        if isinstance(result, Rejected):
            await dead_letter("pose", str(result), settings.topic_frames, event)
            return
        await poses.send(key=event.message.key, value=result.encode())
        POSE_FRAMES.labels(result.backend, result.device).inc()
        CAPTURE_TO_POSE.observe(max(0.0, time.time() - result.wall_time))

    @app.agent(frames, name="estimate_poses")
    async def estimate_poses(stream):
        # One frame at a time, in order, by one inference process (backends track the person from
        # frame to frame). The loop below hands frames to it up to `pose_prefetch` ahead; a second
        # task publishes their poses in the same order and only then acknowledges each frame, so a
        # crash redelivers what was not published and never skips it. Inference never waits for
        # the event loop between frames. Tracking needs each frame's people and the
        # previous frame's tracks, so it runs in the publishing task, in order, in the context the
        # frame's event was received in (a copy: it names the event the tracker table's writes
        # belong to).
        try:
            log.info("pose backend %s (inference in a %s)", await inference.start(), inference.where)
        except InferenceUnavailable as exc:
            # Nothing this worker could do without it: stop the worker (a non-zero exit the service
            # manager sees) rather than keep its partitions and estimate nothing.
            log.critical("%s", exc)
            await app.crash(exc)
            return
        manual = stream.noack()
        queued: asyncio.Queue = asyncio.Queue(maxsize=settings.pose_prefetch)

        async def publish_in_order():
            while True:
                event, future, context = await queued.get()
                result = await inference.result(future, event.message.key, event.message.value)
                await publish(event, result, context)
                await manual.ack(event)

        publisher = asyncio.ensure_future(publish_in_order())
        try:
            async for event in manual.events():
                future = inference.submit(event.message.key, event.message.value)
                put = asyncio.ensure_future(queued.put((event, future, contextvars.copy_context())))
                await asyncio.wait({put, publisher}, return_when=asyncio.FIRST_COMPLETED)
                if publisher.done():  # it only stops by failing: let the agent fail with it
                    put.cancel()
                    publisher.result()
        finally:
            publisher.cancel()

    smooth_stage = SmoothStage(smoothing)

    @app.agent(poses, name="smooth_poses")
    async def smooth_poses(stream):
        async for event in stream.events():
            try:
                pose = PoseEstimate.decode(event.message.value)
                key = f"{pose.session}/{pose.camera}"
            except SchemaError as exc:
                await dead_letter("smooth", f"invalid PoseEstimate: {exc}", settings.topic_poses, event)
                continue
            cpu0 = time.thread_time()
            problem = None
            try:
                state, out = smooth_stage(states.get(key), pose)
            except Rejected as exc:
                problem = str(exc)
            except Exception as exc:
                log.exception("smoothing failed")
                problem = f"smoothing failed: {type(exc).__name__}: {exc}"
            CPU_SECONDS["smoothing"].inc(time.thread_time() - cpu0)
            if problem is not None:
                await dead_letter("smooth", problem, settings.topic_poses, event)
                continue
            if out is None:
                continue
            states[key] = state
            await smoothed.send(key=event.message.key, value=out.encode())
            SMOOTHED.labels("online").inc()
            SMOOTHED_PEOPLE.inc(len(out.persons) + len(out.others))
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


def service_worker(app: faust.App, loglevel: str = "warning") -> faust.Worker:
    """A Faust worker for a service: without the terminal spinner, which sets the root logger to
    DEBUG so as to spin on every record (each debug call of the Kafka client would then build its
    record and run the payload filter over whole fetch responses: a few core-ms a frame)."""
    worker = faust.Worker(app, loglevel=loglevel, quiet=True)
    worker.spinner = None
    return worker


def run_worker(settings: Settings, loglevel: str = "warning") -> None:
    """`booth process`: run one worker; several workers split the partitions between them."""
    metrics.serve(settings, "processors")
    keep_buffers_on_heap()
    worker = service_worker(build_app(settings), loglevel)
    # Faust's startup leaves a large heap that every full collection would walk again, holding the
    # GIL (the event loop's; inference too with BOOTH_POSE_INFERENCE=thread): freeze it, and collect
    # the young generation less often.
    gc.freeze()
    gc.set_threshold(10_000, 50, 100)
    worker.execute_from_commandline()
