"""A bad session never blocks the next: the trainer service on the real broker and S3 server, with
a corrupt shard, a missing reference, an unreadable base model, and the object store away mid-training;
and two trainers sharing the work, each session trained once."""

from __future__ import annotations

import json
import threading
import time
import uuid

import pytest

from assembler.synthetic import produce
from infra.objectstore import ObjectStore
from schemas import DatasetReady, DeadLetter, Rendition, TrainingProgress, layout
from trainer.service import TrainerConfig, TrainingService

from helpers import kill_service, read_topic, wait_until

FAST = dict(
    budget_s=3, checkpoint_every_s=1, progress_bar=False, progress_every_s=0.0, side_by_side=False, max_render_frames=4
)


@pytest.fixture
def dataset(dataset):
    """The shared fixture's session, with a datasets topic of this test's own: the assembler's
    DatasetReady for that session stays on the other one, so only what a test publishes is served."""
    from infra.kafka import ensure_topics

    settings, syn = dataset
    settings = settings.model_copy(update={"topic_datasets": settings.topic_datasets + ".own"})
    ensure_topics(settings)
    return settings, syn


def copy_session(store: ObjectStore, source: str, target: str) -> None:
    """Every object of an assembled session again under another session id (as a second visitor)."""
    for key in store.list(layout.session_prefix(source)):
        data = store.get(key)
        if key.endswith(".json"):
            data = data.replace(source.encode(), target.encode())
        store.put(key.replace(layout.session_prefix(source), layout.session_prefix(target)), data)


def ready(session: str, reference: str | None = "dance") -> DatasetReady:
    return DatasetReady(
        session=session, status="ready", samples=24, cameras=["cam0"], reference=reference, wall_time=time.time()
    )


def publish(settings, *datasets: DatasetReady) -> None:
    """DatasetReady events, in this order, on one partition: the bad one stands in front of the good."""
    from infra import kafka

    p = kafka.producer(settings)
    try:
        for d in datasets:
            p.send(settings.topic_datasets, key=d.session.encode(), value=d.encode(), partition=0)
        p.flush(timeout=30)
    finally:
        p.close()


def publish_each(settings, *datasets: DatasetReady) -> None:
    """DatasetReady events keyed by session: each on its session's partition, as the assembler sends them."""
    produce(settings, [(settings.topic_datasets, d.session.encode(), d.encode()) for d in datasets])


def run_until(settings, sessions: set[str], **service_options) -> TrainingService:
    """Run one trainer until every session in `sessions` has a Rendition or a failed progress."""
    service = TrainingService(settings, TrainerConfig(**FAST), retry_delay_s=1.0, **service_options)
    stop, errors = threading.Event(), []

    def consume() -> None:
        try:
            service.run(stop=stop)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            errors.append(exc)

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    try:
        wait_until(lambda: not errors and sessions <= finished(settings), timeout=180, what=f"sessions {sessions}")
    finally:
        stop.set()
        thread.join(60)
    assert not errors, errors
    return service


def finished(settings) -> set[str]:
    renditions = read_topic(settings, settings.topic_renditions, idle_s=0.3)
    done = {m.session for m in renditions if isinstance(m, Rendition) and m.final}
    failed = {
        m.session
        for m in read_topic(settings, settings.topic_training, idle_s=0.3)
        if isinstance(m, TrainingProgress) and m.phase == "failed"
    }
    return done | failed


def outcome(settings, session: str) -> tuple[list[Rendition], list[TrainingProgress], list[DeadLetter]]:
    renditions = [
        m
        for m in read_topic(settings, settings.topic_renditions)
        if isinstance(m, Rendition) and m.session == session and m.final
    ]
    failures = [
        m
        for m in read_topic(settings, settings.topic_training)
        if isinstance(m, TrainingProgress) and m.session == session and m.phase == "failed"
    ]
    letters = [
        m
        for m in read_topic(settings, settings.topic_deadletter)
        if isinstance(m, DeadLetter) and m.stage == "trainer" and session in m.reason
    ]
    return renditions, failures, letters


def committed_all(settings) -> bool:
    """Every DatasetReady's offset was committed: the group's committed offset is each partition's
    end (the end as a fetch reports it, which every broker gets right)."""
    from kafka import TopicPartition

    from infra import kafka

    consumer = kafka.consumer(settings, group_id=settings.group("trainer"))
    try:
        parts = [TopicPartition(settings.topic_datasets, p) for p in range(settings.partitions_datasets)]
        listed = consumer.end_offsets(parts)
        ends = kafka.fetched_end_offsets(settings, {(tp.topic, tp.partition): listed[tp] for tp in parts})
        return all((consumer.committed(tp) or 0) == ends[(tp.topic, tp.partition)] for tp in parts)
    finally:
        consumer.close()


def test_a_corrupt_shard_fails_its_session_and_the_next_one_gets_its_video(dataset):
    settings, syn = dataset
    store = ObjectStore(settings)
    bad = f"bad-{uuid.uuid4().hex[:6]}"
    copy_session(store, syn.session, bad)
    good = f"good-{uuid.uuid4().hex[:6]}"
    copy_session(store, syn.session, good)
    shard = json.loads(store.get(layout.manifest_key(bad)))["shards"][1]
    store.put(shard, store.get(shard)[:5000])  # a bad copy: cut short
    publish(settings, ready(bad), ready(good))

    run_until(settings, {bad, good})

    renditions, failures, letters = outcome(settings, bad)
    assert renditions == [] and len(failures) == 1 and len(letters) == 1
    assert "DatasetError" in failures[0].message and "cannot be read" in failures[0].message, failures[0].message
    assert letters[0].source_topic == settings.topic_datasets
    assert DatasetReady.decode(letters[0].original).session == bad
    rendered, failed, _ = outcome(settings, good)
    assert len(rendered) == 1 and failed == []
    assert committed_all(settings)


def test_a_missing_reference_fails_fast_and_the_next_session_is_served(dataset):
    settings, syn = dataset
    store = ObjectStore(settings)
    orphan, good = f"noref-{uuid.uuid4().hex[:6]}", f"good-{uuid.uuid4().hex[:6]}"
    for session in (orphan, good):
        copy_session(store, syn.session, session)
    publish(settings, ready(orphan, reference="no-such-dance"), ready(good))

    run_until(settings, {orphan, good})

    renditions, failures, letters = outcome(settings, orphan)
    assert renditions == [] and len(letters) == 1
    assert "no-such-dance" in failures[0].message
    # Failed before any training: no checkpoint was written for it.
    assert store.list(layout.checkpoints_prefix(orphan)) == []
    assert len(outcome(settings, good)[0]) == 1
    assert committed_all(settings)


def test_an_unreadable_base_model_means_training_from_scratch_not_a_failure(dataset):
    settings, syn = dataset
    store = ObjectStore(settings)
    # A promoted base whose manifest fits every session but whose checkpoint is garbage.
    from trainer.pix2pix.networks import NetConfig
    from trainer.warp_framing import CHANNELS, RESIDUAL

    # The CPU default crop (FAST has no crop size) and the default, warp-conditioned generator.
    net = NetConfig.fast(256, matte=True, in_channels=CHANNELS, residual=RESIDUAL).to_dict()
    data = {"framing": "person", "posemap_style": "facing", "size": 256, "conditioning": "warp"}
    label = "person-facing-256-warp"
    manifest = {"version": 1, "label": label, "net": net, "data": data, "checkpoint": "ckpt-000000100.pt"}
    store.put(layout.base_manifest_key(1), json.dumps(manifest).encode())
    store.put(layout.base_version_prefix(1) + "ckpt-000000100.pt", b"this is not a checkpoint")
    store.put(layout.BASE_PROMOTED_KEY, json.dumps({"promoted": {label: 1}}).encode())
    first, second = f"one-{uuid.uuid4().hex[:6]}", f"two-{uuid.uuid4().hex[:6]}"
    for session in (first, second):
        copy_session(store, syn.session, session)
    publish(settings, ready(first), ready(second))

    run_until(settings, {first, second})

    for session in (first, second):
        renditions, failures, _ = outcome(settings, session)
        assert len(renditions) == 1 and failures == []
        metrics = json.loads(store.get(layout.result_key(session, "metrics.json")))
        assert metrics["warm_start"] is False
    said = [
        m.message
        for m in read_topic(settings, settings.topic_training)
        if isinstance(m, TrainingProgress) and m.session == first and m.phase == "training" and m.message
    ]
    assert any("unreadable" in m for m in said), said


def test_two_trainers_share_the_sessions_and_each_is_trained_once(dataset):
    """Two sessions on one partition: the second trainer takes the second session while the first
    trains the first (partitions do not decide who trains what: trainer.claims)."""
    settings, syn = dataset
    store = ObjectStore(settings)
    a, b = (f"v-{uuid.uuid4().hex[:6]}" for _ in range(2))
    for session in (a, b):
        copy_session(store, syn.session, session)
    trainers = [TrainingService(settings, TrainerConfig(**FAST)) for _ in range(2)]
    stop, errors, done = threading.Event(), [], [0, 0]

    def consume(i: int) -> None:
        try:
            done[i] = trainers[i].run(stop=stop)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            errors.append(exc)

    threads = [threading.Thread(target=consume, args=(i,), daemon=True) for i in range(2)]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: not errors and all(t.trainer for t in trainers), timeout=60, what="two trainers")
        publish(settings, ready(a), ready(b))  # one partition, one after the other
        wait_until(lambda: not errors and {a, b} <= finished(settings), timeout=180, what="both sessions")
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert not errors, errors
    for session in (a, b):
        renditions, failures, _ = outcome(settings, session)
        assert len(renditions) == 1 and failures == []
        metrics = json.loads(store.get(layout.result_key(session, "metrics.json")))
        assert metrics["start_step"] == 0  # trained from its start, once: no second trainer resumed it
    assert done == [1, 1]  # each trainer rendered one: the second did not wait behind the first
    assert committed_all(settings)


@pytest.mark.slow
def test_the_object_store_away_during_training_is_waited_out(tmp_path, shared_dir):
    """The S3 server stops for a few seconds mid-training: the session is retried from its
    checkpoint and rendered, and the next session after it too."""
    from infra.kafka import ensure_topics
    from infra.stack import Stack, embedded_settings

    state = tmp_path / "stack"
    settings = embedded_settings(state).model_copy(
        update={"s3_attempts": 1, "kafka_session_timeout_ms": 3000, "kafka_heartbeat_interval_ms": 500}
    )
    stack = Stack(settings, state_dir=state)
    stack.up(prometheus=False)
    try:
        syn = _assembled_session(settings, shared_dir, tmp_path)
        settings = settings.model_copy(update={"topic_datasets": settings.topic_datasets + ".own"})
        ensure_topics(settings)  # only what this test publishes: not the assembler's DatasetReady
        store = ObjectStore(settings)
        second = f"next-{uuid.uuid4().hex[:6]}"
        copy_session(store, syn.session, second)
        publish(settings, ready(syn.session), ready(second))
        service = TrainingService(settings, TrainerConfig(**{**FAST, "budget_s": 8}), retry_delay_s=1.0)
        stop, errors = threading.Event(), []
        thread = threading.Thread(target=lambda: _run(service, stop, errors), daemon=True)
        thread.start()
        try:
            wait_until(
                lambda: store.list(layout.checkpoints_prefix(syn.session) + "ckpt-"),
                timeout=60,
                what="the first checkpoint",
            )
            kill_service(stack, "s3")
            time.sleep(10)  # longer than one store call's own retries: the job itself fails over
            stack.up(prometheus=False)  # the same data folder: everything stored is still there
            wait_until(
                lambda: not errors and {syn.session, second} <= finished(settings), timeout=240, what="both sessions"
            )
        finally:
            stop.set()
            thread.join(60)
        assert not errors, errors
        for session in (syn.session, second):
            renditions, failures, _ = outcome(settings, session)
            assert len(renditions) == 1 and failures == [], (session, failures)
        metrics = json.loads(store.get(layout.result_key(syn.session, "metrics.json")))
        assert metrics["start_step"] > 0  # the retry resumed from the checkpoint saved before the outage
    finally:
        stack.down()


def _run(service: TrainingService, stop: threading.Event, errors: list) -> None:
    try:
        service.run(stop=stop)
    except BaseException as exc:  # noqa: BLE001 - handed to the test thread
        errors.append(exc)


def _assembled_session(settings, shared_dir, tmp_path):
    """The `dataset` fixture's session and reference, on this test's own stack."""
    import cv2

    from assembler.consumer import Assembler
    from assembler.synthetic import SyntheticSession
    from infra.kafka import ensure_topics
    from trainer.references import add_reference
    from trainer.references.video import write_mp4
    from vision.pose.synthetic import moving_photo_clip

    ensure_topics(settings)
    ObjectStore(settings).ensure_bucket()
    syn = SyntheticSession(f"s-{uuid.uuid4().hex[:6]}", cameras=("cam0",), frames=24)
    produce(
        settings,
        [
            syn.event_message(settings, syn.start()),
            *syn.stream_messages(settings),
            syn.event_message(settings, syn.end()),
        ],
    )
    Assembler(
        settings,
        group_id=settings.group("assembler"),
        shard_size=8,
        resolution=64,
        end_grace_s=1.0,
        min_samples=5,
        quiet=True,
    ).run(idle_exit=1.5, serve_metrics=False)
    photo = cv2.cvtColor(cv2.imread(str(shared_dir / "data/images/squat.png")), cv2.COLOR_BGR2RGB)
    write_mp4(
        tmp_path / "dance.mp4", [f for f, _ in moving_photo_clip(photo, n_frames=60, size=(320, 240), seed=3)[:18]], 30
    )
    add_reference(settings, tmp_path / "dance.mp4", "dance", backend="movenet")
    return syn
