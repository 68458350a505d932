"""BlazePose: anchors, keypoints on the people in the shared photos, mask, tracking per key."""

import csv
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest

from schemas.keypoints import INDEX
from vision.pose import load_estimator
from vision.pose.blazepose import COCO_FROM_BLAZEPOSE, Roi, ssd_anchors

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
MODELS = SHARED / "models"
CONFIDENT = 0.5

pytestmark = pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared folder absent: {SHARED}")


def load_rgb(name):
    return cv2.cvtColor(cv2.imread(str(SHARED / "data" / "images" / name)), cv2.COLOR_BGR2RGB)


def reference_boxes(csv_name, image, margin=0.15):
    """Each reference pose's keypoint bounding box in pixels, grown by margin of its size on each
    side (reference keypoints are joints, the body extends beyond them)."""
    h, w = image.shape[:2]
    with open(MODELS / "coral" / csv_name) as f:
        rows = list(csv.DictReader(f))
    boxes = []
    for pose_id in sorted({r["pose_id"] for r in rows}):
        pts = np.array(
            [[float(r["keypoint_x"]) * w, float(r["keypoint_y"]) * h] for r in rows if r["pose_id"] == pose_id]
        )
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        grow = (hi - lo) * margin
        boxes.append((*(lo - grow), *(hi + grow)))
    return boxes


def inside(points, box):
    x0, y0, x1, y1 = box
    return (points[:, 0] >= x0) & (points[:, 0] <= x1) & (points[:, 1] >= y0) & (points[:, 1] <= y1)


def assert_upright_person_in(person, boxes):
    kp = person.keypoints
    confident = kp[:, 2] > CONFIDENT
    assert confident.sum() >= 12, f"only {confident.sum()} confident keypoints"
    fractions = [inside(kp[confident], box).mean() for box in boxes]
    assert max(fractions) >= 0.9, f"confident keypoints inside the reference boxes: {fractions}"
    y = {name: kp[i, 1] for name, i in INDEX.items()}
    assert y["nose"] < min(y["left_shoulder"], y["right_shoulder"])
    assert max(y["left_shoulder"], y["right_shoulder"]) < min(y["left_hip"], y["right_hip"])
    assert max(y["left_hip"], y["right_hip"]) < min(y["left_ankle"], y["right_ankle"])
    return boxes[int(np.argmax(fractions))]


def test_anchors_match_the_detector_output():
    anchors = ssd_anchors()
    # 28x28 and 14x14 maps with 2 anchors per cell, then three stride-32 layers sharing a 7x7 map.
    assert len(anchors) == 28 * 28 * 2 + 14 * 14 * 2 + 7 * 7 * 6 == 2254
    np.testing.assert_allclose(anchors[0], anchors[1])
    np.testing.assert_allclose(anchors[0], [0.5 / 28, 0.5 / 28])
    np.testing.assert_allclose(anchors[2], [1.5 / 28, 0.5 / 28])
    np.testing.assert_allclose(anchors[1568], [0.5 / 14, 0.5 / 14])
    np.testing.assert_allclose(anchors[-6:], [[6.5 / 7, 6.5 / 7]] * 6)


def test_roi_maps_the_crop_centre_and_up_direction():
    # Body circle centred at (100, 200) with the scale point straight to the right: the crop's
    # "up" must point right in the image (person lying down), its side 2 * 50 * 1.25.
    roi = Roi.from_alignment(np.array([100.0, 200.0]), np.array([150.0, 200.0]))
    assert roi.size == pytest.approx(125.0)
    m = roi.crop_to_image(256)
    centre = m[:, :2] @ [128, 128] + m[:, 2]
    top = m[:, :2] @ [128, 0] + m[:, 2]
    np.testing.assert_allclose(centre, [100, 200], atol=1e-9)
    np.testing.assert_allclose(top, [162.5, 200], atol=1e-9)


@pytest.fixture(scope="module")
def estimator():
    return load_estimator("blazepose", MODELS)


def test_keypoints_land_on_the_squatting_person(estimator):
    image = load_rgb("squat.png")
    (person,) = estimator.estimate(image, key="squat")
    box = assert_upright_person_in(person, reference_boxes("movenet_single_pose_lightning_ptq_reference.csv", image))
    assert person.score > 0.5
    assert person.extra.shape == (33, 4) and person.extra.dtype == np.float32
    np.testing.assert_array_equal(person.keypoints[:, :2], person.extra[list(COCO_FROM_BLAZEPOSE), :2])
    # The mask covers the person, not the wall.
    mask = person.mask
    assert mask.shape == image.shape[:2] and 0.0 <= mask.min() and mask.max() <= 1.0
    x0, y0, x1, y1 = (int(v) for v in box)
    outside = np.ones_like(mask, bool)
    outside[max(y0, 0) : y1, max(x0, 0) : x1] = False
    assert mask[max(y0, 0) : y1, max(x0, 0) : x1].mean() > 0.3
    assert mask[outside].mean() < 0.05
    torso = person.keypoints[
        [INDEX["left_shoulder"], INDEX["right_shoulder"], INDEX["left_hip"], INDEX["right_hip"]], :2
    ].mean(axis=0)
    assert mask[int(torso[1]), int(torso[0])] > 0.9


def test_keypoints_land_on_one_of_the_two_walkers(estimator):
    image = load_rgb("two_people_walking.png")
    (person,) = estimator.estimate(image, key="walk")
    assert_upright_person_in(
        person, reference_boxes("posenet_mobilenet_v1_075_481_641_16_quant_decoder_reference.csv", image)
    )


def test_tracking_skips_the_detector_and_keys_are_independent(estimator):
    squat, walking = load_rgb("squat.png"), load_rgb("two_people_walking.png")
    estimator.reset()
    runs = estimator.detector_runs
    for _ in range(3):
        assert estimator.estimate(squat, key="a")
        assert estimator.estimate(walking, key="b")
    assert estimator.detector_runs - runs == 2  # once per key, then tracked
    estimator.reset("a")
    estimator.estimate(squat, key="a")
    assert estimator.detector_runs - runs == 3


def test_lost_person_triggers_a_new_detection(estimator):
    squat = load_rgb("squat.png")
    estimator.reset()
    assert estimator.estimate(squat, key="c")
    runs = estimator.detector_runs
    blank = np.full_like(squat, 200)
    assert estimator.estimate(blank, key="c") == []
    assert estimator.detector_runs == runs + 1
    assert estimator.estimate(squat, key="c")  # found again from scratch
    assert estimator.detector_runs == runs + 2


def test_lite_model_and_no_mask_options():
    lite = load_estimator("blazepose", MODELS, model="lite", with_mask=False, track=False)
    image = load_rgb("squat.png")
    (person,) = lite.estimate(image)
    assert person.mask is None
    assert_upright_person_in(person, reference_boxes("movenet_single_pose_lightning_ptq_reference.csv", image))
    with pytest.raises(ValueError, match="heavy"):
        load_estimator("blazepose", MODELS, model="heavy")


def test_concurrent_calls_give_the_sequential_results():
    estimator = load_estimator("blazepose", MODELS, track=False, with_mask=False)
    frames = [load_rgb("squat.png"), load_rgb("two_people_walking.png")] * 3
    sequential = [estimator.estimate(f)[0].extra for f in frames]
    with ThreadPoolExecutor(max_workers=2) as pool:
        parallel = [p[0].extra for p in pool.map(estimator.estimate, frames)]
    for a, b in zip(sequential, parallel):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("angle", [45, 90, 180])
def test_rotated_person_is_found_through_the_rotated_crop(angle):
    # The detector's alignment points set the crop's rotation: a tilted, sideways or upside-down
    # person must give the upright pose, rotated. Median error under 4% of the person's height.
    estimator = load_estimator("blazepose", MODELS, track=False, with_mask=False)
    image = load_rgb("squat.png")
    upright = estimator.estimate(image)[0].keypoints
    h, w = image.shape[:2]
    affine = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 0.7)
    affine[:, 2] += [70, 50]
    rotated = cv2.warpAffine(image, affine, (640, 640), borderValue=(200, 200, 200))
    (person,) = estimator.estimate(rotated)
    expected = upright[:, :2] @ affine[:, :2].T + affine[:, 2]
    error = np.linalg.norm(person.keypoints[:, :2] - expected, axis=1) / 0.7
    assert np.median(error) < 0.04 * np.ptp(upright[:, 1])
