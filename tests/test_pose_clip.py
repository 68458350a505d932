"""A photo moved and scaled over 60 frames: poses must follow the known transform."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from vision.pose import load_estimator
from vision.pose.synthetic import apply_affine, moving_photo_clip

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
MODELS = SHARED / "models"
N_FRAMES = 60
BOTH_CONFIDENT = 0.3
# Errors are measured in photo pixels (frame error divided by the frame's scale) and relative to
# the person's height in the photo (~355 px from nose to ankle). Every frame: the median keypoint
# error stays under 15% of that (a lost or swapped track fails this). Over the clip: the median of
# those per-frame medians is under 4% (measured: about 1.5%).
FRAME_TOLERANCE = 0.15
CLIP_TOLERANCE = 0.04

pytestmark = pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared folder absent: {SHARED}")


@pytest.fixture(scope="module")
def photo():
    return cv2.cvtColor(cv2.imread(str(SHARED / "data" / "images" / "squat.png")), cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def clip(photo):
    return moving_photo_clip(photo, n_frames=N_FRAMES, seed=0)


def test_clip_is_deterministic_smooth_and_faithful(photo, clip):
    assert len(clip) == N_FRAMES
    frame, affine = clip[0]
    assert frame.shape == (480, 640, 3) and frame.dtype == np.uint8 and affine.shape == (2, 3)
    again = moving_photo_clip(photo, n_frames=N_FRAMES, seed=0)
    np.testing.assert_array_equal(again[7][0], clip[7][0])
    assert not np.array_equal(moving_photo_clip(photo, n_frames=2, seed=1)[0][1], affine)
    # A photo pixel lands where the affine says (compare a patch to stay clear of resampling).
    h, w = photo.shape[:2]
    for frame, affine in clip[::10]:
        x, y = apply_affine(affine, [[w / 2, h / 2]])[0].round().astype(int)
        patch = frame[y - 2 : y + 3, x - 2 : x + 3].reshape(-1, 3).mean(axis=0)
        expected = photo[h // 2 - 3 : h // 2 + 4, w // 2 - 3 : w // 2 + 4].reshape(-1, 3).mean(axis=0)
        assert np.abs(patch - expected).max() < 25
    # It moves, and smoothly: the photo centre's speed changes by little from frame to frame.
    centres = np.array([apply_affine(a, [[w / 2, h / 2]])[0] for _, a in clip])
    steps = np.linalg.norm(np.diff(centres, axis=0), axis=1)
    jerks = np.linalg.norm(np.diff(centres, n=2, axis=0), axis=1)
    # (a cut or a jump would change the speed by tens of pixels in one frame)
    assert steps.sum() > 300 and steps.max() < 40 and jerks.max() < 10
    scales = np.array([np.sqrt(abs(np.linalg.det(a[:, :2]))) for _, a in clip])
    assert scales.max() / scales.min() > 1.5  # zooms too


def follow(estimator, photo, clip):
    estimator.estimate(photo, key="photo")
    reference = estimator.estimate(photo, key="photo")[0].keypoints  # the tracked estimate
    height = np.ptp(reference[:, 1])
    medians = []
    for i, (frame, affine) in enumerate(clip):
        people = estimator.estimate(frame, key="clip")
        assert people, f"no pose on frame {i}"
        kp = people[0].keypoints
        expected = apply_affine(affine, reference[:, :2])
        scale = np.sqrt(abs(np.linalg.det(affine[:, :2])))
        both = (reference[:, 2] > BOTH_CONFIDENT) & (kp[:, 2] > BOTH_CONFIDENT)
        assert both.sum() >= 8, f"frame {i}: only {both.sum()} confident keypoints"
        error = np.linalg.norm(kp[both, :2] - expected[both], axis=1) / scale / height
        medians.append(np.median(error))
        assert medians[-1] < FRAME_TOLERANCE, f"frame {i}: median error {medians[-1]:.1%} of height"
    assert np.median(medians) < CLIP_TOLERANCE, f"clip median error {np.median(medians):.1%}"


def test_movenet_follows_the_moving_photo(photo, clip):
    follow(load_estimator("movenet", MODELS), photo, clip)


def test_blazepose_with_tracking_follows_the_moving_photo(photo, clip):
    estimator = load_estimator("blazepose", MODELS, with_mask=False)
    follow(estimator, photo, clip)
    assert estimator.detector_runs <= 3  # one per key; tracking carries the rest
