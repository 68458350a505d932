"""Kills at the edges of a session, on real processes: the inference process and its replacement
killed in a row, the worker killed just before the cameras stop and started again only after the
session's end. Every acknowledged frame must end as one sample, a counted rejection, or a dead
letter with its reason, and the worker's committed offsets must move past every frame."""

from __future__ import annotations

import os
import signal
import threading
import time

import cv2
import pytest

from infra import kafka
from schemas import DeadLetter, decode

from helpers import KillNewChildren, TopicReader, children_running, running, start_worker, stop_worker, wait_until


def _committed(settings, group: str, topic: str, partition: int) -> int:
    """The group's committed offset of one partition (-1: none), asked without joining the group."""
    from kafka.structs import TopicPartition

    consumer = kafka.consumer(settings, group_id=group)
    try:
        offset = consumer.committed(TopicPartition(topic, partition))
    finally:
        consumer.close(autocommit=False)
    return -1 if offset is None else offset


@pytest.mark.slow
def test_kills_at_the_edges_of_a_session_lose_no_frame(settings, shared_dir, tmp_path):
    from assembler.consumer import Assembler
    from dataset import read_manifest
    from dataset.reader import iter_session_samples
    from producers.camera import run_cameras
    from producers.session import publish
    from vision.pose.synthetic import moving_photo_clip

    settings = settings.model_copy(update={"kafka_session_timeout_ms": 3000, "kafka_heartbeat_interval_ms": 500})
    session, total = "edges", 48
    photo = cv2.cvtColor(cv2.imread(str(shared_dir / "data/images/squat.png")), cv2.COLOR_BGR2RGB)
    clip = [rgb for rgb, _ in moving_photo_clip(photo, n_frames=total, size=(320, 240), seed=3)]
    publish(settings, session, "start", ["cam0"])
    assembler = Assembler(
        settings,
        group_id=settings.group("assembler"),
        shard_size=8,
        resolution=64,
        end_grace_s=1.0,
        end_timeout_s=120.0,
        min_samples=10,
        commit_interval_s=0.5,
        quiet=True,
    )
    stop_assembler = threading.Event()
    assembling = threading.Thread(target=assembler.run, kwargs=dict(stop_event=stop_assembler, serve_metrics=False))
    assembling.start()
    smoothed = TopicReader(settings, settings.topic_smoothed)
    logs = tmp_path / "w1.log", tmp_path / "w2.log"
    first = start_worker(settings, logs[0])
    second = None
    summary: dict = {}
    try:
        wait_until(
            lambda: running(first, logs[0]) and children_running(first.pid, "_child_main"),
            timeout=90,
            what="the worker's inference process",
        )

        def cameras():
            summary["run"] = run_cameras(settings, session, {"cam0": clip}, fps=12, size=(320, 240))

        capture = threading.Thread(target=cameras)
        capture.start()
        seen = lambda: {decode(r.value).seq for r in smoothed.poll()}  # noqa: E731
        wait_until(lambda: running(first, logs[0]) and len(seen()) >= 8, timeout=90, what="the first poses")
        # The inference process, then its replacement 50 ms after it starts.
        child = children_running(first.pid, "_child_main")
        killer = KillNewChildren(first.pid, child, 1)
        killer.start()
        for pid in child:
            os.kill(pid, signal.SIGKILL)
        killer.join(30)
        assert len(killer.killed) == 1, "the replacement inference process was not seen"
        wait_until(lambda: running(first, logs[0]) and len(seen()) >= 24, timeout=90, what="poses after the kills")
        # The worker dies about 1 s before the cameras stop; it comes back only after the session's end.
        wait_until(lambda: running(first, logs[0]) and len(seen()) >= total - 16, timeout=60, what="near the end")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        capture.join(60)
        outstanding = total - len(seen())  # a fast worker may have estimated every frame before the kill
        publish(settings, session, "end")
        time.sleep(4.0)  # well past the end grace: a timer would have closed the session by now
        if outstanding > 0:
            assert read_manifest(settings, session) is None, "the session closed before its last poses came"
        second = start_worker(settings, logs[1])
        manifest = wait_until(
            lambda: running(second, logs[1]) and read_manifest(settings, session), timeout=120, what="the dataset"
        )
        frames = TopicReader(settings, settings.topic_frames)
        letters = TopicReader(settings, settings.topic_deadletter)
        try:
            wait_until(lambda: len([r for r in frames.poll() if r.key == b"edges/cam0"]) >= total, 30, what="frames")
            mine = [r for r in frames.records if r.key == b"edges/cam0"]
            partition, end = mine[0].partition, mine[-1].offset + 1
            wait_until(
                lambda: _committed(settings, settings.group("processors"), settings.topic_frames, partition) >= end,
                timeout=30,
                what="the worker's commit past the last frame",
            )
            letters.poll()
            time.sleep(1)
            letters.poll()
        finally:
            frames.close()
            letters.close()
    finally:
        for worker in (first, second):
            if worker is not None:
                stop_worker(worker)
        smoothed.close()
        stop_assembler.set()
        assembling.join(30)

    run = summary["run"].cameras["cam0"]
    assert run.acknowledged == total and run.failed == 0
    seq_at = {r.offset: decode(r.value).seq for r in mine}
    dead = {}
    for r in letters.records:
        letter = decode(r.value)
        if isinstance(letter, DeadLetter) and letter.stage == "pose" and letter.source_topic == settings.topic_frames:
            if letter.partition == partition and letter.offset in seq_at:
                dead[seq_at[letter.offset]] = letter.reason
    samples = [s.seq for s in iter_session_samples(settings, session)]
    rejected = {r["seq"]: r["reason"] for r in manifest["rejected_frames"]}
    assert len(samples) == len(set(samples)), "a frame became two samples"
    assert manifest["status"] == "ready" and manifest["closed_by"] == "end" and manifest["last_seq"] == {"cam0": 47}
    # Every frame: one sample, or a rejection the manifest counts (a dead-lettered frame has no pose).
    assert set(samples) | set(rejected) == set(range(total)) and not set(samples) & set(rejected)
    assert set(dead) <= {seq for seq, why in rejected.items() if why == "no_pose"}
    assert all("inference process" in why for why in dead.values()), dead
    assert {seq for seq, why in rejected.items() if why == "no_pose"} <= set(dead), "a frame lost its pose silently"
    # The kills cost a few frames at most (dead-lettered while no process could start): not the session.
    assert len(samples) >= total // 2
    print(f"{len(samples)} samples, rejections {manifest['rejected']}, dead letters {dead}")


def restart(stack) -> None:
    """Start the stopped broker again on its port. A client reconnecting to a closed loopback port
    in the ephemeral range can connect to itself (TCP simultaneous open) and hold the port for a
    moment: the start is tried again until that connection is dropped."""
    from infra.stack import StackError

    for attempt in range(20):
        try:
            stack.up(prometheus=False)
            return
        except StackError:
            if attempt == 19:
                raise
            time.sleep(0.5)


@pytest.mark.slow
def test_sessions_after_a_broker_restart_are_complete_without_restarting_anything(shared_dir, tmp_path):
    """The embedded broker is killed and started again (empty: the in-memory engine) under a running
    worker and assembler. The worker's changelog offsets are then past the new changelog's end: it
    notices, says so, and reads the new log from its start; the assembler reads the recreated
    topics from their start too; so the next session is complete with no restart."""
    from prometheus_client import REGISTRY

    from assembler.consumer import Assembler
    from dataset import read_manifest
    from infra.stack import Stack, embedded_settings
    from producers.camera import run_cameras
    from producers.session import publish
    from vision.pose.synthetic import moving_photo_clip

    from helpers import kill_service

    settings = embedded_settings(tmp_path, kafka_session_timeout_ms=3000, kafka_heartbeat_interval_ms=500)
    photo = cv2.cvtColor(cv2.imread(str(shared_dir / "data/images/squat.png")), cv2.COLOR_BGR2RGB)
    clip = [rgb for rgb, _ in moving_photo_clip(photo, n_frames=16, size=(320, 240), seed=3)]
    group = settings.group("assembler")
    resets = lambda: sum(  # noqa: E731
        REGISTRY.get_sample_value("booth_consumer_log_resets_total", {"group": group, "topic": t}) or 0.0
        for t in (settings.topic_sessions, settings.topic_frames, settings.topic_smoothed)
    )
    stack = Stack(settings, state_dir=tmp_path)
    stack.up(prometheus=False)
    logs = [tmp_path / "worker1.log", tmp_path / "worker2.log"]
    workers = [start_worker(settings, logs[0], loglevel="info")]
    assembler = Assembler(
        settings, group_id=group, shard_size=8, resolution=64, end_grace_s=1.0, min_samples=5, quiet=True
    )
    stop = threading.Event()
    assembling = threading.Thread(target=assembler.run, kwargs=dict(stop_event=stop, serve_metrics=False))
    assembling.start()

    def session(name: str) -> dict:
        publish(settings, name, "start", ["cam0"])
        run_cameras(settings, name, {"cam0": clip}, fps=15, size=(320, 240))
        publish(settings, name, "end")
        return wait_until(
            lambda: running(workers[-1], logs[-1]) and assembling.is_alive() and read_manifest(settings, name),
            timeout=120,
            what=f"the dataset of {name}",
        )

    try:
        before = session("before-restart")
        # A worker that recovered its tables from the changelogs (and so knows their offsets)...
        workers[0].send_signal(signal.SIGKILL)
        workers[0].wait(10)
        workers.append(start_worker(settings, logs[1], loglevel="info"))
        wait_until(lambda: running(workers[1], logs[1]) and "Worker ready" in logs[1].read_text(), 90, what="ready")
        resets0 = resets()
        kill_service(stack, "kafka")  # ...then the broker forgets every message, offset and group
        restart(stack)
        # A rejoin after the broker forgot every group takes long on a loaded machine.
        wait_until(
            lambda: running(workers[1], logs[1]) and "lost its log" in logs[1].read_text(),
            timeout=150,
            what="the worker to notice its lost changelog",
        )
        # The assembler reads the new logs from their start by one of two paths, both losing
        # nothing: its own reset (counted; a broker that answers a fetch past the end with nothing,
        # as the embedded one does) or the client's (the group rejoined with no committed offsets,
        # or a broker that answers out of range, as Apache Kafka does). Which one wins is a race, so
        # the session after the restart is the check; the counter has its own test
        # (test_consume_loop).
        after = session("after-restart")
        assembler_resets = resets() - resets0
    finally:
        for worker in workers:
            stop_worker(worker)
        stop.set()
        assembling.join(30)
        stack.down()
    print({m["session"]: (m["samples"], m["rejected"]) for m in (before, after)}, "assembler resets:", assembler_resets)
    for manifest in (before, after):  # every frame a sample or a counted rejection (nobody found)
        assert manifest["status"] == "ready" and manifest["closed_by"] == "end" and manifest["frames"] == 16
        assert set(manifest["rejected"]) <= {"no_person"}
    assert after["samples"] == before["samples"] >= 8  # the same clip gives the same dataset
    assert "ConsistencyError" not in logs[1].read_text()


@pytest.mark.slow
def test_a_session_on_the_broker_with_s3_storage_loses_no_frame(shared_dir, tmp_path):
    """`booth stack up --storage s3`: the broker's fetches used to fail a second into a session
    (the S3 server listed an upload's temporary file; infra/nanio_serve.py) and the worker stalled
    with most frames unread. Now every frame of a session is a sample or a counted rejection."""
    from assembler.consumer import Assembler
    from dataset import read_manifest
    from infra.stack import Stack, embedded_settings
    from producers.camera import run_cameras
    from producers.session import publish
    from vision.pose.synthetic import moving_photo_clip

    settings = embedded_settings(tmp_path, kafka_session_timeout_ms=3000, kafka_heartbeat_interval_ms=500)
    photo = cv2.cvtColor(cv2.imread(str(shared_dir / "data/images/squat.png")), cv2.COLOR_BGR2RGB)
    clip = [rgb for rgb, _ in moving_photo_clip(photo, n_frames=48, size=(320, 240), seed=3)]
    stack = Stack(settings, state_dir=tmp_path, storage="s3")
    stack.up(prometheus=False)
    log = tmp_path / "worker.log"
    worker = start_worker(settings, log)
    assembler = Assembler(
        settings, group_id="s3-assembler", shard_size=8, resolution=64, end_grace_s=1.0, min_samples=5, quiet=True
    )
    stop = threading.Event()
    assembling = threading.Thread(target=assembler.run, kwargs=dict(stop_event=stop, serve_metrics=False))
    assembling.start()
    try:
        publish(settings, "on-s3", "start", ["cam0"])
        run = run_cameras(settings, "on-s3", {"cam0": clip}, fps=15, size=(320, 240)).cameras["cam0"]
        publish(settings, "on-s3", "end")
        manifest = wait_until(
            lambda: running(worker, log) and assembling.is_alive() and read_manifest(settings, "on-s3"),
            timeout=150,
            what="the dataset",
        )
    finally:
        stop_worker(worker)
        stop.set()
        assembling.join(30)
        stack.down()
    assert run.acknowledged == 48 and run.failed == 0
    assert manifest["status"] == "ready" and manifest["closed_by"] == "end" and manifest["frames"] == 48
    assert set(manifest["rejected"]) <= {"no_person"} and manifest["samples"] >= 40
    assert "ParseInt" not in (tmp_path / "logs" / "kafka.log").read_text()
