"""The trainer against the real broker and S3 server: DatasetReady in, a rendition video out."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
import uuid

import cv2
import numpy as np
import pytest

from infra import kafka
from infra.objectstore import get_bytes
from schemas import DatasetReady, Rendition, TrainingProgress, decode
from trainer.assembler import Assembler, read_manifest
from trainer.assembler.synthetic import SyntheticSession, produce
from trainer.rendition import count_frames
from trainer.service import TrainerConfig, TrainingService

FAST = dict(shard_size=8, resolution=64, end_grace_s=1.0, unknown_session_grace_s=1.0, commit_interval_s=0.2,
            min_samples=5, quiet=True)


@pytest.fixture
def dataset(settings, shared_dir, tmp_path):
    """A real assembled session and a real reference dance (poses estimated from a video)."""
    settings = settings.model_copy(update={"kafka_session_timeout_ms": 3000, "kafka_heartbeat_interval_ms": 500})
    syn = SyntheticSession(f"s-{uuid.uuid4().hex[:6]}", cameras=("cam0",), frames=24)
    produce(settings, [syn.event_message(settings, syn.start())] + syn.stream_messages(settings)
            + [syn.event_message(settings, syn.end())])
    Assembler(settings, group_id=settings.group("assembler"), **FAST).run(idle_exit=1.5, serve_metrics=False)
    assert read_manifest(settings, syn.session)["samples"] == 24

    from processors.pose.synthetic import moving_photo_clip
    from trainer.references import add_reference
    from trainer.references.video import write_mp4

    photo = cv2.cvtColor(cv2.imread(str(shared_dir / "data/images/squat.png")), cv2.COLOR_BGR2RGB)
    clip = [f for f, _ in moving_photo_clip(photo, n_frames=60, size=(320, 240), seed=3)[:18]]
    write_mp4(tmp_path / "dance.mp4", clip, 30)
    add_reference(settings, tmp_path / "dance.mp4", "dance", backend="movenet")
    return settings, syn


def _read(settings, topic):
    c = kafka.consumer(settings, topic, group_id=None, consumer_timeout_ms=1500)
    try:
        return [decode(r.value) for r in c]
    finally:
        c.close()


def test_dataset_ready_becomes_a_rendition_and_resumes_from_checkpoints(dataset):
    settings, syn = dataset
    ready = DatasetReady(session=syn.session, status="ready", samples=24, cameras=["cam0"], reference="dance",
                         wall_time=time.time())
    service = TrainingService(settings, TrainerConfig(budget_s=6, checkpoint_every_s=2, progress_bar=False, reference="dance",
                                                      progress_every_s=0.0))
    t0 = time.monotonic()
    rendition = service.handle(ready)
    took = time.monotonic() - t0

    # The video: a real MP4 behind a working presigned link, one frame per reference pose.
    assert isinstance(rendition, Rendition) and rendition.frames == 18
    video = urllib.request.urlopen(rendition.url, timeout=30).read()
    assert video == get_bytes(settings, rendition.video_key)
    path = (settings.state_dir / f"{syn.session}.mp4")
    path.write_bytes(video)
    assert count_frames(path) == 18

    # The side-by-side video: reference dancer | pose map | result, as many frames.
    side = settings.state_dir / f"{syn.session}-side.mp4"
    side.write_bytes(get_bytes(settings, f"sessions/{syn.session}/results/side-by-side.mp4"))
    assert count_frames(side) == 18

    # Pictures and evaluation written next to it.
    prefix = f"sessions/{syn.session}/results/"
    for name in ("samples.png", "loss.png"):
        image = cv2.imdecode(np.frombuffer(get_bytes(settings, prefix + name), np.uint8), cv2.IMREAD_COLOR)
        assert image is not None and image.shape[0] > 50 and image.shape[1] > 50
    results = json.loads(get_bytes(settings, prefix + "metrics.json"))
    assert 0 < results["ssim"] <= 1 and results["psnr"] > 5
    assert results["held_out"] >= 2 and results["warm_start"] is False
    assert results["train_seconds"] <= 6 + 3, "the budget was not honoured"
    assert took < 60

    # Progress events, in order, with growing steps.
    events = [e for e in _read(settings, settings.topic_training) if isinstance(e, TrainingProgress)]
    phases = [e.phase for e in events]
    assert phases[0] == "loading" and phases[-1] == "done"
    assert phases.index("training") < phases.index("evaluating") < phases.index("rendering")
    steps = [e.step for e in events if e.phase == "training"]
    assert steps == sorted(steps) and steps[-1] >= 2

    # A second delivery (say, after a crash before the commit) resumes from the stored checkpoint.
    first_steps = results["steps"]
    produce(settings, [(settings.topic_datasets, syn.session.encode(), ready.encode())])
    done = service.run(stop=threading.Event(), max_sessions=1)
    assert done == 1
    again = json.loads(get_bytes(settings, prefix + "metrics.json"))
    assert again["steps"] > first_steps  # continued, not restarted
    renditions = [e for e in _read(settings, settings.topic_renditions) if isinstance(e, Rendition)]
    assert len(renditions) == 2


def test_failed_datasets_are_not_trained(settings):
    ready = DatasetReady(session="s-failed", status="failed", reason="too few frames", samples=1, wall_time=time.time())
    assert TrainingService(settings).handle(ready) is None
