"""Reference dances: extraction from a real video, glitch report, manual corrections, versions."""

from __future__ import annotations

import io
import json

import av
import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from infra.objectstore import ObjectStore
from schemas import layout
from schemas.keypoints import IMPUTED, INDEX, OBSERVED
from trainer.cli import reference
from trainer.references import load_reference, load_reference_version, parse_corrections, smooth_reference
from trainer.references.corrections import merge, to_csv
from vision.smoothing.synthetic import stick_figure

FRAMES = 40  # one slow sweep of the photo: per-frame motion a dancer could make


# --- corrections files (no store needed) --------------------------------------------------------
def test_corrections_file_is_parsed_with_header_comments_and_drops():
    text = "frame,keypoint,x,y\n# fix the wrist\n3, left_wrist, 10.5, 20\n\n7,drop\n4,NOSE,0,0\n"
    c = parse_corrections(text, 10, (100, 80))
    assert c.points == {(3, INDEX["left_wrist"]): (10.5, 20.0), (4, INDEX["nose"]): (0.0, 0.0)}
    assert c.drops == {7}
    assert parse_corrections(to_csv(c), 10, (100, 80)) == c


@pytest.mark.parametrize(
    "text, problem",
    [
        ("3,left_hand,1,1", "unknown keypoint 'left_hand'"),
        ("12,nose,1,1", "frame 12 is outside the reference (0..9)"),
        ("x,nose,1,1", "first column must be a frame number"),
        ("3,nose,1", "expected 'frame,keypoint,x,y' or 'frame,drop'"),
        ("3,nose,500,1", "outside the 100x80 source frame"),
        ("3,nose,nan,1", "outside the 100x80 source frame"),
        ("3,nose,1,1\n3,drop", "both corrected and dropped"),
        ("3,nose,1,1\n3,nose,2,2", "corrected twice"),
        ("# nothing\n", "no corrections found"),
    ],
)
def test_bad_corrections_are_refused_with_the_line_and_problem(text, problem):
    with pytest.raises(ValueError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        parse_corrections(text, 10, (100, 80), source="fix.csv")


def test_later_corrections_win_and_revive_dropped_frames():
    a = parse_corrections("1,nose,1,1\n2,drop\n3,nose,3,3", 10, (100, 80))
    b = parse_corrections("1,nose,5,5\n2,nose,2,2\n3,drop", 10, (100, 80))
    m = merge(a, b)
    assert m.points == {(1, 0): (5.0, 5.0), (2, 0): (2.0, 2.0)} and m.drops == {3}


def test_smoothing_keeps_corrections_exact_and_fills_dropped_frames():
    poses, times = stick_figure(40, seed=3)
    poses = poses.astype(np.float32)
    c = parse_corrections("10,left_wrist,300,200\n20,drop", 40, (640, 480))
    out = smooth_reference(poses, times, "savgol", corrections=c)
    np.testing.assert_allclose(out.poses[10, INDEX["left_wrist"]], (300, 200, 1.0))
    assert out.flags[10, INDEX["left_wrist"]] == OBSERVED
    assert (out.flags[20] & IMPUTED).all() and out.usable.all()
    # The dropped frame lies between its neighbours, near where the dancer really was.
    assert np.abs(out.poses[20, :, :2] - poses[20, :, :2]).max() < 15
    plain = smooth_reference(poses, times, "median")
    assert plain.glitches == 0 and plain.glitches_csv.startswith("frame,time,part,kind,magnitude,replaced")


# --- the store, through the CLI -----------------------------------------------------------------
@pytest.fixture(scope="module")
def clip(shared_dir, tmp_path_factory):
    from trainer.references.video import write_mp4
    from vision.pose.synthetic import apply_affine, moving_photo_clip

    photo_path = shared_dir / "data" / "images" / "squat.png"
    if not photo_path.is_file():
        pytest.skip(f"{photo_path} is missing")
    photo = cv2.cvtColor(cv2.imread(str(photo_path)), cv2.COLOR_BGR2RGB)
    frames = moving_photo_clip(photo, n_frames=FRAMES, size=(320, 240), seed=1)
    path = tmp_path_factory.mktemp("clip") / "squat.mp4"
    write_mp4(path, [f for f, _ in frames], fps=30)
    return path, photo, [a for _, a in frames], apply_affine


def _run(settings, *args):
    result = CliRunner().invoke(reference, list(args), obj={"settings": settings}, catch_exceptions=False)
    return result


def test_reference_add_correct_and_list(settings, clip, tmp_path):
    from vision.pose import load_estimator

    path, photo, affines, apply_affine = clip
    settings = settings.model_copy(update={"pose_backend": "movenet", "pose_threads": 2})
    result = _run(settings, "add", str(path), "--name", "squat", "--resolution", "96")
    assert result.exit_code == 0, result.output
    assert "squat v1: 40 frames" in result.output

    ref = load_reference_version(settings, "squat")
    poses, times, src_size = load_reference(settings, "squat")
    assert poses.shape == (FRAMES, 17, 3) and times.shape == (FRAMES,) and src_size == (320, 240)
    assert np.all(np.diff(times) > 0) and times[-1] == pytest.approx((FRAMES - 1) / 30, abs=1e-3)
    assert ref.version == 1 and ref.flags.shape == (FRAMES, 17) and ref.usable.all()
    # Frame i's pose is where the photo's person was pasted in frame i (order and geometry kept).
    truth = load_estimator("movenet", settings.models_dir).estimate(photo)[0].keypoints
    sure = truth[:, 2] > 0.4
    errors = [
        np.linalg.norm(poses[i, sure, :2] - apply_affine(a, truth[sure, :2]), axis=1) for i, a in enumerate(affines)
    ]
    assert np.median(np.concatenate(errors)) < 6.0

    report = ObjectStore(settings).get(layout.reference_file_key("squat", 1, "glitches.csv")).decode()
    assert report.splitlines()[0] == "frame,time,part,kind,magnitude,replaced"
    assert len(report.splitlines()) - 1 == ref.meta["glitches"]
    with av.open(io.BytesIO(ObjectStore(settings).get(layout.reference_file_key("squat", 1, "preview.mp4")))) as video:
        shown = [f.to_ndarray(format="rgb24") for f in video.decode(video=0)]
    assert len(shown) == FRAMES and shown[0].shape == (96, 192, 3)
    assert shown[0][:, 96:].max() > 200  # the pose map half has a figure drawn

    again = _run(settings, "add", str(path), "--name", "squat")
    assert again.exit_code != 0 and "exists" in again.output

    wrist = INDEX["left_wrist"]
    fixes = tmp_path / "fixes.csv"
    fixes.write_text("frame,keypoint,x,y\n5,left_wrist,100.5,60.25\n9,drop\n")
    result = _run(settings, "correct", "squat", str(fixes))
    assert result.exit_code == 0, result.output
    v2 = load_reference_version(settings, "squat")
    assert v2.version == 2 and v2.meta["based_on"] == 1 and v2.meta["dropped_frames"] == [9]
    np.testing.assert_allclose(v2.poses[5, wrist], (100.5, 60.25, 1.0))
    assert (v2.flags[9] & IMPUTED).all() and v2.usable[9]
    # Far from the edits (beyond the smoothing and glitch windows) nothing changed.
    np.testing.assert_allclose(v2.poses[25:], ref.poses[25:], atol=1e-4)
    assert load_reference_version(settings, "squat", version=1).poses.tolist() == ref.poses.tolist()

    more = tmp_path / "more.csv"
    more.write_text("2,nose,50,40\n")
    assert _run(settings, "correct", "squat", str(more)).exit_code == 0
    v3 = load_reference_version(settings, "squat")
    np.testing.assert_allclose(v3.poses[5, wrist], (100.5, 60.25, 1.0))  # earlier edits are kept
    np.testing.assert_allclose(v3.poses[2, INDEX["nose"], :2], (50, 40))
    assert v3.meta["corrections"] == 3

    bad = tmp_path / "bad.csv"
    bad.write_text("99,nose,1,1\n")
    result = _run(settings, "correct", "squat", str(bad))
    assert result.exit_code != 0 and "bad.csv:1: frame 99 is outside the reference (0..39)" in result.output

    listed = _run(settings, "list")
    assert "squat" in listed.output and "│ 3 " in listed.output
    latest = json.loads(ObjectStore(settings).get(layout.reference_latest_key("squat")))
    assert latest["version"] == 3
    bad_name = _run(settings, "add", str(path), "--name", "../squat")
    assert bad_name.exit_code != 0 and "forbidden character" in bad_name.output
