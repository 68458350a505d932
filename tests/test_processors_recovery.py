"""Table recovery reads the changelog to its true end, on the real embedded broker.

The smoother's state lives in a Faust table; a starting worker restores it from the changelog up to
the end offset the broker reports. These tests write the changelog the way a busy worker does (many
records in one batch) and check that the whole of it is restored.
"""

from __future__ import annotations

import json
import signal

import numpy as np
from kafka import KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.partitioner.default import murmur2

from infra import kafka
from processors.app import SmoothStage, TrackStage, tracking_params
from processors.estimate import PoseStage
from schemas import decode, frame_key
from vision.pose import load_estimator
from vision.smoothing import SmoothingParams

from helpers import TopicReader, clip_frames, produce_frames, running, start_worker, wait_until


def _batched(settings, topic: str, records: list[tuple[bytes, bytes]], partition: int) -> None:
    """Send records so that they travel in one produce batch (a long linger, one flush)."""
    p = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, linger_ms=2000, batch_size=1 << 20)
    for key, value in records:
        p.send(topic, key=key, value=value, partition=partition)
    p.flush()
    p.close()


def test_end_offsets_are_checked_against_a_fetch(settings):
    topic, empty = settings.topic_poses, settings.topic_smoothed
    _batched(settings, topic, [(b"k", b"a%d" % i) for i in range(5)], partition=0)
    _batched(settings, topic, [(b"k", b"b%d" % i) for i in range(3)], partition=0)
    _batched(settings, topic, [(b"k", b"c")], partition=1)
    ends = {(topic, 0): 1, (topic, 1): 1, (empty, 0): 0}  # "latest" as short as one record per batch
    assert kafka.fetched_end_offsets(settings, ends) == {(topic, 0): 8, (topic, 1): 1, (empty, 0): 0}
    c = kafka.consumer(settings, group_id=None)
    listed = c.end_offsets([TopicPartition(topic, 0), TopicPartition(topic, 1), TopicPartition(empty, 0)])
    c.close()
    # Whatever the broker lists, the checked ends are the record counts.
    checked = kafka.fetched_end_offsets(settings, {(tp.topic, tp.partition): e for tp, e in listed.items()})
    assert checked == {(topic, 0): 8, (topic, 1): 1, (empty, 0): 0}


def test_worker_restores_the_last_state_of_a_batched_changelog(settings, shared_dir, tmp_path):
    """The changelog holds the states after seqs 0..9 of one camera, written as one batch; a fresh
    worker must continue from the state after seq 9, exactly as an uninterrupted smoother would."""
    session, camera = "recover", "cam0"
    frames = clip_frames(shared_dir, session, camera, 13, seed=1, frame_clock=True)
    key = frame_key(session, camera)
    estimate = PoseStage(load_estimator("movenet"))
    track = TrackStage(tracking_params(settings, SmoothingParams()))
    stage, state, states, tracked = SmoothStage(SmoothingParams()), None, [], None
    for f in frames[:10]:
        tracked, pose = track(tracked, estimate(key, f.encode()))
        state, _ = stage(state, pose)
        states.append(state)
    assert states[-1]["last_seq"] == 9 and list(states[-1]["tracks"]) == ["1"]  # one person, track 1

    changelog = f"{settings.group('processors')}-smoother_state-changelog"
    admin = kafka.admin(settings)
    admin.create_topics([NewTopic(changelog, settings.partitions_streams, 1)])
    admin.close()
    # Table changelogs are co-partitioned with the agent's source topic (poses, keyed like frames).
    partition = (murmur2(key) & 0x7FFFFFFF) % settings.partitions_streams  # the clients' default partitioner
    table_key = json.dumps(f"{session}/{camera}").encode()
    _batched(settings, changelog, [(table_key, json.dumps(s).encode()) for s in states], partition)

    smoothed = TopicReader(settings, settings.topic_smoothed)
    worker = start_worker(settings, tmp_path / "w.log", loglevel="info")
    try:
        produce_frames(settings, [(key, f.encode()) for f in frames[10:]])
        wait_until(lambda: running(worker) and len(smoothed.poll()) >= 3, timeout=90, what="three smoothed poses")
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
    smoothed.close()
    poses = TopicReader(settings, settings.topic_poses)
    wait_until(lambda: len(poses.poll()) >= 3, timeout=20, what="the worker's poses")
    poses.close()

    got = {m.seq: m for m in map(decode, (r.value for r in smoothed.records))}
    assert sorted(got) == [10, 11, 12]
    by_seq = {m.seq: m for m in map(decode, (r.value for r in poses.records))}
    state = states[-1]
    for seq in (10, 11, 12):
        state, want = stage(state, by_seq[seq])
        assert bool(want.persons) == bool(got[seq].persons), seq
        if want.persons:
            np.testing.assert_allclose(
                np.array(got[seq].persons[0].keypoints),
                np.array(want.persons[0].keypoints),
                atol=1e-3,
                err_msg=f"seq {seq}",
            )
