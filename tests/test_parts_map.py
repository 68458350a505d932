"""Part maps as generator input: placement, per-person shades, face blend, representation kinds."""

import colorsys

import numpy as np
import pytest

from vision.parts.colours import PALETTE, PART_ID, person_palette
from vision.partsmap import KINDS, colour_parts, render_parts_map, render_representation
from vision.posemap import LIMB_COLOURS, Letterbox, render_pose_map

FACE = np.array(
    [
        (300, 100),
        (310, 92),
        (290, 92),
        (322, 96),
        (278, 96),
        (330, 140),
        (270, 140),
        (340, 200),
        (260, 200),
        (345, 250),
        (255, 250),
        (320, 260),
        (280, 260),
        (322, 340),
        (278, 340),
        (324, 420),
        (276, 420),
    ],
    np.float32,
)
POSE = np.column_stack([FACE, np.ones(17, np.float32)])


def part_map() -> np.ndarray:
    ids = np.zeros((480, 640), np.uint8)
    ids[80:130, 270:330] = PART_ID["left_face"]
    ids[135:260, 270:330] = PART_ID["torso_front"]
    ids[135:260, 400:460] = PART_ID["torso_front"]  # a second person's torso
    return ids


def test_parts_are_letterboxed_like_pose_maps():
    ids = part_map()
    out = render_parts_map(ids, [], 256, face=False)
    assert out.shape == (256, 256, 3) and out.dtype == np.uint8
    box = Letterbox.fit((640, 480), 256)  # 256 x 192, 32 px bars above and below
    assert not out[: box.oy].any() and not out[box.oy + 192 :].any()
    x, y = box.to_output(np.array([300.0, 200.0]))
    assert (out[int(y), int(x)] == PALETTE[PART_ID["torso_front"]]).all()
    x, y = box.to_output(np.array([300.0, 100.0]))
    assert (out[int(y), int(x)] == PALETTE[PART_ID["left_face"]]).all()
    # Ids are resized nearest-neighbour: only palette colours appear, never blends.
    colours = np.unique(out.reshape(-1, 3), axis=0)
    assert all((PALETTE == c).all(axis=1).any() for c in colours)


def test_each_person_has_their_own_shade_of_the_same_hues():
    ids = part_map()
    people = np.zeros_like(ids)
    people[:, :380] = 1
    people[:, 380:] = 2
    rgb = colour_parts(ids, people)
    first, second = rgb[200, 300], rgb[200, 430]
    assert (first == PALETTE[PART_ID["torso_front"]]).all()
    assert (second == person_palette(1)[PART_ID["torso_front"]]).all() and not (first == second).all()
    h1, _, v1 = colorsys.rgb_to_hsv(*(first / 255))
    h2, _, v2 = colorsys.rgb_to_hsv(*(second / 255))
    assert abs(h1 - h2) < 0.02 and v2 < 0.8 * v1  # same part, darker person
    assert (person_palette(3)[0] == 0).all() and len({tuple(person_palette(k)[5]) for k in range(4)}) == 4


def test_face_keypoints_are_drawn_over_the_parts():
    ids = part_map()
    plain = render_parts_map(ids, [POSE], 256, face=False)
    blended = render_representation("pose+parts", poses=POSE, src_size=(640, 480), out_size=256, part_ids=ids)
    changed = np.argwhere((plain != blended).any(axis=2))
    assert len(changed) > 20
    face_out = Letterbox.fit((640, 480), 256).to_output(FACE[:5])
    lo, hi = face_out.min(axis=0) - 6, face_out.max(axis=0) + 6
    assert (
        (changed[:, 1] >= lo[0]) & (changed[:, 1] <= hi[0]) & (changed[:, 0] >= lo[1]) & (changed[:, 0] <= hi[1])
    ).all()  # only the face changed
    assert (blended == 255).all(axis=2).any()  # keypoint dots
    assert render_representation("parts", poses=POSE, part_ids=ids).tolist() == plain.tolist()


def test_pose_representation_is_the_stick_figure():
    one = render_representation("pose", poses=POSE, src_size=(640, 480), out_size=256)
    np.testing.assert_array_equal(one, render_pose_map(POSE, (640, 480), 256))
    other = POSE.copy()
    other[:, 0] += 150
    two = render_representation("pose", poses=[POSE, other], src_size=(640, 480), out_size=256)
    assert (two.any(axis=2) >= one.any(axis=2)).all() and two.any(axis=2).sum() > 1.5 * one.any(axis=2).sum()
    assert (two == LIMB_COLOURS[8]).all(axis=2).any()


def test_bad_requests_are_named():
    ids = part_map()
    with pytest.raises(ValueError, match="unknown representation"):
        render_representation("depth", part_ids=ids)
    with pytest.raises(ValueError, match="needs part_ids"):
        render_representation("parts", poses=POSE)
    with pytest.raises(ValueError, match="needs src_size"):
        render_representation("pose", poses=POSE)
    with pytest.raises(ValueError, match="differs from the part map"):
        render_representation("pose+parts", poses=POSE, src_size=(320, 240), part_ids=ids)
    with pytest.raises(ValueError, match="must lie in 0..24"):
        render_parts_map(np.full((4, 4), 25, np.uint8))
    assert KINDS == ("pose", "parts", "pose+parts")


def test_part_maps_follow_a_normalized_pose():
    from vision.partsmap import pose_transform, warp_ids

    moved = POSE.copy()
    moved[:, :2] = POSE[:, :2] * 0.5 + (40, 100)  # what a pose normalization does
    moved[3, 2] = 0.0  # an unconfident keypoint is ignored
    m = pose_transform(POSE, moved)
    np.testing.assert_allclose(m, [[0.5, 0, 40], [0, 0.5, 100]], atol=1e-4)
    ids = part_map()
    warped = warp_ids(ids, m, (640, 480))
    assert warped.shape == (480, 640)
    # The torso block [135:260, 270:330] lands at half size, shifted.
    assert warped[int(200 * 0.5 + 100), int(300 * 0.5 + 40)] == PART_ID["torso_front"]
    assert abs((warped == PART_ID["torso_front"]).sum() - (ids == PART_ID["torso_front"]).sum() / 4) < 200
    assert warped[10, 10] == 0 and set(np.unique(warped)) <= set(np.unique(ids))
    with pytest.raises(ValueError, match="two confident keypoints"):
        pose_transform(np.zeros((17, 3)), moved)
