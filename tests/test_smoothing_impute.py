"""Imputation: exact on motion it can represent, silent where it has nothing to go on."""

from __future__ import annotations

import numpy as np
import pytest

from schemas.keypoints import INDEX, NUM_KEYPOINTS
from vision.smoothing.impute import (
    anchor_offsets,
    confident_mask,
    estimate_from_anchors,
    extrapolate,
    impute_sequence,
    interpolate_gaps,
    person_present,
)
from vision.smoothing.synthetic import stick_figure

WRIST, ELBOW = INDEX["left_wrist"], INDEX["left_elbow"]


def _linear_motion(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Every keypoint moving at its own constant velocity, sampled at irregular times."""
    rng = np.random.default_rng(seed)
    times = np.cumsum(rng.uniform(0.02, 0.05, n))
    start = rng.uniform(100, 500, (NUM_KEYPOINTS, 2))
    velocity = rng.uniform(-200, 200, (NUM_KEYPOINTS, 2))
    return start + velocity * times[:, None, None], times


def _rigid(pose_xy: np.ndarray, angle: float, shift: tuple[float, float]) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return pose_xy @ np.array([[c, s], [-s, c]]) + np.array(shift)


def test_linear_interpolation_fills_gaps_exactly_for_linear_motion():
    xy, times = _linear_motion(40)
    available = np.ones(xy.shape[:2], bool)
    available[10:14, 3] = False  # a 4-frame gap
    available[20:21, 7] = False  # a 1-frame gap
    available[30:35, 9] = False  # a 5-frame gap, longer than max_gap
    corrupted = np.where(available[..., None], xy, -1.0)
    filled, imputed = interpolate_gaps(corrupted, available, times, max_gap=4)
    np.testing.assert_allclose(filled[10:14, 3], xy[10:14, 3], atol=1e-9)
    np.testing.assert_allclose(filled[20, 7], xy[20, 7], atol=1e-9)
    assert imputed[10:14, 3].all() and imputed[20, 7] and imputed.sum() == 5
    # The long gap is not even partly filled: no seam for the long-gap estimate to meet.
    assert not imputed[30:35, 9].any() and np.all(filled[30:35, 9] == -1.0)


def test_edge_gaps_are_held_only_when_short():
    xy, times = _linear_motion(20)
    available = np.ones(xy.shape[:2], bool)
    available[:3, 0] = False
    available[12:, 1] = False  # 8 frames at the end
    filled, imputed = interpolate_gaps(xy, available, times, max_gap=4)
    np.testing.assert_array_equal(filled[:3, 0], np.repeat(xy[3:4, 0], 3, axis=0))
    assert imputed[:3, 0].all() and not imputed[12:, 1].any()


def test_extrapolation_holds_runs_linear_or_decays_consistently():
    x, v = np.array([10.0, 20.0]), np.array([30.0, -60.0])
    held, v0 = extrapolate(x, v, 0.1, 0.0)
    np.testing.assert_array_equal(held, x)
    assert np.all(v0 == 0)
    linear, _ = extrapolate(x, v, 0.1, np.inf)
    np.testing.assert_allclose(linear, x + v * 0.1)
    # Step by step with decay equals the closed form x0 + v0 tau (1 - exp(-t / tau)).
    pos, vel = x, v
    for _ in range(5):
        pos, vel = extrapolate(pos, vel, 0.02, 0.05)
    np.testing.assert_allclose(pos, x + v * 0.05 * (1 - np.exp(-0.1 / 0.05)), atol=1e-12)


def test_rigidly_moved_body_is_rebuilt_exactly_from_anchors():
    truth, _ = stick_figure(1, seed=3)
    ref = truth[0, :, :2].astype(np.float64)
    offsets = anchor_offsets(ref, np.ones(NUM_KEYPOINTS, bool))
    now = _rigid(ref, 0.4, (35.0, -20.0))
    known = np.ones(NUM_KEYPOINTS, bool)
    known[[WRIST, ELBOW, INDEX["left_hip"]]] = False  # the wrist's chain must be rebuilt outwards
    placed, estimated = estimate_from_anchors(np.where(known[:, None], now, 0.0), known, offsets)
    np.testing.assert_allclose(placed, now, atol=1e-9)
    assert set(np.flatnonzero(estimated)) == {WRIST, ELBOW, INDEX["left_hip"]}


def test_single_anchor_gives_anchor_plus_offset_and_no_anchor_gives_nothing():
    offsets = np.full((NUM_KEYPOINTS, 6, 2), np.nan)
    offsets[WRIST, 0] = [5.0, 50.0]  # wrist relative to its first anchor, the elbow
    xy = np.zeros((NUM_KEYPOINTS, 2))
    xy[ELBOW] = [200.0, 100.0]
    known = np.zeros(NUM_KEYPOINTS, bool)
    known[ELBOW] = True
    placed, estimated = estimate_from_anchors(xy, known, offsets)
    np.testing.assert_allclose(placed[WRIST], [205.0, 150.0])
    assert np.flatnonzero(estimated).tolist() == [WRIST]
    _, estimated = estimate_from_anchors(xy, np.zeros(NUM_KEYPOINTS, bool), offsets)
    assert not estimated.any()


@pytest.mark.parametrize("turn,tolerance", [(0.0, 1e-9), (0.01, 1.0)])
def test_long_gap_in_a_sequence_is_estimated_from_the_skeleton_but_not_for_absent_frames(turn, tolerance):
    truth, _ = stick_figure(1, seed=5)
    ref = truth[0, :, :2].astype(np.float64)
    n = 60
    times = np.arange(n) / 30.0
    xy = np.stack([_rigid(ref, turn * i, (2.0 * i, -1.0 * i)) for i in range(n)])
    available = np.ones((n, NUM_KEYPOINTS), bool)
    available[10:40, WRIST] = False  # 30 frames: far beyond interpolation
    present = np.ones(n, bool)
    present[25] = False
    filled, imputed = impute_sequence(np.where(available[..., None], xy, 0.0), available, times, 4, present)
    gap = [i for i in range(10, 40) if i != 25]
    # Exact for a translating body; while it also turns (0.3 rad over the gap) the offsets are
    # blended linearly between both ends of the gap, which is close but not exact.
    np.testing.assert_allclose(filled[gap, WRIST], xy[gap, WRIST], atol=tolerance)
    assert imputed[gap, WRIST].all() and not imputed[25].any()


def test_person_presence_needs_enough_keypoints_and_some_torso():
    poses = np.zeros((3, NUM_KEYPOINTS, 3), np.float32)
    poses[0, :5, 2] = 0.9  # face only
    poses[1, [5, 9, 10], 2] = 0.9  # a shoulder and two wrists: too few
    poses[2, [0, 5, 7, 9], 2] = 0.9  # four points including a shoulder
    present = person_present(confident_mask(poses, 0.3), min_keypoints=4, min_torso=1)
    assert present.tolist() == [False, False, True]


def test_malformed_poses_are_rejected():
    with pytest.raises(ValueError, match=r"\[\.\.\., 17, 3\]"):
        confident_mask(np.zeros((17, 2)), 0.3)
