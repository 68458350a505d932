"""Each component's /metrics endpoint serves the series infra.metrics_names attributes to it (the
dashboard reads only those: tests/test_metrics_config.py), scraped over HTTP after real data went
through it on the embedded broker; and booth_consumer_lag counts the records a group really has left.

The processors worker runs in its own process, so its scrape holds only its own series. The camera,
assembler and trainer run in this process and share one registry: their series are told apart by the
labels that name them (camera, group, stage, session)."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid

import cv2
import numpy as np
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from infra import kafka, metrics
from infra.metrics_names import EXPECTED_SERIES, scraped_names
from infra.stack import free_port
from schemas import DatasetReady

from helpers import wait_until


def _scrape(port: int) -> list:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def _scrape_when_up(port: int) -> list:
    """A scrape, or nothing while the endpoint is not listening yet (the worker is starting)."""
    try:
        return _scrape(port)
    except urllib.error.URLError:
        return []


def _registry_samples() -> list:
    """This process's samples, as its endpoints would serve them."""
    return [s for family in REGISTRY.collect() for s in family.samples]


def _missing(samples: list, component: str, owned: dict[str, str]) -> list[str]:
    """The series `component` should export that the scrape lacks: a series is there if a sample
    has its name and labels, with this component's value for each label named in `owned`."""
    missing = []
    for series in EXPECTED_SERIES.values():
        if component not in series.components:
            continue
        for name in scraped_names(series):
            if not any(
                s.name == name
                and set(series.labels) <= set(s.labels)
                and all(s.labels[k] == v for k, v in owned.items() if k in series.labels)
                for s in samples
            ):
                missing.append(name + "{" + ",".join(f"{k}={owned.get(k, '*')}" for k in series.labels) + "}")
    return missing


def _lags(samples: list, group: str) -> dict[tuple[str, int], float]:
    return {
        (s.labels["topic"], int(s.labels["partition"])): s.value
        for s in samples
        if s.name == "booth_consumer_lag" and s.labels.get("group") == group
    }


def _read_all(settings, topic: str, at_least: int) -> list:
    """Every record of a topic, read without a group (ground truth for offsets)."""
    c = kafka.consumer(settings, topic, group_id=None)
    records: list = []
    try:

        def more():
            for batch in c.poll(timeout_ms=500).values():
                records.extend(batch)
            return len(records) >= at_least

        wait_until(more, timeout=20, what=f"{at_least} records in {topic}")
        return records
    finally:
        c.close()


@pytest.fixture
def fresh_endpoints(monkeypatch):
    """infra.metrics serves each component once per process: this test's endpoints are its own, and
    later tests get theirs (the servers themselves are daemon threads that end with the process)."""
    monkeypatch.setattr(metrics, "_served", {})


def test_processors_worker_serves_its_series(settings, shared_dir, tmp_path):
    from assembler.synthetic import synthetic_image
    from producers.camera import run_cameras

    camera, n, port = f"cam{uuid.uuid4().hex[:6]}", 6, free_port()
    with open(tmp_path / "worker.log", "ab") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "booth.cli", "process", "--backend", "movenet"],
            env=settings.to_env(metrics_port=port),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    group = settings.group("processors")
    sources = {(t, p) for t in (settings.topic_frames, settings.topic_poses) for p in range(2)}

    def running() -> bool:
        assert worker.poll() is None, f"the worker exited with code {worker.returncode}"
        return True

    def processed() -> bool:
        values = {s.name: s.value for s in _scrape_when_up(port)}
        return values.get("booth_smooth_poses_total") == n and values.get("booth_deadletters_total") == 1

    def caught_up():
        """The scrape once every source partition reports a lag of 0 (every 5 s, from commits)."""
        scrape = _scrape_when_up(port)
        return scrape if _lags(scrape, group) == dict.fromkeys(sources, 0.0) else None

    try:
        # Frames from the camera pipeline (its own series: test_camera_serves_its_series).
        frames = [synthetic_image(i, camera, (160, 120)) for i in range(n)]
        summary = run_cameras(settings, "metrics-1", {camera: frames}, size=(160, 120), speed=0)
        assert summary.ok
        producer = kafka.producer(settings)
        producer.send(settings.topic_frames, key=b"metrics-1/" + camera.encode(), value=b"not a frame").get(10)
        producer.close()
        wait_until(lambda: running() and processed(), timeout=90, what="smoothed poses and a dead letter")
        scrape = wait_until(lambda: running() and caught_up(), timeout=30, what=f"zero lag on {sorted(sources)}")
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(20)
    assert _missing(scrape, "processors", {"group": group, "stage": "pose"}) == []
    values = {s.name: s.value for s in scrape}
    assert values["booth_pose_frames_total"] == n and values["booth_pose_latency_seconds_count"] == n
    assert values["booth_capture_to_pose_seconds_count"] == n
    assert not any(s.name.startswith(("booth_camera_", "booth_assembler_", "booth_training_")) for s in scrape)


def test_camera_serves_its_series(settings, fresh_endpoints):
    """Every camera series from the camera's first frame, drops included while there are none: the
    dashboard's rate() of a series that does not exist yet shows no data, not a zero."""
    from assembler.synthetic import synthetic_image
    from producers.camera import run_cameras

    camera, n = f"cam{uuid.uuid4().hex[:6]}", 3
    summary = run_cameras(
        settings,
        "metrics-2",
        {camera: [synthetic_image(i, camera, (64, 48)) for i in range(n)]},
        size=(64, 48),
        speed=0,
    )
    assert summary.ok and summary.cameras[camera].dropped == 0
    scrape = _scrape(metrics.serve(settings.model_copy(update={"metrics_port": free_port()}), "camera"))
    sent = [s.value for s in scrape if s.name == "booth_camera_frames_sent_total" and s.labels["camera"] == camera]
    assert sent == [n]
    assert _missing(scrape, "camera", {"camera": camera}) == []


def test_assembler_and_trainer_serve_their_series_and_their_true_lag(settings, shared_dir, tmp_path, fresh_endpoints):
    from assembler.consumer import Assembler
    from assembler.synthetic import SyntheticSession, produce
    from trainer.references import add_reference
    from trainer.references.video import write_mp4
    from trainer.service import TrainerConfig, TrainingService
    from vision.pose.synthetic import moving_photo_clip

    settings = settings.model_copy(
        update={"kafka_session_timeout_ms": 3000, "kafka_heartbeat_interval_ms": 500, "metrics_port": free_port()}
    )
    camera = f"cam{uuid.uuid4().hex[:6]}"
    syn = SyntheticSession(f"m-{uuid.uuid4().hex[:6]}", cameras=(camera,), frames=8)
    produce(
        settings,
        [syn.event_message(settings, syn.start())]
        + syn.stream_messages(settings)
        + [syn.event_message(settings, syn.end()), (settings.topic_frames, b"m-x/" + camera.encode(), b"junk")],
    )
    assembler_group = settings.group("assembler")
    summary = Assembler(
        settings,
        group_id=assembler_group,
        shard_size=4,
        resolution=64,
        end_grace_s=1.0,
        unknown_session_grace_s=1.0,
        commit_interval_s=0.2,
        min_samples=4,
        quiet=True,
    ).run(idle_exit=1.5)
    assert summary.samples == 8 and summary.dead_letters == 1
    assembler_scrape = _scrape(metrics.serve(settings, "assembler"))  # the endpoint run() started
    assert _missing(assembler_scrape, "assembler", {"group": assembler_group, "stage": "assembler"}) == []
    assembler_lag = _lags(assembler_scrape, assembler_group)
    assert {t for t, _ in assembler_lag} == {settings.topic_sessions, settings.topic_frames, settings.topic_smoothed}
    assert set(assembler_lag.values()) == {0.0}  # it had read everything when it went idle
    assert [
        s.value for s in assembler_scrape if s.name == "booth_assembler_samples_total" and s.labels["camera"] == camera
    ] == [8]

    # Beside the assembler's DatasetReady: a poison pill and failed datasets, in one batch to
    # partition 0, where the embedded broker's ListOffsets "latest" (first offset of the last
    # batch + 1) is wrong. The lag at each record must be exactly the records after it.
    p = kafka.producer(settings, linger_ms=1000)
    p.send(settings.topic_datasets, value=b"not a DatasetReady", partition=0)
    for i in range(3):
        failed = DatasetReady(
            session=f"lag-{i}", status="failed", reason="too few frames", samples=0, wall_time=time.time()
        )
        p.send(settings.topic_datasets, key=failed.session.encode(), value=failed.encode(), partition=0)
    p.flush()
    p.close()
    ends: dict[int, int] = {}
    where: dict[str, tuple[int, int]] = {}
    for r in _read_all(settings, settings.topic_datasets, 5):
        ends[r.partition] = max(ends.get(r.partition, 0), r.offset + 1)
        if r.key:
            where[r.key.decode()] = (r.partition, r.offset)
    assert set(where) == {syn.session, "lag-0", "lag-1", "lag-2"}

    photo = cv2.cvtColor(cv2.imread(str(shared_dir / "data/images/squat.png")), cv2.COLOR_BGR2RGB)
    clip = [f for f, _ in moving_photo_clip(photo, n_frames=60, size=(320, 240), seed=3)[:8]]
    write_mp4(tmp_path / "dance.mp4", clip, 30)
    add_reference(settings, tmp_path / "dance.mp4", "dance", backend="movenet")

    trainer_group = settings.group("trainer")
    seen: dict[str, float | None] = {}

    class LagAtEachDataset(TrainingService):
        def handle(self, ready, **kwargs):
            seen[ready.session] = REGISTRY.get_sample_value(
                "booth_consumer_lag",
                {"group": trainer_group, "topic": settings.topic_datasets, "partition": str(where[ready.session][0])},
            )
            return super().handle(ready, **kwargs)

    trainer_settings = settings.model_copy(update={"metrics_port": free_port()})
    service = LagAtEachDataset(
        trainer_settings,
        TrainerConfig(
            budget_s=2,
            checkpoint_every_s=1,
            progress_bar=False,
            progress_every_s=0.0,
            reference="dance",
            side_by_side=False,
            max_render_frames=4,
            crop_size=32,
        ),
    )
    stop, rendered, errors = threading.Event(), [], []
    rendered_before = REGISTRY.get_sample_value("booth_trainer_sessions_total", {"outcome": "rendered"}) or 0.0

    def consume():
        try:
            rendered.append(service.run(stop=stop))
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            errors.append(exc)

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()

    def all_read() -> bool:
        assert not errors, errors
        lags = _lags(_registry_samples(), trainer_group)
        done = REGISTRY.get_sample_value("booth_trainer_sessions_total", {"outcome": "rendered"}) or 0.0
        return len(seen) == 4 and bool(lags) and set(lags.values()) == {0.0} and done == rendered_before + 1

    try:
        wait_until(all_read, timeout=90, what="the trainer to read every DatasetReady")
    finally:
        stop.set()
        thread.join(120)
    assert not errors and rendered == [1]
    # The trainers' lag is the work not yet done in a partition, the record in hand included: the
    # failed datasets, done one after the other, each leave one less.
    fails = [seen[f"lag-{i}"] for i in range(3)]
    assert fails[0] >= 3 and fails == [fails[0], fails[0] - 1, fails[0] - 2], (seen, where, ends)
    assert seen[syn.session] >= 1

    trainer_scrape = _scrape(metrics.serve(trainer_settings, "trainer"))
    assert (
        _missing(trainer_scrape, "trainer", {"group": trainer_group, "stage": "trainer", "session": syn.session}) == []
    )
    assert set(_lags(trainer_scrape, trainer_group).values()) == {0.0}
    steps = [s.value for s in trainer_scrape if s.name == "booth_training_step" and s.labels["session"] == syn.session]
    assert steps and steps[0] >= 1
    losses = [s.value for s in trainer_scrape if s.name == "booth_training_loss" and s.labels["session"] == syn.session]
    assert losses and np.isfinite(losses).all()
