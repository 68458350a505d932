"""Trainers serve one queue: 3 trainer processes, 7 sessions arriving together, one trainer killed
mid-job. Every session gets its video once, the killed one's session is taken over from its
checkpoint, and no trainer sits idle while a session waits (from the trainers' own words on the
claims topic)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid

import pytest
from test_trainer_failures import committed_all, copy_session, publish, ready

from infra.objectstore import ObjectStore
from schemas import Claim, Rendition, layout
from trainer.claims import Ledger

from helpers import read_topic, wait_until, worker_env

SESSIONS = 7
TRAINERS = 3
SLACK_S = 3.0  # a trainer's poll, claim and log round trip on a loaded 2-core machine


@pytest.fixture
def dataset(dataset):
    from infra.kafka import ensure_topics

    settings, syn = dataset
    settings = settings.model_copy(update={"topic_datasets": settings.topic_datasets + ".queue"})
    ensure_topics(settings)
    return settings, syn


def claims(settings) -> list[Claim]:
    return [m for m in read_topic(settings, settings.topic_claims, idle_s=0.5) if isinstance(m, Claim)]


def holdings(words: list[Claim], lease_s: float) -> list[tuple[str, str, float, float | None]]:
    """(trainer, session, start, end) of each holding, by the ledger's own rules; end None: still held."""
    ledger, out, open_ = Ledger(), [], {}
    for word in words:
        before = ledger.held.get(word.work)
        ledger.apply(word)
        after = ledger.held.get(word.work)
        if before is not None and (after is None or after.trainer != before.trainer):
            trainer, session, start = open_.pop(word.work)
            out.append((trainer, session, start, word.wall_time))
        if after is not None and (before is None or after.trainer != before.trainer):
            open_[word.work] = (after.trainer, word.session, after.since)
    out += [(t, s, start, None) for t, s, start in open_.values()]
    return out


@pytest.mark.slow
def test_three_trainers_serve_seven_sessions_and_one_trainer_dies(dataset, tmp_path):
    settings, syn = dataset
    store = ObjectStore(settings)
    sessions = [f"q{i}-{uuid.uuid4().hex[:6]}" for i in range(SESSIONS)]
    for session in sessions:
        copy_session(store, syn.session, session)
    command = [sys.executable, "-m", "booth.cli", "-v", "train", "--budget", "6", "--checkpoint-every", "1"]
    command += ["--reference", "dance", "--crop-size", "32", "--first-rendition", "0", "--rendition-points", "1"]
    command += ["--idle-exit", "20", "-q"]
    logs = [tmp_path / f"trainer-{i}.log" for i in range(TRAINERS)]
    procs = [
        subprocess.Popen(command, env=worker_env(settings), stdout=open(log, "wb"), stderr=subprocess.STDOUT)
        for log in logs
    ]
    try:
        wait_until(
            lambda: all("serving" in log.read_text() for log in logs) or any(p.poll() is not None for p in procs),
            timeout=120,
            what="three trainers serving",
        )
        assert all(p.poll() is None for p in procs), [log.read_text()[-2000:] for log in logs]
        arrived = time.time()
        publish(settings, *(ready(s) for s in sessions))  # all at once, in this order, on one partition

        # Kill a trainer once its session has a checkpoint to resume from.
        def victim():
            for trainer, session, _start, end in holdings(claims(settings), settings.trainer_lease_s):
                saved = store.list(layout.checkpoints_prefix(session))
                if end is None and any(k.rsplit("/", 1)[-1].startswith("ckpt-") for k in saved):
                    return trainer, session
            return None

        trainer, killed_session = wait_until(victim, timeout=180, what="a trainer with a checkpoint")
        pid = int(trainer.rsplit("-", 2)[1])
        killed = next(p for p in procs if p.pid == pid)
        killed.send_signal(signal.SIGKILL)
        killed.wait(10)
        killed_at = time.time()
        survivors = [p for p in procs if p is not killed]
        for p in survivors:
            assert p.wait(400) == 0, [log.read_text()[-3000:] for log in logs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)

    # Every session has its video, once.
    finals = [
        m.session for m in read_topic(settings, settings.topic_renditions) if isinstance(m, Rendition) and m.final
    ]
    assert sorted(finals) == sorted(sessions)
    for session in sessions:
        metrics = json.loads(store.get(layout.result_key(session, "metrics.json")))
        if session == killed_session:
            assert metrics["start_step"] > 0  # taken over from the dead trainer's checkpoint
        else:
            assert metrics["start_step"] == 0  # trained from its start by one trainer
    assert committed_all(settings)

    # The trainers' own words: who held what, when.
    words = claims(settings)
    held = holdings(words, settings.trainer_lease_s)
    killed_trainer = trainer
    assert {s for _, s, _, _ in held} == set(sessions)
    takeovers = [h for h in held if h[1] == killed_session]
    assert [h[0] == killed_trainer for h in takeovers] == [True, False]
    # Sessions in arrival order: each was first taken in the order the sessions arrived.
    first = {s: min(start for _, ss, start, _ in held if ss == s) for s in sessions}
    assert sorted(sessions, key=first.__getitem__) == sessions

    # No trainer idle while a session waits. A session waits from its arrival (and the killed one's
    # again from the end of the dead trainer's lease) until a trainer takes it; a live trainer is
    # idle when it holds nothing.
    lease_end = max(w.lease_until for w in words if w.trainer == killed_trainer) + settings.trainer_lease_s / 6
    end = max(e for _, _, _, e in held if e is not None)
    waits = [(arrived, first[s]) for s in sessions]
    waits += [(lease_end, start) for t, s, start, _ in held if s == killed_session and t != killed_trainer]
    trainers = {t for t, _, _, _ in held}
    assert len(trainers) == TRAINERS

    def idle(t: str, at: float) -> bool:
        if t == killed_trainer and at >= killed_at:
            return False  # dead, not idle
        return not any(start <= at < (e if e is not None else end) for tt, _, start, e in held if tt == t)

    longest = current = 0.0
    step = 0.1
    at = arrived
    while at < end:
        waiting = any(a <= at < b for a, b in waits)
        current = current + step if waiting and any(idle(t, at) for t in trainers) else 0.0
        longest = max(longest, current)
        at += step
    print(f"longest stretch of a trainer idle while a session waited: {longest:.1f} s")
    assert longest <= SLACK_S, f"a trainer sat idle for {longest:.1f} s while a session waited"


def test_the_queue_starts_over_when_the_broker_lost_its_log(settings):
    """A broker that lost its log (the embedded broker restarted) recreates the datasets and claims
    topics empty: the queue's read positions and work ids point into the old logs. It notices the
    positions beyond the new ends, counts it and serves the new log's sessions from their start."""
    from prometheus_client import REGISTRY

    from infra import kafka
    from infra.kafka import ensure_topics
    from trainer.claims import SessionQueue

    def resets() -> float:
        labels = {"group": settings.group("trainer"), "topic": settings.topic_datasets}
        return REGISTRY.get_sample_value("booth_consumer_log_resets_total", labels) or 0.0

    publish(settings, *(ready(f"old-{i}") for i in range(3)))
    producer = kafka.producer(settings)
    queue = SessionQueue(settings, "t-1", producer)

    def waiting() -> list[str]:
        queue.poll(200)
        return [w.session for w in queue.waiting(time.time())]

    try:
        wait_until(lambda: len(waiting()) == 3, 30, what="the old log's sessions")
        assert queue.claim(queue.waiting(time.time())[0])
        before = resets()
        ensure_topics(settings, recreate=True)  # what the broker has now: empty topics
        publish(settings, ready("new-0"))
        wait_until(lambda: waiting() == ["new-0"], 30, what="the queue to hold the new log's session only")
        assert resets() - before == 1
        assert queue.claim(queue.waiting(time.time())[0])  # claimable: the old ledger is gone
    finally:
        queue.close()
        producer.close()
