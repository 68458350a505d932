"""The trainer against the real broker and S3 server: DatasetReady in, a rendition video out."""

from __future__ import annotations

import json
import threading
import time
import urllib.request

import cv2
import numpy as np

from assembler.synthetic import produce
from infra.objectstore import ObjectStore
from schemas import DatasetReady, Rendition, TrainingProgress, layout
from trainer.oneshot import is_oneshot
from trainer.rendition import count_frames
from trainer.service import TrainerConfig, TrainingService

from helpers import read_topic


def video_size(path) -> tuple[int, int]:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return stream.codec_context.width, stream.codec_context.height


def test_dataset_ready_becomes_a_rendition_and_resumes_from_checkpoints(dataset):
    settings, syn = dataset
    ready = DatasetReady(
        session=syn.session, status="ready", samples=24, cameras=["cam0"], reference="dance", wall_time=time.time()
    )
    service = TrainingService(
        settings,
        TrainerConfig(
            budget_s=16,  # a few steps even when a loaded machine makes the first one slow
            checkpoint_every_s=2,
            progress_bar=False,
            reference="dance",
            progress_every_s=0.0,
            crop_size=32,
        ),
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
    assert video_size(path) == syn.size  # the camera's own size and aspect, not the generator's square

    # The side-by-side video: reference dancer | pose map | result, as many frames.
    side = settings.state_dir / f"{syn.session}-side.mp4"
    side.write_bytes(ObjectStore(settings).get(f"sessions/{syn.session}/results/side-by-side.mp4"))
    assert count_frames(side) == 18 and video_size(side) == (3 * syn.size[0], syn.size[1])

    # The background plate the person was composited onto is stored with the dataset.
    plate = cv2.imdecode(
        np.frombuffer(ObjectStore(settings).get(f"sessions/{syn.session}/plates/cam0.png"), np.uint8), 1
    )
    assert plate.shape == (syn.size[1], syn.size[0], 3)
    about = json.loads(ObjectStore(settings).get(f"sessions/{syn.session}/plates/cam0.json"))
    assert about["source"] == "session" and about["mask_source"] in ("blazepose", "silhouette")

    # Pictures and evaluation written next to it.
    prefix = f"sessions/{syn.session}/results/"
    for name in ("samples.png", "loss.png"):
        image = cv2.imdecode(np.frombuffer(ObjectStore(settings).get(prefix + name), np.uint8), cv2.IMREAD_COLOR)
        assert image is not None and image.shape[0] > 50 and image.shape[1] > 50
    results = json.loads(ObjectStore(settings).get(prefix + "metrics.json"))
    assert 0 < results["ssim"] <= 1 and results["psnr"] > 5
    assert 0 < results["box_ssim"] <= 1 and results["box_psnr"] > 5 and results["flicker"] > 0
    assert results["framing"] == "person" and results["posemap_style"] == "facing" and results["size"] == 32
    assert (results["width"], results["height"]) == syn.size
    # Held out: the last 4 of the 24 frames, 12 frames of gap, 8 trained on (a small session keeps 8).
    assert (results["held_out"], results["holdout_gap"], results["trained_on"]) == (4, 12, 8)
    assert any("gap of 12 frames" in w for w in results["warnings"])
    assert results["warm_start"] is False
    relevance = results["coverage"]["training"]  # the dance against the training frames (trainer.coverage)
    assert relevance["sampling"] == "by relevance to the dance" and sum(relevance["repeats"].values()) == 8
    assert relevance["uncovered_frames"] == sum(b - a + 1 for a, b in relevance["uncovered"])
    assert results["coverage"]["capture"] is None  # not a guided capture
    assert {"box_ssim", "box_psnr", "flicker"} <= set(rendition.metrics)
    assert results["train_seconds"] <= 16 + 3, "the budget was not honoured"
    assert took < 90

    # Progress events, in order, with growing steps.
    events = [e for e in read_topic(settings, settings.topic_training) if isinstance(e, TrainingProgress)]
    phases = [e.phase for e in events]
    assert phases[0] == "loading" and phases[-1] == "done"
    assert phases.index("training") < phases.index("evaluating") < phases.index("rendering")
    steps = [e.step for e in events if e.phase == "training"]
    assert steps == sorted(steps) and steps[-1] >= 2, (steps, results["steps"])

    # The one-shot video (the visitor's pixels warped through the dance) came first, before any
    # training step, and is stored beside the fine-tuned one.
    first, last = [e for e in read_topic(settings, settings.topic_renditions) if isinstance(e, Rendition)]
    assert is_oneshot(first) and not is_oneshot(last) and last.video_key == rendition.video_key
    assert first.video_key == layout.rendition_version_key(syn.session, 1) and first.reference == "dance"
    assert (first.version, first.kind, first.final, first.frames) == (1, "preview", False, 18)
    assert first.wall_time < min(e.wall_time for e in events if e.phase == "training")
    shot = settings.state_dir / f"{syn.session}-oneshot.mp4"
    shot.write_bytes(ObjectStore(settings).get(first.video_key))
    assert ObjectStore(settings).get(prefix + "oneshot.mp4") == shot.read_bytes()
    # Every version's link plays the newest: by now the fine-tuned video.
    assert urllib.request.urlopen(first.url, timeout=30).read() == video
    assert count_frames(shot) == 18 and video_size(shot) == syn.size
    assert first.metrics["oneshot_missing_parts"] == 0

    # Every version is judged on the dance it shows (trainer.fidelity), figures and picture beside it.
    versions = json.loads(ObjectStore(settings).get(prefix + "versions.json"))["versions"]
    for v in versions:
        assert v["dance_judged"] == 18 and 0 <= v["dance_person_found"] <= 1, v
        png = ObjectStore(settings).get(layout.dance_picture_key(syn.session, v["version"]))
        assert cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR).shape[0] >= 4 * 240
    assert results["dance_judged"] == 18 and "dance_limb_error" in results and "dance_facing_agreement" in results
    # Beside them the judge's floor on the session's own frames (here synthetic figures nobody can
    # read: null), measured once for every GAN version; the one-shot video, first, does not wait.
    assert {"dance_limb_floor", "dance_limb_floor_p90", "dance_facing_floor"} <= results.keys()
    assert "dance_facing_floor" not in versions[0] and all("dance_facing_floor" in v for v in versions[1:])
    assert len({json.dumps(v.get("dance_limb_floor")) for v in versions[1:] + [results]}) == 1
    assert not any("no judge floor" in w for w in results["warnings"])
    assert ObjectStore(settings).get(prefix + "dance.png") == png  # the newest version's

    # A second delivery (say, after a crash before the commit) resumes from the stored checkpoint.
    first_steps = results["steps"]
    produce(settings, [(settings.topic_datasets, syn.session.encode(), ready.encode())])
    done = service.run(stop=threading.Event(), max_sessions=1)
    assert done == 1
    again = json.loads(ObjectStore(settings).get(prefix + "metrics.json"))
    assert again["steps"] > first_steps  # continued, not restarted
    renditions = [e for e in read_topic(settings, settings.topic_renditions) if isinstance(e, Rendition)]
    # No second one-shot video: the visitor already has a better one behind the link.
    assert [(r.version, r.final, is_oneshot(r)) for r in renditions] == [
        (1, False, True),
        (2, True, False),
        (3, True, False),
    ]


def test_failed_datasets_are_not_trained(settings):
    ready = DatasetReady(session="s-failed", status="failed", reason="too few frames", samples=1, wall_time=time.time())
    assert TrainingService(settings).handle(ready) is None
