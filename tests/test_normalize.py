import numpy as np
import pytest

from schemas.keypoints import INDEX
from trainer.normalize import Normalizer, fit_normalizer
from trainer.pix2pix.synthetic import random_pose

ANKLES = [INDEX["left_ankle"], INDEX["right_ankle"]]
HEAD = [0, 1, 2, 3, 4]


def _height(pose):
    return pose[ANKLES, 1].max() - pose[HEAD, 1].min()


def _place(template, x, ankle_y, height):
    """The template figure scaled to `height` with its lower ankle at (x, ankle_y)."""
    p = template.copy()
    base = np.array([p[:, 0].mean(), p[ANKLES, 1].max()])
    p[:, :2] = (p[:, :2] - base) * (height / _height(template)) + np.array([x, ankle_y])
    return p


def _walk(n, far, close, h_far, h_close, seed, x=300.0):
    """A person walking towards the camera: ankle from far to close, height growing linearly."""
    rng = np.random.default_rng(seed)
    out = []
    for a in np.linspace(far, close, n):
        t = (a - far) / (close - far)
        out.append(_place(random_pose(400, rng), x + rng.uniform(-20, 20), a, h_far + t * (h_close - h_far)))
    return np.stack(out)


def test_known_scale_and_offset_are_recovered_exactly():
    source = _walk(40, 200, 300, 150, 220, seed=0)
    s, b = 1.7, np.array([35.0, -60.0])
    target = source.copy()
    target[:, :, :2] = source[:, :, :2] * s + b
    norm = fit_normalizer(source, target)
    assert norm.scale_far == pytest.approx(s) and norm.scale_close == pytest.approx(s)
    out = norm.apply_sequence(source)
    assert np.allclose(out[:, :, :2], target[:, :, :2], atol=1e-2)
    assert np.array_equal(out[:, :, 2], source[:, :, 2])  # scores kept


def test_near_and_far_scales_map_source_extremes_onto_target_extremes():
    # Source walks 200 -> 300 with height 100 -> 160; target stands 350 -> 450, height 200 -> 260.
    source = _walk(50, 200, 300, 100, 160, seed=1)
    target = _walk(60, 350, 450, 200, 260, seed=2, x=500)
    norm = fit_normalizer(source, target, quantile=0.0, window=0.0)
    assert norm.scale_far == pytest.approx(2.0, rel=1e-3)
    assert norm.scale_close == pytest.approx(260 / 160, rel=1e-3)
    far, close, mid = norm.apply(source[0]), norm.apply(source[-1]), norm.apply(source[25])
    assert far[ANKLES, 1].max() == pytest.approx(350, abs=1e-2)
    assert _height(far) == pytest.approx(200, rel=1e-3)
    assert close[ANKLES, 1].max() == pytest.approx(450, abs=1e-2)
    assert _height(close) == pytest.approx(260, rel=1e-3)
    # Halfway in depth: halfway on the ground, scale halfway between the two.
    t = (source[25][ANKLES, 1].max() - 200) / 100
    assert mid[ANKLES, 1].max() == pytest.approx(350 + t * 100, abs=1e-2)
    expected_scale = 2.0 + t * (260 / 160 - 2.0)
    assert _height(mid) == pytest.approx(_height(source[25]) * expected_scale, rel=1e-3)
    # Horizontally, the source's median hip centre goes to the target's.
    assert abs(np.median(norm.apply_sequence(source)[:, [11, 12], 0].mean(1)) - 500) < 25


def test_source_standing_still_goes_to_the_middle_of_the_target_range():
    rng = np.random.default_rng(3)
    template = random_pose(400, rng)
    source = np.stack([_place(template, 200, 250 + rng.uniform(-0.5, 0.5), 120) for _ in range(20)])
    target = _walk(30, 300, 400, 200, 240, seed=4)
    norm = fit_normalizer(source, target)
    assert norm.degenerate
    out = norm.apply(source[0])
    assert out[ANKLES, 1].max() == pytest.approx(350, abs=1.0)
    assert _height(out) == pytest.approx(120 * 0.5 * (200 / 120 + 240 / 120), rel=1e-2)


def test_frames_without_ankles_borrow_them_from_neighbours():
    source = _walk(11, 200, 300, 100, 160, seed=5)
    target = _walk(20, 350, 450, 200, 260, seed=6)
    norm = fit_normalizer(source, target)
    blind = source.copy()
    blind[5, ANKLES, 2] = 0.0
    interpolated = 0.5 * (source[4, ANKLES, 1].max() + source[6, ANKLES, 1].max())
    out = norm.apply_sequence(blind)
    assert np.allclose(out[5], norm.apply(blind[5], ankle_y=interpolated), atol=1e-4)
    assert np.allclose(out[4], norm.apply(source[4]))


def test_dict_round_trip_gives_the_same_mapping():
    source = _walk(20, 200, 300, 100, 160, seed=7)
    target = _walk(20, 350, 450, 200, 260, seed=8)
    norm = fit_normalizer(source, target)
    again = Normalizer.from_dict(dict(norm.to_dict()))
    assert np.array_equal(again.apply_sequence(source), norm.apply_sequence(source))
    with pytest.raises(ValueError, match="lacks"):
        Normalizer.from_dict({"scale_far": 1.0})


def test_unusable_sequences_are_rejected_clearly():
    good = _walk(10, 200, 300, 100, 160, seed=9)
    no_ankles = good.copy()
    no_ankles[:, ANKLES, 2] = 0
    with pytest.raises(ValueError, match="target_poses: no frame has a confident ankle"):
        fit_normalizer(good, no_ankles)
    with pytest.raises(ValueError, match="source_poses must have shape"):
        fit_normalizer(good[:, :10], good)


def test_a_visitor_without_feet_is_matched_by_the_torso():
    from trainer.normalize import fit_body_normalizer

    rng = np.random.default_rng(3)
    source = np.stack([random_pose((400, 400), rng) for _ in range(10)])
    target = source.copy()
    target[:, :, :2] = target[:, :, :2] * 1.5 + [30.0, -20.0]  # larger and elsewhere
    target[:, [INDEX["left_ankle"], INDEX["right_ankle"]], 2] = 0.0  # the feet are below the frame
    with pytest.raises(ValueError, match="ankle"):
        fit_normalizer(source, target)
    n = fit_body_normalizer(source, target)
    assert n.scale == pytest.approx(1.5, rel=0.02)
    moved = n.apply(source[0])
    np.testing.assert_allclose(moved[:, :2], source[0, :, :2] * 1.5 + [30.0, -20.0], atol=3.0)
    with pytest.raises(ValueError, match="two confident keypoints"):
        fit_body_normalizer(source, np.zeros_like(target))
