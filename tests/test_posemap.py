import numpy as np
import pytest

from schemas.keypoints import INDEX, NUM_KEYPOINTS, SKELETON
from trainer.pix2pix.synthetic import random_pose
from vision.posemap import (
    KEYPOINT_COLOUR,
    LIMB_COLOURS,
    Letterbox,
    draw_pose_overlay,
    letterbox_image,
    render_pose_map,
    render_pose_maps,
)


def _limb_only(limb: int, src: int = 200) -> np.ndarray:
    """A pose where only the two ends of one limb are confident, far apart."""
    pose = np.zeros((NUM_KEYPOINTS, 3), np.float32)
    a, b = SKELETON[limb]
    pose[a] = (0.2 * src, 0.3 * src, 0.9)
    pose[b] = (0.8 * src, 0.7 * src, 0.9)
    return pose


def test_each_limb_has_its_fixed_colour():
    assert len(set(LIMB_COLOURS)) == len(SKELETON)  # distinguishable limbs
    for limb, colour in enumerate(LIMB_COLOURS):
        img = render_pose_map(_limb_only(limb), (200, 200), 128)
        mid = (0.5 * 128, 0.5 * 128)  # halfway between the ends, in output pixels
        assert tuple(img[int(mid[1]), int(mid[0])]) == colour, f"limb {SKELETON[limb]}"
        # The only fully saturated colours are this limb's and the joints' dots.
        colours = {tuple(c) for c in img.reshape(-1, 3) if np.ptp(c) == 255 or c.min() == 255}
        assert colours <= {colour, KEYPOINT_COLOUR}


def test_rendering_is_deterministic_and_batch_matches_single():
    rng = np.random.default_rng(0)
    poses = np.stack([random_pose((320, 240), rng) for _ in range(3)])
    batch = render_pose_maps(poses, (320, 240), 64)
    assert batch.shape == (3, 64, 64, 3) and batch.dtype == np.uint8
    for p, img in zip(poses, batch):
        assert np.array_equal(img, render_pose_map(p, (320, 240), 64))


def test_figure_lands_where_the_keypoints_are():
    rng = np.random.default_rng(1)
    pose = random_pose((640, 480), rng)
    img = render_pose_map(pose, (640, 480), 128)
    # Documented mapping: s = min(128/640, 128/480) = 0.2 -> 128 x 96, centred: oy = 16.
    xy = pose[:, :2] * 0.2 + np.array([0, 16])
    for x, y in xy:
        assert img[int(y), int(x)].min() >= 200, "a joint dot (white) at each keypoint"
    drawn = np.argwhere(img.max(axis=2) > 0)[:, ::-1]  # (x, y) of pixel [i, i+1) x [j, j+1)
    lo, hi = xy.min(0) - 4, xy.max(0) + 4  # dots and lines reach a few pixels past the joints
    assert (drawn + 1 >= lo).all() and (drawn <= hi).all()
    assert np.allclose(Letterbox.fit((640, 480), 128).to_output(pose[:, :2]), xy, atol=1e-4)


def test_low_score_keypoints_and_their_limbs_are_skipped():
    pose = random_pose((256, 256), np.random.default_rng(2))
    wrist = INDEX["left_wrist"]
    pose[wrist, 2] = 0.1
    img = render_pose_map(pose, (256, 256), 256, score_threshold=0.2)
    forearm = LIMB_COLOURS[SKELETON.index((INDEX["left_elbow"], wrist))]
    assert not (img == forearm).all(axis=2).any()
    x, y = pose[wrist, :2]
    assert img[int(y), int(x)].min() < 200 or np.hypot(*(pose[wrist, :2] - pose[INDEX["left_elbow"], :2])) < 4
    pose[wrist, 2] = 0.5
    assert (render_pose_map(pose, (256, 256), 256) == forearm).all(axis=2).any()


def _line_width(size: int) -> int:
    pose = np.zeros((NUM_KEYPOINTS, 3), np.float32)
    pose[5] = (10, 50, 1)
    pose[6] = (90, 50, 1)  # a horizontal shoulder line across the middle
    img = render_pose_map(pose, (100, 100), size)
    column = img[:, size // 2]
    return int((column == LIMB_COLOURS[SKELETON.index((5, 6))]).all(axis=1).sum())


def test_line_thickness_is_relative_to_output_size():
    small, large = _line_width(128), _line_width(512)
    assert small >= 1 and 2.5 <= large / small <= 4.5  # 4x the size, about 4x the width


def test_letterboxed_photo_matches_pose_mapping():
    photo = np.zeros((100, 200, 3), np.uint8)
    photo[50:70, 100:120] = 255  # a square centred at (110, 60) in continuous coordinates
    out = letterbox_image(photo, 64)
    assert out.shape == (64, 64, 3)
    ys, xs = np.nonzero(out[..., 0] > 0)
    w = out[ys, xs, 0].astype(float)
    centre = np.array([(xs * w).sum() / w.sum() + 0.5, (ys * w).sum() / w.sum() + 0.5])
    expected = Letterbox.fit((200, 100), 64).to_output(np.array([110.0, 60.0]))
    assert np.allclose(centre, expected, atol=0.5)
    assert out[:16].max() == 0 and out[48:].max() == 0  # black bars above and below


def test_overlay_draws_on_a_copy():
    photo = np.full((120, 160, 3), 40, np.uint8)
    pose = _limb_only(SKELETON.index((5, 6)), src=120)
    over = draw_pose_overlay(photo, pose)
    assert photo.max() == 40
    assert tuple(over[60, 60]) == LIMB_COLOURS[SKELETON.index((5, 6))]
    half = draw_pose_overlay(photo, pose, alpha=0.5)
    assert 40 < half[60, 60].max() < 255


@pytest.mark.parametrize("bad", [np.zeros((17, 2)), np.zeros((18, 3)), np.zeros(51)])
def test_bad_pose_shape_is_rejected(bad):
    with pytest.raises(ValueError, match="shape"):
        render_pose_map(bad, (100, 100), 64)


def test_bad_sizes_are_rejected():
    with pytest.raises(ValueError, match="positive"):
        render_pose_map(np.zeros((17, 3)), (0, 100), 64)
    with pytest.raises(ValueError, match="uint8"):
        letterbox_image(np.zeros((10, 10, 3), np.float32), 32)


# The person's left and right keypoints swapped: the same figure seen from behind.
_TURNED = [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15]


def test_facing_is_told_from_the_shoulders_whatever_the_distance():
    from vision.posemap import facing

    front = random_pose((200, 200), np.random.default_rng(5))
    assert facing(front) == 1.0 and facing(front[_TURNED]) == -1.0
    far = front.copy()
    far[:, :2] *= 0.3
    assert facing(far) == 1.0
    profile = front.copy()
    profile[[5, 6, 11, 12], 0] = profile[[5, 6, 11, 12], 0].mean()
    assert facing(profile) == 0.0
    unknown = front.copy()
    unknown[[5, 6, 11, 12], 2] = 0.0
    assert facing(unknown) == 0.0


def test_the_facing_style_fills_the_torso_front_warm_back_cold_and_keeps_the_stick_figure():
    from vision.posemap import BACK_COLOUR, FRONT_COLOUR, LEFT_FACE, RIGHT_FACE

    front = random_pose((128, 128), np.random.default_rng(5))
    stick = render_pose_map(front, 128, 128)
    assert np.array_equal(stick, render_pose_map(front, 128, 128, style="stick"))  # the original, unchanged
    seen_front = render_pose_map(front, 128, 128, style="facing")
    seen_back = render_pose_map(front[_TURNED], 128, 128, style="facing")
    centre = np.round(front[[5, 6, 11, 12], :2].mean(0)).astype(int)
    assert tuple(seen_front[centre[1], centre[0]]) == tuple(FRONT_COLOUR.astype(int))
    assert tuple(seen_back[centre[1], centre[0]]) == tuple(BACK_COLOUR.astype(int))
    assert stick[centre[1], centre[0]].sum() == 0
    # Limbs are drawn as in the stick figure, over the fill; eyes carry their side's colour.
    for limb in range(8, 16):  # arms and legs: the same colour at each bone's middle
        a, b = SKELETON[limb]
        mid = np.floor((front[a, :2] + front[b, :2]) / 2).astype(int)
        assert tuple(seen_front[mid[1], mid[0]]) == tuple(stick[mid[1], mid[0]]) == LIMB_COLOURS[limb]
    eye = np.round(front[1, :2] - 0.5).astype(int)
    assert tuple(seen_front[eye[1], eye[0]]) == LEFT_FACE and tuple(seen_back[eye[1], eye[0]]) == RIGHT_FACE
    with pytest.raises(ValueError, match="unknown pose-map style"):
        render_pose_map(front, 128, 128, style="shaded")
