"""The assembler against the real broker and S3 server: replayed sessions become datasets."""

from __future__ import annotations

import json
import threading
import uuid

import cv2
import numpy as np
import pytest

from assembler.consumer import Assembler
from assembler.synthetic import SyntheticSession, produce, synthetic_pose
from dataset import load_session_samples, read_manifest
from dataset.reader import iter_session_samples
from infra import kafka
from infra.objectstore import ObjectStore
from schemas import DatasetReady, DeadLetter, SessionEvent, decode, frame_key, layout
from schemas.redaction import without_pixels
from vision.posemap import letterbox_image, render_pose_map

from helpers import FAST_ASSEMBLER, wait_until

FAST = FAST_ASSEMBLER


@pytest.fixture
def settings(settings):
    """Shorter group sessions: this broker makes a join wait about half the session timeout."""
    return settings.model_copy(update={"kafka_session_timeout_ms": 3000, "kafka_heartbeat_interval_ms": 500})


def _read_topic(settings, topic: str, timeout_ms: int = 1500) -> list:
    """Everything on a topic so far (never relies on end offsets: reads until quiet)."""
    c = kafka.consumer(settings, topic, group_id=None, consumer_timeout_ms=timeout_ms)
    try:
        return [decode(r.value) for r in c]
    finally:
        c.close()


_SERIES = {
    "samples_cam0": ("booth_assembler_samples_total", {"camera": "cam0"}),
    "samples_cam1": ("booth_assembler_samples_total", {"camera": "cam1"}),
    "bytes": ("booth_assembler_bytes_total", {}),
    "no_person": ("booth_assembler_rejected_total", {"reason": "no_person"}),
    "invalid": ("booth_assembler_rejected_total", {"reason": "invalid"}),
    "unknown_session": ("booth_assembler_rejected_total", {"reason": "unknown_session"}),
    "dead_letters": ("booth_deadletters_total", {"stage": "assembler"}),
    "ready": ("booth_dataset_ready_seconds_count", {}),
}


def _metrics() -> dict[str, float]:
    from prometheus_client import REGISTRY

    return {k: REGISTRY.get_sample_value(name, labels) or 0.0 for k, (name, labels) in _SERIES.items()}


def _session_objects(settings, session: str) -> dict[str, bytes]:
    return {k: ObjectStore(settings).get(k) for k in ObjectStore(settings).list(layout.session_prefix(session))}


def test_replayed_session_becomes_a_dataset_with_matching_counts(settings):
    syn = SyntheticSession(
        f"s-{uuid.uuid4().hex[:6]}",
        frames=20,
        no_person={("cam0", 5), ("cam0", 12)},
        no_pose={("cam1", 7), ("cam1", 19)},
    )
    messages = [syn.event_message(settings, syn.start())] + syn.stream_messages(settings)
    # A broken JPEG in the session, a message with an unsafe key, a frame of a session never started.
    broken = syn.frame("cam1", 20).model_copy(update={"image": syn.frame("cam1", 20).image[:300]})
    stranger = SyntheticSession("never-started", cameras=("cam0",)).frame("cam0", 0)
    evil = syn.frame("cam0", 21).encode()
    messages += [
        (settings.topic_frames, frame_key(syn.session, "cam1"), broken.encode()),
        (settings.topic_frames, b"../../etc/cam0", evil),
        (settings.topic_frames, frame_key("never-started", "cam0"), stranger.encode()),
        (settings.topic_smoothed, frame_key(syn.session, "cam0"), b"not an envelope"),
        syn.event_message(settings, syn.end()),
    ]
    produce(settings, messages)
    # The guided capture's last coverage, written before the end (console.guide): into the manifest.
    coverage = {"coverage": 0.83, "reason": "target", "target": 0.8, "facings": ["front", "back"], "prompts": []}
    ObjectStore(settings).put(layout.coverage_key(syn.session), json.dumps(coverage).encode())

    before = _metrics()
    summary = Assembler(settings, group_id="asm", **FAST).run(idle_exit=1.5, serve_metrics=False)
    delta = {k: v - before[k] for k, v in _metrics().items()}
    assert delta.pop("bytes") > 36 * 1000
    assert delta == {
        "samples_cam0": 18,
        "samples_cam1": 18,
        "no_person": 2,
        "invalid": 2,
        "unknown_session": 1,
        "dead_letters": 4,
        "ready": 1,
    }

    expected = syn.expected_samples()
    assert summary.closed == {syn.session: "ready"}
    manifest = read_manifest(settings, syn.session)
    assert manifest["status"] == "ready" and manifest["closed_by"] == "end"
    assert manifest["coverage"]["coverage"] == 0.83 and manifest["coverage"]["facings"] == ["front", "back"]
    assert manifest["samples"] == len(expected) == 36
    assert manifest["per_camera"]["cam0"]["samples"] == 18 and manifest["per_camera"]["cam1"]["samples"] == 18
    assert manifest["rejected"] == {"no_person": 2, "no_pose": 2, "undecodable": 1}
    assert {(r["camera"], r["seq"], r["reason"]) for r in manifest["rejected_frames"]} == {
        ("cam0", 5, "no_person"),
        ("cam0", 12, "no_person"),
        ("cam1", 7, "no_pose"),
        ("cam1", 19, "no_pose"),
        ("cam1", 20, "undecodable"),
    }
    assert manifest["resolution"] == 64 and manifest["pose_backends"] == ["synthetic"]
    assert manifest["posemap_style"] == "stick"  # what the stored maps show: part of the training contract
    evens = sum(1 for _, s in expected if s % 2 == 0)
    assert manifest["imputed_share"] == pytest.approx(evens / (17 * len(expected)), abs=1e-6)
    assert manifest["shards"] == sorted(layout.shard_key(syn.session, c, i) for c in ("cam0", "cam1") for i in range(5))

    # The shards decode to exactly the samples sent: the JPEG as captured, the pose and its map.
    got = list(iter_session_samples(settings, syn.session))
    assert {(s.camera, s.seq) for s in got} == expected and len(got) == len(expected)
    for s in got[:6]:
        sent = syn.frame(s.camera, s.seq).image
        np.testing.assert_array_equal(
            s.frame, cv2.cvtColor(cv2.imdecode(np.frombuffer(sent, np.uint8), 1), cv2.COLOR_BGR2RGB)
        )
        np.testing.assert_allclose(s.pose, synthetic_pose(s.seq, syn.size), atol=1e-3)
        np.testing.assert_array_equal(s.posemap, render_pose_map(s.pose, syn.size, 64))
    pairs = load_session_samples(settings, syn.session)
    assert len(pairs) == len(expected)
    frame, posemap, pose = pairs[0]
    assert frame.shape == posemap.shape == (64, 64, 3) and pose.shape == (17, 3)
    first = got[0]
    np.testing.assert_array_equal(frame, letterbox_image(first.frame, 64))

    preview = ObjectStore(settings).get(layout.preview_key(syn.session))
    assert cv2.imdecode(np.frombuffer(preview, np.uint8), cv2.IMREAD_COLOR) is not None

    ready = [m for m in _read_topic(settings, settings.topic_datasets) if isinstance(m, DatasetReady)]
    assert [(r.session, r.status, r.samples, r.cameras) for r in ready] == [
        (syn.session, "ready", 36, ["cam0", "cam1"])
    ]
    assert ready[0].manifest_key == layout.manifest_key(syn.session)

    letters = [m for m in _read_topic(settings, settings.topic_deadletter) if isinstance(m, DeadLetter)]
    reasons = sorted(m.reason for m in letters)
    assert len(letters) == 4 and all(m.stage == "assembler" for m in letters)
    assert any("unsafe or malformed key" in r and "'.'" in r for r in reasons)
    assert any("never-started was never started" in r for r in reasons)
    assert any("truncated JPEG" in r for r in reasons)
    assert any("undecodable SmoothedPose" in r for r in reasons)
    unsafe = next(m for m in letters if "unsafe" in m.reason)
    # The dead letter keeps the frame's header and its image's headers, not its pixels.
    assert unsafe.original == without_pixels(evil) and unsafe.original_size == len(evil) and unsafe.truncated
    # Nothing was written outside the session's own prefix.
    assert {k.split("/")[1] for k in ObjectStore(settings).list("")} == {syn.session}


def test_crash_mid_session_then_restart_gives_the_same_dataset(settings):
    syn = SyntheticSession(f"c-{uuid.uuid4().hex[:6]}", frames=24, no_person={("cam1", 9)})
    produce(settings, [syn.event_message(settings, syn.start())] + syn.stream_messages(settings, range(0, 10)))

    stop = threading.Event()
    first = Assembler(settings, group_id="crashy", **FAST)
    worker = threading.Thread(target=first.run, kwargs=dict(stop_event=stop, serve_metrics=False))
    worker.start()
    try:
        # Shards 0 and 1 (seqs 0-7) of both cameras get written; seqs 8-9 stay in an open shard.
        wait_until(lambda: len(ObjectStore(settings).list(layout.index_prefix(syn.session))) == 4, 30, what="4 shards")
    finally:
        stop.set()
        worker.join(30)
    assert not worker.is_alive()
    assert first.sessions[syn.session].open_held(), "the open shard must still be held at the crash"
    before = _session_objects(settings, syn.session)
    assert all("manifest" not in k for k in before)

    produce(settings, syn.stream_messages(settings, range(10, 24)) + [syn.event_message(settings, syn.end())])
    second = Assembler(settings, group_id="crashy", **FAST).run(idle_exit=1.5, serve_metrics=False)
    assert second.closed == {syn.session: "ready"}
    # The restart resumed after the persisted shards: it did not rebuild them.
    assert second.shards == 2 * 4
    after = _session_objects(settings, syn.session)
    for key, data in before.items():
        assert after[key] == data

    # A clean run over the same messages into another bucket writes the very same objects.
    clean = settings.model_copy(update={"s3_bucket": settings.s3_bucket + "-clean"})
    ObjectStore(clean).ensure_bucket()
    Assembler(clean, group_id="clean", **FAST).run(idle_exit=1.5, serve_metrics=False)
    reference = _session_objects(clean, syn.session)
    ready_record = layout.session_prefix(syn.session) + "dataset_ready.json"
    assert sorted(after) == sorted(reference)
    for key in reference:
        if key != ready_record:  # holds the DatasetReady's own wall time
            assert after[key] == reference[key], key
    seen = [(s.camera, s.seq) for s in iter_session_samples(settings, syn.session)]
    assert len(seen) == len(set(seen)) == len(syn.expected_samples())


def test_sharded_assemblers_each_take_their_sessions_and_give_the_same_datasets(settings):
    """Two assemblers, members 0/2 and 1/2, over the same topics: each session is assembled once,
    by the member it hashes to, into exactly the objects one assembler alone writes."""
    from kafka.partitioner.default import murmur2

    def owner(session: str) -> int:
        return (murmur2(session.encode()) & 0x7FFFFFFF) % 2

    names = (f"m-{uuid.uuid4().hex[:6]}" for _ in range(400))
    first = next(names)
    second = next(n for n in names if owner(n) != owner(first))
    sessions = [SyntheticSession(name, frames=12) for name in (first, second)]
    messages = []
    for syn in sessions:
        messages += [syn.event_message(settings, syn.start()), *syn.stream_messages(settings)]
        messages.append(syn.event_message(settings, syn.end()))
    messages.append((settings.topic_frames, None, b"junk without a key"))  # dead-lettered once, by member 0
    produce(settings, messages)

    summaries: dict[int, object] = {}

    def run(member: int) -> None:
        summaries[member] = Assembler(settings, group_id="shards", member=member, members=2, **FAST).run(
            idle_exit=1.5, serve_metrics=False
        )

    threads = [threading.Thread(target=run, args=(m,)) for m in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for syn in sessions:
        assert summaries[owner(syn.session)].closed == {syn.session: "ready"}
    assert summaries[0].dead_letters + summaries[1].dead_letters == 1 and summaries[0].dead_letters == 1
    readies = [m for m in _read_topic(settings, settings.topic_datasets) if isinstance(m, DatasetReady)]
    assert sorted(r.session for r in readies) == sorted([first, second])

    clean = settings.model_copy(update={"s3_bucket": settings.s3_bucket + "-alone"})
    ObjectStore(clean).ensure_bucket()
    Assembler(clean, group_id="alone", **FAST).run(idle_exit=1.5, serve_metrics=False)
    for syn in sessions:
        sharded, alone = _session_objects(settings, syn.session), _session_objects(clean, syn.session)
        ready_record = layout.dataset_ready_key(syn.session)  # holds the DatasetReady's own wall time
        assert sorted(sharded) == sorted(alone)
        assert all(sharded[k] == alone[k] for k in alone if k != ready_record)


def test_session_outcomes_failed_inactive_aborted_and_replayed(settings):
    few = SyntheticSession(
        f"few-{uuid.uuid4().hex[:4]}", cameras=("cam0",), frames=6, no_person={("cam0", 1), ("cam0", 2), ("cam0", 4)}
    )
    idle = SyntheticSession(f"idle-{uuid.uuid4().hex[:4]}", cameras=("cam0",), frames=6)
    gone = SyntheticSession(f"gone-{uuid.uuid4().hex[:4]}", cameras=("cam0",), frames=9)
    produce(
        settings,
        [
            few.event_message(settings, few.start()),
            idle.event_message(settings, idle.start()),
            gone.event_message(settings, gone.start()),
        ]
        + few.stream_messages(settings)
        + idle.stream_messages(settings)
        + gone.stream_messages(settings)
        + [few.event_message(settings, few.end())],
    )

    def aborted_after_flush():
        # The aborted session had shards written before its abort; they must be removed.
        if ObjectStore(settings).list(layout.index_prefix(gone.session)):
            produce(settings, [gone.event_message(settings, gone.end("abort"))])
            return True

    asm = Assembler(settings, group_id="outcomes", inactivity_timeout_s=4.0, **FAST)
    stop = threading.Event()
    worker = threading.Thread(target=asm.run, kwargs=dict(stop_event=stop, serve_metrics=False))
    worker.start()
    try:
        wait_until(aborted_after_flush, 30, what="the aborted session's first shard")
        wait_until(lambda: len(asm.summary.closed) == 3, 30, what="three sessions closed")
    finally:
        stop.set()
        worker.join(30)
    assert asm.summary.closed == {few.session: "failed", idle.session: "ready", gone.session: "aborted"}

    m = read_manifest(settings, few.session)
    assert m["status"] == "failed" and m["samples"] == 3
    assert m["reason"] == "only 3 usable frames; at least 5 are needed (rejected: 3 no person)"
    m = read_manifest(settings, idle.session)
    assert m["status"] == "ready" and m["closed_by"] == "inactivity" and m["samples"] == 6
    m = read_manifest(settings, gone.session)
    assert m["status"] == "aborted" and m["samples"] == 0
    assert ObjectStore(settings).list(layout.session_prefix(gone.session)) == [layout.manifest_key(gone.session)]

    ready = {m.session: m for m in _read_topic(settings, settings.topic_datasets)}
    assert set(ready) == {few.session, idle.session}
    assert ready[few.session].status == "failed" and "only 3 usable frames" in ready[few.session].reason
    assert ready[idle.session].status == "ready"

    # Replaying everything from the start (a new group) adds nothing: finished sessions are skipped.
    objects = {k: ObjectStore(settings).get(k) for k in ObjectStore(settings).list("")}
    again = Assembler(settings, group_id="outcomes-replay", **FAST).run(idle_exit=1.5, serve_metrics=False)
    assert again.closed == {} and again.samples == 0 and again.dead_letters == 0
    assert {k: ObjectStore(settings).get(k) for k in ObjectStore(settings).list("")} == objects
    assert len(_read_topic(settings, settings.topic_datasets)) == 2


def test_assemble_command_runs_a_session_and_serves_metrics(settings):
    import urllib.request

    from click.testing import CliRunner

    from assembler.cli import assemble
    from infra.stack import free_port

    port = free_port()
    settings = settings.model_copy(update={"metrics_port": port})
    syn = SyntheticSession(f"cli-{uuid.uuid4().hex[:4]}", cameras=("cam0",), frames=6)
    produce(
        settings,
        [syn.event_message(settings, syn.start())]
        + syn.stream_messages(settings)
        + [syn.event_message(settings, syn.end())],
    )
    result = CliRunner().invoke(
        assemble,
        [
            "--group",
            "cli",
            "--shard-size",
            "4",
            "--min-samples",
            "3",
            "--end-grace",
            "0.5",
            "--idle-exit",
            "1",
            "--resolution",
            "32",
            "-q",
        ],
        obj={"settings": settings},
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert syn.session in result.output and "ready" in result.output
    assert "6 samples in 2 shards" in result.output
    assert read_manifest(settings, syn.session)["resolution"] == 32
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    for name in (
        'booth_assembler_samples_total{camera="cam0"}',
        "booth_assembler_bytes_total",
        "booth_dataset_ready_seconds_bucket",
    ):
        assert name in text
    bad = CliRunner().invoke(assemble, ["--shard-size", "0"], obj={"settings": settings})
    assert bad.exit_code != 0 and "--shard-size" in bad.output


def test_messages_before_their_start_wait_for_it_and_commits_follow_persistence(settings):
    """The core without a consumer: records read before their session's start are adopted, and
    the committable offsets never pass a message whose sample is not yet written."""
    from collections import namedtuple

    Record = namedtuple("Record", "topic partition offset key value")
    syn = SyntheticSession(f"o-{uuid.uuid4().hex[:4]}", cameras=("cam0",), frames=6)
    stream = syn.stream_messages(settings)  # offsets per topic: offset == seq
    frames = [Record(t, 0, i, k, v) for i, (t, k, v) in enumerate(m for m in stream if m[0] == settings.topic_frames)]
    poses = [Record(t, 0, i, k, v) for i, (t, k, v) in enumerate(m for m in stream if m[0] == settings.topic_smoothed)]
    clock = [100.0]
    asm = Assembler(settings, clock=lambda: clock[0], **FAST)

    asm.process_batch(frames + poses[:5])
    assert syn.session in asm.orphans and not ObjectStore(settings).list(layout.session_prefix(syn.session))
    start = Record(settings.topic_sessions, 0, 0, syn.session.encode(), syn.start().encode())
    asm.process_batch([start])
    assert syn.session not in asm.orphans
    assert ObjectStore(settings).list(layout.index_prefix(syn.session)) == [
        layout.shard_index_key(syn.session, "cam0", 0)
    ]
    # Seq 4 and 5 sit in the open shard 1: frames commit up to offset 4, poses up to 4 (seq 4's pose).
    assert asm.committable() == {
        (settings.topic_frames, 0): 4,
        (settings.topic_smoothed, 0): 4,
        (settings.topic_sessions, 0): 0,
    }
    asm.process_batch(poses[5:])
    clock[0] += 0.5
    end = Record(settings.topic_sessions, 0, 1, syn.session.encode(), syn.end().encode())
    asm.process_batch([end])
    assert asm.tick() == []  # within the end grace
    clock[0] += FAST["end_grace_s"]
    assert asm.tick() == [syn.session]
    assert asm.committable() == {
        (settings.topic_frames, 0): 6,
        (settings.topic_smoothed, 0): 6,
        (settings.topic_sessions, 0): 2,
    }
    assert read_manifest(settings, syn.session)["samples"] == 6

    stranger = SyntheticSession("nobody-home", cameras=("cam0",))
    asm.process_batch(
        [Record(settings.topic_frames, 1, 0, frame_key("nobody-home", "cam0"), stranger.frame("cam0", 0).encode())]
    )
    assert asm.committable()[(settings.topic_frames, 1)] == 0
    clock[0] += FAST["unknown_session_grace_s"]
    asm.tick()
    assert asm.committable()[(settings.topic_frames, 1)] == 1 and asm.summary.dead_letters == 1
    asm.producer.flush()
    asm.producer.close()


def test_an_ended_session_waits_for_the_poses_of_its_cameras_last_frames_or_gives_up_counted(settings):
    """With the cameras' end marker (camera-end, last_seq), a session closes when the poses of
    those frames are in, however long after the end event; after --end-timeout without messages
    it gives up, and the manifest counts what is missing by cause. Without a marker the end grace
    closes it, as before."""
    from collections import namedtuple

    Record = namedtuple("Record", "topic partition offset key value")
    offsets: dict[str, int] = {}

    def records(syn, messages):
        out = []
        for topic, key, value in messages:
            offsets[topic] = offsets.get(topic, -1) + 1
            out.append(Record(topic, 0, offsets[topic], key, value))
        return out

    def event(syn, kind, **fields):
        return syn.event_message(settings, SessionEvent(session=syn.session, kind=kind, wall_time=1.0, **fields))

    late, lost, old = (SyntheticSession(f"{n}-{uuid.uuid4().hex[:4]}", cameras=("cam0",), frames=12) for n in "abc")
    clock = [0.0]
    asm = Assembler(settings, clock=lambda: clock[0], **{**FAST, "end_grace_s": 3.0, "end_timeout_s": 60.0})
    frames = {
        s.session: [m for m in s.stream_messages(settings) if m[0] == settings.topic_frames] for s in (late, lost)
    }
    poses = {
        s.session: [m for m in s.stream_messages(settings) if m[0] == settings.topic_smoothed] for s in (late, lost)
    }
    for syn, last in ((late, 11), (lost, 13)):  # `lost`'s camera says 13: frames 12 and 13 never come
        asm.process_batch(
            records(
                syn,
                [syn.event_message(settings, syn.start())]
                + frames[syn.session]
                + poses[syn.session][:6]
                + [event(syn, "camera-end", cameras=["cam0"], last_seq={"cam0": last}), event(syn, "end")],
            )
        )
    asm.process_batch(records(old, [old.event_message(settings, old.start())] + old.stream_messages(settings)))
    asm.process_batch(records(old, [event(old, "end")]))  # an end without the cameras' marker

    clock[0] = 10.0  # the end grace is long over: only the session without a marker closes
    assert asm.tick() == [old.session]
    assert read_manifest(settings, old.session)["samples"] == 12 and "last_seq" not in read_manifest(
        settings, old.session
    )
    clock[0] = 50.0  # the pose stage catches up (a worker restarted after the end)
    asm.process_batch(records(late, poses[late.session][6:]) + records(lost, poses[lost.session][6:8]))
    assert asm.tick() == [late.session]  # its last pose is in: closed at once
    m = read_manifest(settings, late.session)
    assert (m["status"], m["closed_by"], m["samples"], m["rejected"]) == ("ready", "end", 12, {})
    assert m["last_seq"] == {"cam0": 11}

    clock[0] = 50.0 + 59.0
    assert asm.tick() == []  # still within the end timeout of its last message
    clock[0] = 50.0 + 60.0
    assert asm.tick() == [lost.session]
    m = read_manifest(settings, lost.session)
    assert (m["status"], m["closed_by"], m["samples"]) == ("ready", "end-timeout", 8)
    assert m["rejected"] == {"no_pose": 4, "not_received": 2} and m["frames"] == 14
    assert m["gave_up_waiting"] == {
        "cam0": {"last_seq": 13, "frames_to": 11, "poses_to": 7, "no_pose": 4, "not_received": 2}
    }
    assert "gave up waiting for the last poses after 60 s" in m["reason"] and "2 never received" in m["reason"]
    ready = {r.session: r for r in _read_topic(settings, settings.topic_datasets) if isinstance(r, DatasetReady)}
    assert ready[lost.session].status == "ready" and ready[lost.session].reason == m["reason"]
    asm.producer.flush()
    asm.producer.close()
