"""The trainer against the real broker and S3 server: DatasetReady in, a rendition video out."""

from __future__ import annotations

import json
import threading
import time
import urllib.request

import cv2
import numpy as np

from infra.objectstore import ObjectStore
from schemas import DatasetReady, Rendition, TrainingProgress
from trainer.assembler.synthetic import produce
from trainer.rendition import count_frames
from trainer.service import TrainerConfig, TrainingService

from helpers import read_topic


def test_dataset_ready_becomes_a_rendition_and_resumes_from_checkpoints(dataset):
    settings, syn = dataset
    ready = DatasetReady(
        session=syn.session, status="ready", samples=24, cameras=["cam0"], reference="dance", wall_time=time.time()
    )
    service = TrainingService(
        settings,
        TrainerConfig(budget_s=6, checkpoint_every_s=2, progress_bar=False, reference="dance", progress_every_s=0.0),
    )
    t0 = time.monotonic()
    rendition = service.handle(ready)
    took = time.monotonic() - t0

    # The video: a real MP4 behind a working presigned link, one frame per reference pose.
    assert isinstance(rendition, Rendition) and rendition.frames == 18
    video = urllib.request.urlopen(rendition.url, timeout=30).read()
    assert video == ObjectStore(settings).get(rendition.video_key)
    path = settings.state_dir / f"{syn.session}.mp4"
    path.write_bytes(video)
    assert count_frames(path) == 18

    # The side-by-side video: reference dancer | pose map | result, as many frames.
    side = settings.state_dir / f"{syn.session}-side.mp4"
    side.write_bytes(ObjectStore(settings).get(f"sessions/{syn.session}/results/side-by-side.mp4"))
    assert count_frames(side) == 18

    # Pictures and evaluation written next to it.
    prefix = f"sessions/{syn.session}/results/"
    for name in ("samples.png", "loss.png"):
        image = cv2.imdecode(np.frombuffer(ObjectStore(settings).get(prefix + name), np.uint8), cv2.IMREAD_COLOR)
        assert image is not None and image.shape[0] > 50 and image.shape[1] > 50
    results = json.loads(ObjectStore(settings).get(prefix + "metrics.json"))
    assert 0 < results["ssim"] <= 1 and results["psnr"] > 5
    assert results["held_out"] >= 2 and results["warm_start"] is False
    assert results["train_seconds"] <= 6 + 3, "the budget was not honoured"
    assert took < 60

    # Progress events, in order, with growing steps.
    events = [e for e in read_topic(settings, settings.topic_training) if isinstance(e, TrainingProgress)]
    phases = [e.phase for e in events]
    assert phases[0] == "loading" and phases[-1] == "done"
    assert phases.index("training") < phases.index("evaluating") < phases.index("rendering")
    steps = [e.step for e in events if e.phase == "training"]
    assert steps == sorted(steps) and steps[-1] >= 2, (steps, results)

    # A second delivery (say, after a crash before the commit) resumes from the stored checkpoint.
    first_steps = results["steps"]
    produce(settings, [(settings.topic_datasets, syn.session.encode(), ready.encode())])
    done = service.run(stop=threading.Event(), max_sessions=1)
    assert done == 1
    again = json.loads(ObjectStore(settings).get(prefix + "metrics.json"))
    assert again["steps"] > first_steps  # continued, not restarted
    renditions = [e for e in read_topic(settings, settings.topic_renditions) if isinstance(e, Rendition)]
    assert len(renditions) == 2


def test_failed_datasets_are_not_trained(settings):
    ready = DatasetReady(session="s-failed", status="failed", reason="too few frames", samples=1, wall_time=time.time())
    assert TrainingService(settings).handle(ready) is None
