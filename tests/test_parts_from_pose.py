"""Body parts derived from keypoints and a person mask (no BodyPix)."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from schemas.keypoints import INDEX, SKELETON
from vision.parts import PART_ID
from vision.parts.from_pose import PoseDerivedSegmenter, facing_camera, parts_from_persons, parts_from_pose
from vision.pose.base import Person

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SQUAT = SHARED / "data" / "images" / "squat.png"

# A person facing the camera (their left on the image's right), in a 200 x 300 image.
FRONT = np.array(
    [
        (100, 40),
        (106, 35),
        (94, 35),
        (112, 38),
        (88, 38),
        (125, 75),
        (75, 75),
        (140, 115),
        (60, 115),
        (150, 150),
        (50, 150),
        (115, 150),
        (85, 150),
        (118, 210),
        (82, 210),
        (120, 265),
        (80, 265),
    ],
    np.float32,
)


def pose(xy: np.ndarray) -> np.ndarray:
    return np.column_stack([xy, np.ones(17, np.float32)])


def body_mask(kps: np.ndarray, size=(200, 300)) -> np.ndarray:
    """Thick limbs, a filled torso and a head: a plausible person mask."""
    mask = np.zeros((size[1], size[0]), np.uint8)
    pts = np.round(kps[:, :2]).astype(int)
    for a, b in SKELETON:
        cv2.line(mask, tuple(map(int, pts[a])), tuple(map(int, pts[b])), 1, 12)
    cv2.fillPoly(mask, [pts[[5, 6, 12, 11]]], 1)
    cv2.circle(mask, tuple(map(int, pts[0])), 18, 1, -1)
    for end, base in ((9, 7), (10, 8), (15, 13), (16, 14)):  # hands and feet
        centre = np.round(pts[end] + (pts[end] - pts[base]) * 0.2).astype(int)
        cv2.circle(mask, (int(centre[0]), int(centre[1])), 7, 1, -1)
    return mask.astype(bool)


def label_at(parts: np.ndarray, xy) -> str:
    names = {v: k for k, v in PART_ID.items()}
    return names.get(int(parts[int(xy[1]), int(xy[0])]), "background")


def test_each_limb_gets_its_part_and_the_mask_is_covered():
    kps = pose(FRONT)
    mask = body_mask(kps)
    parts = parts_from_pose(kps, mask)
    assert parts.dtype == np.uint8 and parts.shape == mask.shape
    assert ((parts > 0) == mask).all()
    mid = lambda a, b: (kps[INDEX[a], :2] + kps[INDEX[b], :2]) / 2  # noqa: E731
    assert label_at(parts, mid("left_elbow", "left_wrist")) == "left_lower_arm_front"
    assert label_at(parts, mid("right_shoulder", "right_elbow")) == "right_upper_arm_front"
    assert label_at(parts, mid("left_hip", "left_knee")) == "left_upper_leg_front"
    assert label_at(parts, mid("right_knee", "right_ankle")) == "right_lower_leg_front"
    assert label_at(parts, mid("left_shoulder", "right_hip")) == "torso_front"
    assert label_at(parts, kps[INDEX["left_eye"], :2] + (3, 0)) == "left_face"
    assert label_at(parts, kps[INDEX["right_eye"], :2] - (3, 0)) == "right_face"
    assert label_at(parts, kps[INDEX["left_wrist"], :2] + (3, 4)) == "left_hand"
    assert label_at(parts, kps[INDEX["right_ankle"], :2] + (0, 8)) == "right_foot"


def test_back_view_uses_back_parts():
    back = FRONT.copy()
    back[:, 0] = 200 - back[:, 0]  # mirrored: the person's left is now on the image's left
    kps = pose(back)
    assert facing_camera(pose(FRONT)) and not facing_camera(kps)
    parts = parts_from_pose(kps, body_mask(kps))
    present = set(np.unique(parts)) - {0}
    assert PART_ID["torso_back"] in present and PART_ID["torso_front"] not in present
    assert PART_ID["left_upper_leg_back"] in present


def test_missing_keypoints_drop_their_limbs():
    kps = pose(FRONT)
    kps[[INDEX["left_elbow"], INDEX["left_wrist"]], 2] = 0.0
    parts = parts_from_pose(kps, body_mask(pose(FRONT)))
    present = set(np.unique(parts))
    assert PART_ID["left_lower_arm_front"] not in present and PART_ID["left_hand"] not in present
    assert PART_ID["right_lower_arm_front"] in present
    nothing = parts_from_pose(np.zeros((17, 3), np.float32), body_mask(pose(FRONT)))
    assert not nothing.any()


def test_several_people_and_bad_input():
    a = Person(pose(FRONT), 0.9, mask=body_mask(pose(FRONT), (400, 300)).astype(np.float32))
    shifted = pose(FRONT + (200, 0))
    b = Person(shifted, 0.8, mask=body_mask(shifted, (400, 300)).astype(np.float32))
    result = parts_from_persons([a, b], (400, 300))
    assert set(np.unique(result.person_ids)) == {0, 1, 2}
    assert (result.person_ids[:, :200] != 2).all() and (result.person_ids[:, 200:] != 1).all()
    assert (result.person_parts(1) > 0).sum() == (b.mask > 0.5).sum()
    with pytest.raises(ValueError, match="has no mask"):
        parts_from_persons([Person(pose(FRONT), 0.9)], (200, 300))
    with pytest.raises(ValueError, match="keypoints must have shape"):
        parts_from_pose(np.zeros((5, 3)), np.ones((10, 10), bool))


@pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared folder absent: {SHARED}")
def test_squat_from_blazepose_mask():
    from vision.pose import load_estimator

    estimator = load_estimator("blazepose", SHARED / "models", 1, with_mask=True)
    image = cv2.cvtColor(cv2.imread(str(SQUAT)), cv2.COLOR_BGR2RGB)
    result = PoseDerivedSegmenter(estimator).segment(image)
    assert result.source == "pose" and len(result.persons) == 1
    person = result.persons[0]
    mask = person.mask > 0.5
    assert 0.05 < mask.mean() < 0.5
    assert ((result.part_ids > 0) == mask).all()  # every mask pixel has a part
    counts = np.bincount(result.part_ids[mask], minlength=25)
    for name in (
        "torso_front",
        "left_face",
        "left_upper_leg_front",
        "right_upper_leg_front",
        "left_lower_leg_front",
        "right_lower_leg_front",
        "left_foot",
        "right_foot",
    ):
        assert counts[PART_ID[name]] > 200, name
    kps = person.keypoints
    for side in ("left", "right"):
        assert label_at(result.part_ids, kps[INDEX[f"{side}_knee"], :2]).startswith(f"{side}_")
        assert label_at(result.part_ids, kps[INDEX[f"{side}_ankle"], :2]) in (f"{side}_lower_leg_front", f"{side}_foot")
    face_y = np.nonzero(np.isin(result.part_ids, [PART_ID["left_face"], PART_ID["right_face"]]))[0]
    assert np.median(face_y) < kps[[5, 6], 1].min()
    torso_y = np.nonzero(result.part_ids == PART_ID["torso_front"])[0].mean()
    assert kps[[5, 6], 1].min() - 10 < torso_y < kps[[11, 12], 1].max() + 10
