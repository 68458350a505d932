"""The held-out evaluation's parts: the video figures' pairs of boxed frames, a version's figures
against the final evaluation's, the options' comparison picture, and the pose check's estimator
(loaded once per process, each session's tracking its own)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from schemas.keypoints import empty_keypoints
from trainer import evaluation
from trainer.coherent import CoherentPersonCentred
from trainer.pix2pix.evaluate import flicker, frames_pose_error, motion_error, video_quality
from trainer.pix2pix.networks import NetConfig, UNetGenerator
from trainer.pix2pix.synthetic import PERSON_A, random_poses
from trainer.training_set import TrainingSet
from vision.crop import crop_side

SIZE, CROP = (96, 72), 32


def test_flicker_and_motion_error_measure_only_pairs_of_boxed_frames():
    rng = np.random.default_rng(0)
    real = rng.integers(0, 256, (4, 20, 30, 3), dtype=np.uint8)
    boxes = [(2, 2, 28, 18), (4, 3, 26, 17), None, (2, 2, 28, 18)]  # frame 2 has no person
    fake = real.copy()
    fake[3] = 0  # only the pair (2, 3) sees this, and it has no box
    assert flicker(real, fake, boxes) == pytest.approx(1.0)
    assert motion_error(real, fake, boxes) == pytest.approx(0.0)
    still = np.repeat(real[:1], 4, axis=0)  # a video that does not move at all
    assert flicker(real, still, boxes) == 0.0
    assert motion_error(real, still, boxes) == pytest.approx(1.0)
    assert np.isnan(flicker(real, fake, [None] * 4)) and np.isnan(motion_error(real, fake, [None] * 4))


def _session(n: int = 8):
    """Two cameras, each a synthetic person moving between two poses; the last half held out."""
    keys = random_poses(2, SIZE, seed=3)
    f = np.linspace(0, 1, n)[:, None, None]
    poses = np.concatenate([keys[0] * (1 - f) + keys[1] * f, keys[1] * (1 - f) + keys[0] * f]).astype(np.float32)
    cams = np.array(["cam0"] * n + ["cam1"] * n)
    data = TrainingSet(
        [PERSON_A.render(p, SIZE, SIZE) for p in poses],
        np.zeros((2 * n, 1, 1, 3), np.uint8),
        poses,
        cams,
        np.concatenate([np.arange(n), np.arange(n)]),
    )
    plates = {c: np.full((SIZE[1], SIZE[0], 3), 90, np.uint8) for c in ("cam0", "cam1")}
    framing = CoherentPersonCentred(CROP, "facing", plates, {c: crop_side(poses[cams == c]) for c in plates})
    test = np.concatenate([np.arange(n) >= n // 2] * 2)
    return data, framing, test


def test_a_versions_figures_are_the_main_cameras_held_out_figures():
    torch.manual_seed(0)
    data, framing, test = _session()
    generator = UNetGenerator(NetConfig.fast(CROP, matte=True, in_channels=framing.in_channels)).eval()
    camera = data.main_camera()
    figures = evaluation.version_figures(generator, framing, data, test, camera)
    real, fake, _maps, poses = evaluation.held_out_frames(generator, framing, data, test)[camera]
    whole = video_quality(real, fake, poses)
    assert list(figures) == list(evaluation.VERSION_FIGURES)
    assert figures == {k: whole[k] for k in evaluation.VERSION_FIGURES}
    assert np.isfinite(figures["box_psnr"])
    assert evaluation.version_figures(generator, framing, data, test & (data.cameras != camera), camera) == {}


def test_the_comparison_enlarges_each_frames_face_box_and_person_box():
    rng = np.random.default_rng(1)
    real = rng.integers(0, 256, (3, 60, 80, 3), dtype=np.uint8)
    fake = rng.integers(0, 256, (3, 60, 80, 3), dtype=np.uint8)
    faces = [(10, 5, 30, 25), None, (40, 20, 60, 40)]
    boxes = [(5, 2, 45, 58), (0, 0, 40, 60), (30, 10, 70, 55)]
    strip = evaluation.comparison_strip(real, {"with": fake}, faces, boxes)
    # Per row: face box of real | with, then person box of real | with; each cell padded by 2 px.
    assert strip.shape == (3 * 122, 2 * 122 + 2 * 82, 3)
    below_label = slice(20, 120)
    for t in range(3):
        x0, y0, x1, y1 = faces[t] if faces[t] is not None else (0, 0, 80, 60)  # no face box: the whole frame
        face = cv2.resize(np.ascontiguousarray(fake[t, y0:y1, x0:x1]), (120, 120), interpolation=cv2.INTER_NEAREST)
        row = strip[t * 122 : t * 122 + 120]
        np.testing.assert_array_equal(row[below_label, 122:242], face[below_label])
        x0, y0, x1, y1 = boxes[t]
        person = cv2.resize(np.ascontiguousarray(real[t, y0:y1, x0:x1]), (80, 120), interpolation=cv2.INTER_NEAREST)
        np.testing.assert_array_equal(row[below_label, 244:324], person[below_label])


def _walking(shared: Path, dx: float, n: int = 5) -> np.ndarray:
    img = cv2.cvtColor(cv2.imread(str(shared / "data" / "images" / "squat.png")), cv2.COLOR_BGR2RGB)
    h, w = img.shape[:2]
    shifts = [np.float32([[1, 0, dx * t], [0, 1, 3 * t]]) for t in range(n)]
    return np.stack([cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REPLICATE) for m in shifts])


def test_one_pose_check_estimator_serves_every_session_each_tracked_afresh(shared_dir):
    from vision.pose import load_estimator

    models = shared_dir / "models"
    first, second = _walking(shared_dir, 12.0), _walking(shared_dir, -9.0)
    found = load_estimator("auto", models)
    poses = np.stack([found.estimate(f, key="poses")[0].keypoints for f in second])
    poses[:, :, 0] += 4.0  # the poses asked for, a little off what the frames show

    def fresh(frames: np.ndarray) -> float:  # what a session's own, newly loaded estimator measures
        estimator = load_estimator("auto", models)

        def estimate(image: np.ndarray) -> np.ndarray:
            persons = estimator.estimate(image, key="eval")
            return persons[0].keypoints if persons else empty_keypoints()

        return frames_pose_error(frames, poses, estimate)

    shared = evaluation.held_out_estimator(models)  # the trainer process's one (trainer.estimators)
    measured = [
        evaluation._pose_error(shared, session, {"cam0": (None, frames, None, poses)})["pose_error"]
        for session, frames in (("one", first), ("two", second), ("one", second))
    ]
    assert measured == [fresh(first), fresh(second), fresh(second)]
    assert 0 < measured[1] < 0.1
    # One that could not be made: no figure, and the evaluation goes on.
    assert evaluation._pose_error(OSError("no model"), "one", {"cam0": (None, first, None, poses)}) == {}
