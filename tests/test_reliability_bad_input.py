"""A corpus of bad input sent straight to the topics: every item lands in the dead-letter topic with
its reason, is counted in booth_deadletters_total{stage}, and the good messages after it are still
processed. Also: what really happens to a 60 MB message."""

from __future__ import annotations

import json
import struct
import uuid

import cv2
import numpy as np
import pytest

from infra import kafka
from infra.stack import free_port
from schemas import DeadLetter, Frame, Person, PoseEstimate, SessionEvent, SmoothedPose, frame_key
from schemas.messages import KINDS
from schemas.redaction import without_pixels

from helpers import (
    FAST_ASSEMBLER,
    TopicReader,
    clip_frames,
    pixel_marks,
    running,
    scrape,
    start_worker,
    stop_worker,
    wait_until,
    with_sof_size,
)

BIG = 60 * 1024 * 1024


def rebuild(message, version: int | None = None, **fields) -> bytes:
    """The message's envelope with header fields replaced (bypassing validation), or another version."""
    data = message.encode()
    (n,) = struct.unpack(">I", data[4:8])
    header = json.loads(data[8 : 8 + n])
    header.update(fields)
    raw = json.dumps(header).encode()
    prefix = data[:3] + bytes([data[3] if version is None else version])
    return prefix + struct.pack(">I", len(raw)) + raw + data[8 + n :]


def envelope(kind: int, header: bytes, payload: bytes = b"") -> bytes:
    """A raw envelope of the kind's current version."""
    return b"MB" + bytes([kind, KINDS[kind].VERSION]) + struct.pack(">I", len(header)) + header + payload


def send_all(settings, items, **producer_options) -> list:
    """Send (topic, key, value) in order, one partition-ordered stream per key; returns the metadata."""
    producer = kafka.producer(settings, **producer_options)
    try:
        futures = [producer.send(topic, key=key, value=value) for topic, key, value in items]
        producer.flush(timeout=120)
        return [f.get(timeout=1) for f in futures]
    finally:
        producer.close()


def pose_of(frame: Frame, seq: int, capture_ns: int, camera: str | None = None) -> PoseEstimate:
    kp = np.column_stack([np.linspace(100, 200, 17), np.linspace(50, 200, 17), np.full(17, 0.9)])
    return PoseEstimate(
        session=frame.session,
        camera=camera or frame.camera,
        seq=seq,
        capture_ns=capture_ns,
        wall_time=frame.wall_time,
        width=frame.width,
        height=frame.height,
        backend="test",
        persons=[Person.from_array(kp, 0.9)],
    )


def test_the_default_producer_refuses_a_60_mb_message_with_a_clear_error(settings):
    from kafka.errors import MessageSizeTooLargeError

    producer = kafka.producer(settings)
    try:
        with pytest.raises(MessageSizeTooLargeError, match="larger than the maximum request size"):
            producer.send(settings.topic_frames, key=b"s/c", value=bytes(BIG))
    finally:
        producer.close()


@pytest.mark.slow
def test_bad_frames_and_poses_are_dead_lettered_counted_and_processing_continues(settings, shared_dir, tmp_path):
    session = f"bad-{uuid.uuid4().hex[:6]}"
    good = clip_frames(shared_dir, session, "cam0", 3)
    f, key = good[0], frame_key(session, "cam0")
    ok, bmp = cv2.imencode(".bmp", np.zeros((240, 320, 3), np.uint8))
    assert ok
    # (what, key, value, a piece of the dead letter's reason)
    bad_frames = [
        (
            "truncated JPEG",
            key,
            f.model_copy(update={"seq": 100, "image": f.image[:150]}).encode(),
            "undecodable jpeg image (150 bytes)",
        ),
        ("empty value", key, b"", "message is 0 bytes"),
        ("null value", key, None, "message is empty (null value)"),
        ("wrong schema version", key, rebuild(f, version=9), "Frame schema version 9 is not supported"),
        ("wrong kind", key, pose_of(f, 0, 1).encode(), "expected a Frame, got a PoseEstimate"),
        ("not the declared format", key, f.model_copy(update={"image": bmp.tobytes()}).encode(), "is not a jpeg"),
        (
            "60 MB",
            key,
            f.model_copy(update={"seq": 101, "image": b"\xff\xd8\xff" + bytes(BIG)}).encode(),
            f"undecodable jpeg image ({BIG + 3} bytes)",
        ),
        (
            "decompression bomb",
            key,
            f.model_copy(update={"seq": 102, "image": with_sof_size(f.image, 60000, 60000)}).encode(),
            "(a decompression bomb)",
        ),
        ("path traversal in the header", key, rebuild(f, session="../../etc"), "forbidden character '.'"),
        ("path traversal in the key", b"x/../../cam0", f.encode(), "bad key"),
        ("look-alike in the header", key, rebuild(f, camera="c\u0430m0"), "U+0430"),
        ("look-alike in the key", f"{session}/c\u0430m0".encode(), f.encode(), "is not ASCII"),
        ("fullwidth id", key, rebuild(f, camera="\uff43am0"), "U+FF43"),
        ("very long id", key, rebuild(f, session="s" * 10_000), "10000 characters long"),
        ("nesting bomb", key, envelope(1, b"[" * 5000 + b"]" * 5000, b"\xff\xd8\xff"), "header is not valid JSON"),
        ("key of another camera", frame_key(session, "cam1"), f.encode(), "does not match the frame's"),
        ("no key", None, f.encode(), "key None does not match"),
    ]
    # Poses go to the poses topic before the good frames' poses, on the same partition (same key).
    other = frame_key(session, "camX")
    bad_poses = [
        ("empty value", key, b"", "message is 0 bytes"),
        ("wrong schema version", key, rebuild(pose_of(f, 0, 1), version=3), "schema version 3 is not supported"),
        ("a Frame on the poses topic", key, f.encode(), "expected a PoseEstimate, got a Frame"),
        ("path traversal", key, rebuild(pose_of(f, 0, 1), camera="../cam0"), "forbidden character '.'"),
        ("nesting bomb", key, envelope(2, b'{"a":' * 5000 + b"1" + b"}" * 5000), "header is not valid JSON"),
        # Capture time going backwards on camX (its own smoother state, so cam0 is unaffected):
        # the first pose is fine, the second cannot be smoothed.
        ("time going backwards", other, pose_of(f, 1, 1_000, camera="camX").encode(), "cannot smooth"),
    ]
    fine_camx = ("camX first pose", other, pose_of(f, 0, 2_000_000, camera="camX").encode())

    port = free_port()
    log_path = tmp_path / "worker.log"
    worker = start_worker(settings, log_path, metrics_port=port)
    dead, smoothed = TopicReader(settings, settings.topic_deadletter), TopicReader(settings, settings.topic_smoothed)
    poses = TopicReader(settings, settings.topic_poses)
    try:
        send_all(
            settings,
            [(settings.topic_poses, fine_camx[1], fine_camx[2])]
            + [(settings.topic_poses, k, v) for _, k, v, _ in bad_poses]
            + [(settings.topic_frames, k, v) for _, k, v, _ in bad_frames]
            + [(settings.topic_frames, key, g.encode()) for g in good],
            max_request_size=BIG + (1 << 20),
        )  # the test's producer lets the 60 MB message through
        expected = len(bad_frames) + len(bad_poses)
        wait_until(
            lambda: (
                running(worker, log_path) and len(dead.poll()) >= expected and len(smoothed.poll()) >= len(good) + 1
            ),
            timeout=120,
            what="dead letters and smoothed poses",
        )
        counted = wait_until(
            lambda: _deadletter_counts(port, len(bad_frames), len(bad_poses)),
            timeout=10,
            what="the counters to catch up",
        )
        wait_until(lambda: len(poses.poll()) >= len(bad_poses) + 1 + len(good), timeout=10, what="poses")
    finally:
        stop_worker(worker)
        for reader in (dead, smoothed, poses):
            reader.close()

    assert counted == {"pose": len(bad_frames), "smooth": len(bad_poses)}
    letters = [(r.key, decode_letter(r.value)) for r in dead.records]
    assert len(letters) == len(bad_frames) + len(bad_poses), [d.reason for _, d in letters]
    for stage, corpus in (("pose", bad_frames), ("smooth", bad_poses)):
        for what, k, value, reason in corpus:
            matches = [d for rk, d in letters if d.stage == stage and reason in d.reason and rk == kept_key(k)]
            assert len(matches) == 1, f"{stage} / {what}: no single dead letter with {reason!r}"
            letter = matches[0]
            value = value or b""
            # A copy for debugging: a frame's envelope and image headers, never its pixels.
            kept = without_pixels(value)[: DeadLetter.MAX_ORIGINAL]
            assert letter.original_size == len(value) and letter.original == kept, what
            assert letter.truncated == (len(kept) < len(value)), what
    # Frames that carried a picture kept none of it: a piece of the JPEG's scan data (its pixels) is
    # in no dead letter, and not in the worker's log either, raw or escaped.
    pixels, as_text = pixel_marks(f.image)
    assert all(pixels not in d.original for _, d in letters)
    log_bytes = log_path.read_bytes()
    assert pixels not in log_bytes and as_text.encode() not in log_bytes
    # Processing went on: the good frames after the corpus got their poses (a person on each), in
    # order, and were smoothed.
    estimates = [p for p in (_try_decode(r.value) for r in poses.records) if isinstance(p, PoseEstimate)]
    mine = [p for p in estimates if p.backend == "movenet"]
    assert [p.seq for p in mine] == [0, 1, 2] and all(p.persons for p in mine)
    out = [m for m in (decode_any(r.value) for r in smoothed.records) if isinstance(m, SmoothedPose)]
    assert [(m.camera, m.seq) for m in out if m.camera == "cam0"] == [("cam0", 0), ("cam0", 1), ("cam0", 2)]
    assert [(m.camera, m.seq) for m in out if m.camera == "camX"] == [("camX", 0)]


def _deadletter_counts(port: int, frames: int, poses: int) -> dict | None:
    samples = scrape(port)
    counts = {stage: samples.get(("booth_deadletters_total", (("stage", stage),)), 0.0) for stage in ("pose", "smooth")}
    return counts if counts["pose"] >= frames and counts["smooth"] >= poses else None


def kept_key(key: bytes | None) -> bytes | None:
    text = DeadLetter.key_text(key)
    return None if text is None else text.encode()


def decode_letter(value: bytes) -> DeadLetter:
    letter = decode_any(value)
    assert isinstance(letter, DeadLetter)
    return letter


def _try_decode(value: bytes | None):
    from schemas import SchemaError, decode

    try:
        return decode(value)
    except SchemaError:
        return None  # the corpus itself


def decode_any(value: bytes):
    from schemas import decode

    return decode(value)


FAST = {**FAST_ASSEMBLER, "min_samples": 3}


def test_assembler_dead_letters_bad_input_and_still_builds_the_dataset(settings):
    from prometheus_client import REGISTRY

    from assembler.consumer import Assembler
    from assembler.synthetic import SyntheticSession, produce
    from dataset import read_manifest
    from infra.objectstore import ObjectStore

    settings = settings.model_copy(update={"kafka_session_timeout_ms": 3000, "kafka_heartbeat_interval_ms": 500})
    syn = SyntheticSession(f"asm-{uuid.uuid4().hex[:6]}", cameras=("cam0",), frames=8)
    frame, pose = syn.frame("cam0", 0), syn.pose("cam0", 0)
    key = frame_key(syn.session, "cam0")
    bomb = b"[" * 5000 + b"]" * 5000
    start = SessionEvent(session="s", kind="start", wall_time=1.0)
    # (topic, key, value, a piece of the dead letter's reason)
    corpus = [
        (
            settings.topic_frames,
            frame_key("never-started", "cam0"),
            SyntheticSession("never-started", cameras=("cam0",)).frame("cam0", 0).encode(),
            "was never started",
        ),
        (
            settings.topic_sessions,
            b"ghost",
            SessionEvent(session="ghost", kind="end", wall_time=1.0).encode(),
            "end of session ghost, which was never started",
        ),
        (settings.topic_frames, key, envelope(1, bomb, b"\xff\xd8\xff"), "header is not valid JSON"),
        (settings.topic_smoothed, key, envelope(3, bomb), "header is not valid JSON"),
        (
            settings.topic_sessions,
            b"x",
            envelope(4, b'{"wall_time": ' + b"9" * 5000 + b"}"),
            "header is not valid JSON",
        ),
        (settings.topic_frames, key, b"", "message is 0 bytes"),
        (settings.topic_frames, key, None, "null value"),
        (settings.topic_frames, b"../../etc/cam0", frame.encode(), "unsafe or malformed key"),
        (settings.topic_frames, f"{syn.session}/c\u0430m0".encode(), frame.encode(), "is not ASCII"),
        (settings.topic_frames, ("s" * 300 + "/cam0").encode(), frame.encode(), "300 characters long"),
        (settings.topic_smoothed, key, rebuild(pose, session="../" + syn.session), "forbidden character '.'"),
        (settings.topic_sessions, b"y", rebuild(start, session="..\u2215x"), "forbidden character"),
        (settings.topic_frames, key, pose.encode(), "expected a Frame on"),
    ]
    produce(
        settings,
        [syn.event_message(settings, syn.start())]
        + [(t, k, v) for t, k, v, _ in corpus]
        + syn.stream_messages(settings)
        + [syn.event_message(settings, syn.end())],
    )

    def counted() -> float:
        return REGISTRY.get_sample_value("booth_deadletters_total", {"stage": "assembler"}) or 0.0

    before = counted()
    summary = Assembler(settings, group_id=settings.group("assembler"), **FAST).run(idle_exit=1.5, serve_metrics=False)

    assert summary.closed == {syn.session: "ready"}
    manifest = read_manifest(settings, syn.session)
    assert manifest["samples"] == 8 and manifest["rejected"] == {}
    assert counted() - before == len(corpus) == summary.dead_letters
    dead = TopicReader(settings, settings.topic_deadletter)
    try:
        letters = wait_until(lambda: len(dead.poll()) >= len(corpus) and dead.records, timeout=10, what="dead letters")
    finally:
        dead.close()
    assert len(letters) == len(corpus)
    for topic, k, value, reason in corpus:
        matches = [
            d
            # The letter's record key is the original's printable text (a run like base64 is cut).
            for d in map(decode_letter, (r.value for r in letters if r.key == kept_key(k)))
            if reason in d.reason and d.source_topic == topic
        ]
        assert len(matches) == 1, f"{topic}: no single dead letter with {reason!r}"
        assert (matches[0].stage, matches[0].original) == ("assembler", without_pixels(value or b""))
    # Nothing was written outside the good session's own prefix.
    assert {k.split("/")[1] for k in ObjectStore(settings).list("")} == {syn.session}


def test_a_repeated_frame_identity_is_taken_as_a_redelivery_whatever_its_content():
    """(session, camera, seq) is a frame's identity end to end: the first message with it wins and
    later ones are dropped as redeliveries, even with other content. This is what makes replays
    harmless, and why a camera must not be restarted under the same id within a session (its seq
    starts again at 0): see docs/guarantees.md."""
    from assembler.join import SessionState
    from assembler.offsets import Held
    from assembler.synthetic import SyntheticSession
    from processors.app import SmoothStage
    from vision.smoothing import SmoothingParams

    syn = SyntheticSession("again", cameras=("cam0",), frames=4)
    state = SessionState(syn.start(), shard_size=4, resolution=32, now=0.0)
    other = SyntheticSession("again", cameras=("cam0",), frames=4, size=(64, 48))  # different images
    outcomes = []
    for run, source in enumerate((syn, other)):
        for seq in range(2):
            outcomes.append(state.add_frame(source.frame("cam0", seq), Held("f", 0, 10 * run + seq), 0.0))
            outcomes.append(state.add_pose(source.pose("cam0", seq), Held("p", 0, 10 * run + seq), 0.0))
    assert [o.sample is not None for o in outcomes] == [False, True, False, True] + [False] * 4
    assert all(o.replay for o in outcomes[4:])
    kept = state.streams["cam0"].shards[0].samples
    assert sorted(kept) == [0, 1] and all(kept[s].image == syn.frame("cam0", s).image for s in kept)

    stage, smoother_state = SmoothStage(SmoothingParams()), None
    frame = syn.frame("cam0", 0)
    for seq in (0, 1):
        smoother_state, out = stage(smoother_state, pose_of(frame, seq, (seq + 1) * 33_000_000))
        assert out is not None
    again, out = stage(smoother_state, pose_of(frame, 0, 99 * 33_000_000))
    assert out is None and again == smoother_state
