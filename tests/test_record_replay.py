"""Record topics to MCAP and replay them: identical records, honest pacing, renamed sessions."""

from __future__ import annotations

import os
import time
import uuid

import pytest
from click.testing import CliRunner

from infra import kafka
from schemas import DeadLetter, Frame, SessionEvent, decode
from schemas.ids import frame_key
from tools.commands import record as record_cmd
from tools.commands import replay as replay_cmd
from tools.replay import (
    KafkaRecord,
    RecordingError,
    ReplayError,
    iter_records,
    read_info,
    record,
    replay,
    rewrite_value,
)
from tools.replay.layout import decode_record, encode_record

IDLE = 1.0  # seconds without a record after which the recorder stops


def _fresh(settings):
    """The same stack with new, empty topics (a replay target)."""
    suffix = uuid.uuid4().hex[:8]
    names = {
        f"topic_{t}": f"r.{suffix}.{t}"
        for t in ("frames", "poses", "smoothed", "sessions", "datasets", "training", "renditions", "deadletter")
    }
    target = settings.model_copy(update=names)
    kafka.ensure_topics(target)
    return target


def _frame(session: str, camera: str, seq: int) -> Frame:
    return Frame(
        session=session,
        camera=camera,
        seq=seq,
        capture_ns=seq * 33_000_000,
        wall_time=time.time(),
        width=64,
        height=48,
        image=b"\xff\xd8" + os.urandom(3000) + b"\x00\xff\xd9",
    )


def _read(settings, topics: list[str], expected: int, timeout: float = 20.0) -> dict[tuple[str, int], list]:
    """Every record of ``topics`` by (topic, partition), in offset order: waits for ``expected``,
    then a little longer so that extra records would be seen too."""
    from kafka import TopicPartition

    c = kafka.consumer(settings, group_id=None)
    parts = [TopicPartition(t, p) for t in topics for p in sorted(c.partitions_for_topic(t))]
    c.assign(parts)
    c.seek_to_beginning(*parts)
    got: dict[tuple[str, int], list] = {}
    deadline, quiet_until = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        for records in c.poll(timeout_ms=200).values():
            for r in records:
                got.setdefault((r.topic, r.partition), []).append(r)
        if sum(map(len, got.values())) >= expected:
            quiet_until = quiet_until or time.monotonic() + 0.5
            if time.monotonic() > quiet_until:
                break
    c.close()
    return got


def _view(records) -> list[tuple]:
    return [(r.key, r.value, [tuple(h) for h in (r.headers or [])]) for r in records]


def test_layout_round_trips_odd_records_and_rejects_other_files(tmp_path):
    odd = KafkaRecord(
        topic="t",
        partition=3,
        offset=2**40,
        timestamp_ms=1_700_000_000_123,
        key=None,
        value=None,
        headers=(("empty", b""), ("none", None), ("bin", bytes(range(256)))),
        timestamp_type=1,
    )
    assert decode_record("t", encode_record(odd)) == odd
    with pytest.raises(RecordingError, match="shorter than its envelope"):
        decode_record("t", b"\x00")
    junk = tmp_path / "junk.mcap"
    junk.write_bytes(b"definitely not mcap")
    with pytest.raises(RecordingError, match="not a readable MCAP recording"):
        read_info(junk)


def test_record_then_replay_gives_identical_records(settings, tmp_path):
    p = kafka.producer(settings)
    sent = []
    for i in range(12):  # two sessions' frames spread explicitly over both partitions
        f = _frame("s1" if i % 3 else "s2", f"cam{i % 2}", i)
        headers = [("trace", f"t-{i}".encode()), ("bin", bytes([0, 255, i]))]
        sent.append(
            p.send(
                settings.topic_frames,
                key=frame_key(f.session, f.camera),
                value=f.encode(),
                headers=headers,
                partition=i % 2,
            )
        )
    sent.append(p.send(settings.topic_frames, key=None, value=_frame("s1", "cam0", 99).encode(), partition=1))
    for kind in ("start", "end"):
        sent.append(
            p.send(
                settings.topic_sessions,
                key=b"s1",
                headers=[("origin", b"test")],
                value=SessionEvent(session="s1", kind=kind, wall_time=time.time(), cameras=["cam0"]).encode(),
            )
        )
    p.flush()
    p.close()
    assert all(s.is_done and s.succeeded() for s in sent)
    topics = [settings.topic_frames, settings.topic_sessions]
    original = _read(settings, topics, 15)

    path = tmp_path / "all.mcap"
    summary = record(settings, path, topics, idle_s=IDLE)
    assert summary.stopped_by == "idle"
    assert summary.counts == {settings.topic_frames: 13, settings.topic_sessions: 2}
    assert summary.sessions == ["s1", "s2"]
    info = read_info(path)
    assert info.partitions == {settings.topic_frames: 2, settings.topic_sessions: 1} and info.total == 15
    recorded = list(iter_records(path))
    by_offset = {(r.topic, r.partition, r.offset): r for _, r in recorded}
    for (topic, partition), records in original.items():
        for r in records:  # log_time is the Kafka timestamp and the envelope keeps offsets
            kept = by_offset[(topic, partition, r.offset)]
            assert (kept.key, kept.value, kept.timestamp_ms) == (r.key, r.value, r.timestamp)
    assert all(log_time == r.timestamp_ms * 1_000_000 for log_time, r in recorded)

    target = _fresh(settings)
    result = replay(
        target,
        path,
        speed=0,
        keep_timestamps=True,
        topic_map={settings.topic_frames: target.topic_frames, settings.topic_sessions: target.topic_sessions},
    )
    assert result.sent == {target.topic_frames: 13, target.topic_sessions: 2}
    assert result.same_partition == 15 and result.by_key == 0
    from prometheus_client import REGISTRY

    assert REGISTRY.get_sample_value("booth_replay_messages_total", {"topic": target.topic_frames}) == 13

    copied = _read(target, [target.topic_frames, target.topic_sessions], 15)
    rename = {settings.topic_frames: target.topic_frames, settings.topic_sessions: target.topic_sessions}
    assert {(rename[t], p) for t, p in original} == set(copied)
    for (topic, partition), records in original.items():
        replayed = copied[(rename[topic], partition)]
        assert _view(replayed) == _view(records)  # key, value, headers, partition and order per partition
        assert [r.timestamp for r in replayed] == [r.timestamp for r in records]

    # Into single-partition topics: partition 1 does not exist there, so the key decides.
    narrow = replay(
        target,
        path,
        speed=0,
        topic_map={settings.topic_frames: target.topic_training, settings.topic_sessions: target.topic_renditions},
    )
    assert (narrow.same_partition, narrow.by_key) == (2 + 6, 7)  # frames recorded in partition 0 keep it
    with pytest.raises(ReplayError, match="no-such-topic do not exist"):
        replay(target, path, speed=0, topic_map={settings.topic_frames: "no-such-topic"})


def test_replay_follows_the_recorded_pace_times_speed(settings, tmp_path):
    start_ms = int(time.time() * 1000) - 5000
    p = kafka.producer(settings)
    for i in range(11):  # one second of recorded time, stamped by the producer
        p.send(
            settings.topic_sessions,
            key=b"pace",
            timestamp_ms=start_ms + 100 * i,
            value=SessionEvent(session="pace", kind="start", wall_time=time.time(), note=str(i)).encode(),
        )
    p.flush()
    p.close()
    path = tmp_path / "pace.mcap"
    assert record(settings, path, [settings.topic_sessions], idle_s=IDLE).total == 11
    assert read_info(path).end_ns - read_info(path).start_ns == 1_000_000_000

    target = _fresh(settings)
    fast = replay(target, path, speed=4, topic_map={settings.topic_sessions: target.topic_sessions})
    assert fast.recorded_span_s == pytest.approx(1.0)
    assert 0.15 <= fast.elapsed_s <= 0.6, f"1 s at speed 4 took {fast.elapsed_s:.2f} s"
    asap = replay(target, path, speed=0, topic_map={settings.topic_sessions: target.topic_sessions})
    assert asap.elapsed_s < fast.elapsed_s
    assert len(_read(target, [target.topic_sessions], 22)[(target.topic_sessions, 0)]) == 22


def test_as_session_renames_keys_and_messages_through_the_cli(settings, tmp_path):
    frames = [_frame("bad-1", "cam0", i) for i in range(3)]
    p = kafka.producer(settings)
    for f in frames:
        p.send(settings.topic_frames, key=b"bad-1/cam0", value=f.encode(), headers=[("h", b"1")])
    p.send(settings.topic_frames, key=b"bad-1/cam0", value=b"garbage the pose stage choked on")
    p.send(settings.topic_frames, key=b"other/cam0", value=_frame("other", "cam0", 0).encode())
    p.send(
        settings.topic_sessions,
        key=b"bad-1",
        value=SessionEvent(session="bad-1", kind="start", wall_time=time.time(), cameras=["cam0"]).encode(),
    )
    p.send(
        settings.topic_deadletter,
        key=None,
        value=DeadLetter.wrap(
            stage="pose",
            reason="boom",
            topic=settings.topic_frames,
            value=frames[0].encode(),
            key=b"bad-1/cam0",
            wall_time=time.time(),
        ).encode(),
    )
    p.flush()
    p.close()
    runner = CliRunner()
    obj = {"settings": settings}
    topics = [settings.topic_frames, settings.topic_sessions, settings.topic_deadletter]

    both = tmp_path / "both.mcap"
    done = runner.invoke(record_cmd, [*topics, "-o", str(both), "--idle", str(IDLE), "-q"], obj=obj)
    assert done.exit_code == 0, done.output
    with pytest.raises(ReplayError, match="2 sessions .*bad-1.*other"):
        replay(settings, both, speed=0, as_session="new-1")

    only_other = replay(
        settings, both, speed=0, session="other", topic_map={settings.topic_frames: settings.topic_poses}
    )
    assert only_other.sent == {settings.topic_poses: 1} and only_other.skipped == 6

    one = tmp_path / "one.mcap"
    done = runner.invoke(
        record_cmd, [*topics, "-o", str(one), "--session", "bad-1", "--idle", str(IDLE), "-q"], obj=obj
    )
    assert done.exit_code == 0, done.output
    again = runner.invoke(record_cmd, [*topics, "-o", str(one), "--idle", str(IDLE)], obj=obj)
    assert again.exit_code != 0 and "exists" in again.output  # a recording is never overwritten by accident
    assert read_info(one).counts == {settings.topic_frames: 4, settings.topic_sessions: 1, settings.topic_deadletter: 1}

    target = _fresh(settings)
    mapping = [
        f"--topic-map={getattr(settings, n)}={getattr(target, n)}"
        for n in ("topic_frames", "topic_sessions", "topic_deadletter")
    ]
    done = runner.invoke(
        replay_cmd, [str(one), "--speed", "0", "--as-session", "new-1", "--no-metrics", "-q", *mapping], obj=obj
    )
    assert done.exit_code == 0, done.output
    assert "moved to new-1" in done.output

    got = _read(target, [target.topic_frames, target.topic_sessions, target.topic_deadletter], 6)
    replayed_frames = [r for (t, _), rs in got.items() if t == target.topic_frames for r in rs]
    assert {r.key for r in replayed_frames} == {b"new-1/cam0"}
    decoded = [decode(r.value) for r in replayed_frames if r.value.startswith(b"MB")]
    assert [(m.session, m.seq, m.image) for m in decoded] == [("new-1", f.seq, f.image) for f in frames]
    assert [r.value for r in replayed_frames if not r.value.startswith(b"MB")] == [b"garbage the pose stage choked on"]
    assert all(r.headers == [("h", b"1")] for r in replayed_frames if r.value.startswith(b"MB"))
    (event,) = got[(target.topic_sessions, 0)]
    assert event.key == b"new-1" and decode(event.value).session == "new-1"
    (dead,) = got[(target.topic_deadletter, 0)]
    letter = decode(dead.value)
    assert letter.key == "new-1/cam0" and decode(letter.original).session == "new-1"
    # The dead letter kept the frame without its pixels; its size is the renamed frame's.
    assert letter.truncated and letter.original_size == len(frames[0].model_copy(update={"session": "new-1"}).encode())

    bad = runner.invoke(replay_cmd, [str(one), "--as-session", "no/slashes", "--no-metrics"], obj=obj)
    assert bad.exit_code != 0 and "--as-session 'no/slashes' has a forbidden character '/'" in bad.output
    missing = runner.invoke(replay_cmd, [str(one), "--topic-map", "nope=x", "--no-metrics"], obj=obj)
    assert missing.exit_code != 0 and "names nope, not in the recording" in missing.output


def test_rewrite_value_validates_and_leaves_other_sessions_alone():
    frame = _frame("a1", "cam0", 1)
    moved = decode(rewrite_value(frame.encode(), "a1", "b2"))
    assert moved.session == "b2" and moved.image == frame.image and moved.camera == "cam0"
    other = _frame("zz", "cam0", 2).encode()
    assert rewrite_value(other, "a1", "b2") == other
    assert rewrite_value(b"not an envelope", "a1", "b2") is None
