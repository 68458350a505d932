"""MoveNet on the CPU against Coral's reference keypoints for the squat photo."""

import csv
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest

from vision.pose import load_estimator

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
MODELS = SHARED / "models"
REFERENCE = MODELS / "coral" / "movenet_single_pose_lightning_ptq_reference.csv"
# Coral's own test compares keypoints scoring above 0.4 in both runs, within 0.04 of the image
# size, and wants at least half of the 17 checked. Its input was the photo stretched to 192x192.
SCORE_THRESHOLD = 0.4
CORAL_TOLERANCE = 0.04
# The default letterbox input sees the photo differently from the reference run (padding instead
# of squashing), so its keypoints may move a little more: 6% of the image size (30 px on 500 px).
LETTERBOX_TOLERANCE = 0.06

pytestmark = pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared folder absent: {SHARED}")


def load_rgb(name):
    return cv2.cvtColor(cv2.imread(str(SHARED / "data" / "images" / name)), cv2.COLOR_BGR2RGB)


def reference():
    with open(REFERENCE) as f:
        rows = list(csv.DictReader(f))
    assert [int(r["keypoint_id"]) for r in rows] == list(range(17))
    # keypoint_x / keypoint_y are fractions of the image width / height (Coral divides by the
    # input size); scores are the quantized model's.
    return np.array([[float(r["keypoint_x"]), float(r["keypoint_y"]), float(r["keypoint_score"])] for r in rows])


@pytest.fixture(scope="module")
def squat():
    return load_rgb("squat.png")


def compare(estimator, image, tolerance):
    h, w = image.shape[:2]
    (person,) = estimator.estimate(image)
    ref = reference()
    got = person.keypoints.astype(np.float64) / [w, h, 1]
    checked = (ref[:, 2] > SCORE_THRESHOLD) & (got[:, 2] > SCORE_THRESHOLD)
    assert checked.sum() >= 8, f"only {checked.sum()} keypoints confident in both"
    error = np.abs(got[checked, :2] - ref[checked, :2]).max()
    assert error <= tolerance, f"max keypoint error {error:.3f} of image size > {tolerance}"
    return person


def test_stretched_input_matches_coral_reference(squat):
    estimator = load_estimator("movenet", MODELS, resize="stretch", track=False, device="cpu")
    person = compare(estimator, squat, CORAL_TOLERANCE)
    assert person.keypoints.dtype == np.float32 and person.keypoints.shape == (17, 3)
    assert person.extra is None and person.mask is None


def test_default_letterbox_input_matches_coral_reference(squat):
    compare(load_estimator("movenet", MODELS, track=False), squat, LETTERBOX_TOLERANCE)


def test_no_person_in_a_blank_frame():
    estimator = load_estimator("movenet", MODELS)
    assert estimator.estimate(np.full((480, 640, 3), 128, np.uint8), key="blank") == []


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((480, 640), np.uint8), "shape"),
        (np.zeros((480, 640, 4), np.uint8), "shape"),
        (np.zeros((480, 640, 3), np.float32), "uint8"),
    ],
)
def test_bad_frames_are_rejected_with_a_clear_error(bad, message):
    estimator = load_estimator("movenet", MODELS)
    with pytest.raises(ValueError, match=message):
        estimator.estimate(bad)


def test_concurrent_calls_give_the_sequential_results(squat):
    walking = load_rgb("two_people_walking.png")
    estimator = load_estimator("movenet", MODELS, num_threads=1, track=False)
    frames = [squat, walking] * 4
    sequential = [estimator.estimate(f)[0].keypoints for f in frames]
    with ThreadPoolExecutor(max_workers=2) as pool:
        parallel = [p[0].keypoints for p in pool.map(estimator.estimate, frames)]
    for a, b in zip(sequential, parallel):
        np.testing.assert_array_equal(a, b)


def test_tracking_crops_around_the_person(squat):
    estimator = load_estimator("movenet", MODELS)
    first = estimator.estimate(squat, key="cam")[0]
    crop = estimator._crops["cam"]
    xs, ys = first.keypoints[:, 0], first.keypoints[:, 1]
    assert xs.min() > crop.cx - crop.side / 2 and xs.max() < crop.cx + crop.side / 2
    assert ys.min() > crop.cy - crop.side / 2 and ys.max() < crop.cy + crop.side / 2
    assert crop.side < max(squat.shape[:2])  # zoomed in on the person, not the whole frame
    estimator.reset("cam")
    assert "cam" not in estimator._crops
