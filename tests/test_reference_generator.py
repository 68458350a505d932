"""A generator of the reference dancer, trained on the reference's own frames with the session
trainer's pieces, stored with the reference version, listed, loaded by the mirror."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from infra.objectstore import ObjectStore
from schemas import layout
from trainer.cli import reference

FRAMES = 40


@pytest.fixture(scope="module")
def clip(shared_dir, tmp_path_factory):
    from trainer.references.video import write_mp4
    from vision.pose.synthetic import moving_photo_clip

    photo_path = shared_dir / "data" / "images" / "squat.png"
    if not photo_path.is_file():
        pytest.skip(f"{photo_path} is missing")
    photo = cv2.cvtColor(cv2.imread(str(photo_path)), cv2.COLOR_BGR2RGB)
    frames = moving_photo_clip(photo, n_frames=FRAMES, size=(160, 120), seed=2)
    path = tmp_path_factory.mktemp("clip") / "dancer.mp4"
    write_mp4(path, [f for f, _ in frames], fps=30)
    return path


def _run(settings, *args):
    return CliRunner().invoke(reference, list(args), obj={"settings": settings}, catch_exceptions=False)


def test_a_reference_dancer_generator_is_trained_stored_listed_resumed_and_loaded(settings, clip, tmp_path):
    from trainer.references import list_references
    from trainer.references.generator import NoGenerator, load_dancer

    settings = settings.model_copy(update={"pose_backend": "movenet", "pose_threads": 2})
    assert _run(settings, "add", str(clip), "--name", "solo", "--resolution", "64").exit_code == 0
    with pytest.raises(NoGenerator, match="booth reference train solo"):
        load_dancer(settings, "solo")
    assert [r["generator"] for r in list_references(settings)] == ["none"]
    assert "│ none" in _run(settings, "list").output

    result = _run(settings, "train", "solo", "--budget", "6", "--size", "32", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "solo v1: generator 32px after" in result.output and "box_ssim" in result.output
    store = ObjectStore(settings)
    info = json.loads(store.get(layout.reference_file_key("solo", 1, "generator.json")))
    assert info["framing"] == "whole" and info["size"] == 32 and info["steps"] > 0
    assert info["trained_on"] + info["held_out"] <= FRAMES and info["held_out"] >= 2
    assert 0 < info["box_ssim"] <= 1 and info["device"] == "cpu"
    picture = cv2.imdecode(np.frombuffer(store.get(layout.reference_file_key("solo", 1, "generator.png")), np.uint8), 1)
    assert picture is not None and picture.shape[1] > 3 * picture.shape[0] / 8  # rows of input | real | generated
    [row] = list_references(settings)
    assert row["name"] == "solo" and row["generator"].startswith(f"32px, {info['steps']} steps, box SSIM")

    # Training again goes on from the stored checkpoint, not from scratch.
    again = _run(settings, "train", "solo", "--budget", "3", "--size", "32", "--device", "cpu")
    assert again.exit_code == 0, again.output
    more = json.loads(store.get(layout.reference_file_key("solo", 1, "generator.json")))
    assert more["steps"] > info["steps"]

    # The mirror's view of it: the generator and the framing it renders one pose with.
    dancer = load_dancer(settings, "solo")
    assert dancer.version == 1 and dancer.info["steps"] == more["steps"]
    pose = dancer.ref.poses[FRAMES // 2]
    [(frame, drawn)] = list(dancer.framing.frames(dancer.generator, pose[None], "reference"))
    assert frame.shape == (120, 160, 3) and drawn.shape == (120, 160, 3) and frame.std() > 1

    # A corrected reference has new poses: no generator until one is trained for it.
    fixes = tmp_path / "fix.csv"
    fixes.write_text("3,drop\n")
    assert _run(settings, "correct", "solo", str(fixes)).exit_code == 0
    with pytest.raises(NoGenerator, match="solo v2"):
        load_dancer(settings, "solo")

    bad = _run(settings, "train", "nobody", "--budget", "2")
    assert bad.exit_code != 0 and "no reference named nobody" in bad.output
