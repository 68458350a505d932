"""Centered smoothing (Savitzky-Golay, confidence-weighted median) and the offline pipeline."""

from __future__ import annotations

import numpy as np
import pytest

from schemas.keypoints import IMPUTED, OBSERVED, OUTLIER, SMOOTHED
from vision.smoothing import SmoothingParams, savgol_smooth, smooth_sequence, weighted_median_smooth
from vision.smoothing.synthetic import corrupt, stick_figure


def _brute_weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    """Smallest value whose cumulative weight (in sorted order) reaches half the total."""
    order = np.argsort(values, kind="stable")
    cum = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cum, cum[-1] / 2.0)])


def test_savgol_keeps_a_quadratic_exactly_and_never_smooths_across_a_gap():
    t = np.arange(40, dtype=np.float64)
    xy = np.zeros((40, 2, 2))
    xy[:, 0, 0] = 3.0 + 2.0 * t - 0.1 * t**2  # a polynomial of the fitted order passes unchanged
    xy[:, 0, 1] = 7.0
    xy[:20, 1] = 100.0  # two flat runs at different heights, split by a gap
    xy[21:, 1] = 500.0
    have = np.ones((40, 2), bool)
    have[20, 1] = False
    xy[20, 1] = -1.0
    out = savgol_smooth(xy, have, 9, 2)
    np.testing.assert_allclose(out[:, 0], xy[:, 0], atol=1e-9)
    np.testing.assert_allclose(out[:20, 1], 100.0)
    np.testing.assert_allclose(out[21:, 1], 500.0)
    assert np.all(out[20, 1] == -1.0)


def test_savgol_removes_noise():
    rng = np.random.default_rng(0)
    xy = 200.0 + rng.normal(0, 3.0, (100, 1, 2))
    out = savgol_smooth(xy, np.ones((100, 1), bool), 13, 2)
    assert np.std(out - 200.0) < 0.6 * np.std(xy - 200.0)


def test_weighted_median_matches_a_brute_force_definition():
    rng = np.random.default_rng(1)
    xy = rng.normal(300, 20, (30, 3, 2))
    w = rng.uniform(0.0, 1.0, (30, 3))
    w[rng.random((30, 3)) < 0.2] = 0.0
    out = weighted_median_smooth(xy, w, 5)
    for t in range(30):
        for k in range(3):
            if w[t, k] == 0:
                assert np.all(out[t, k] == xy[t, k])
                continue
            lo, hi = max(0, t - 2), min(30, t + 3)
            keep = w[lo:hi, k] > 0
            for c in range(2):
                expected = _brute_weighted_median(xy[lo:hi, k, c][keep], w[lo:hi, k][keep])
                assert out[t, k, c] == expected


def test_weighted_median_ignores_a_low_confidence_spike():
    xy = np.full((9, 1, 2), 50.0)
    xy[4] = 400.0
    w = np.full((9, 1), 0.9)
    w[4] = 0.2
    out = weighted_median_smooth(xy, w, 5)
    np.testing.assert_array_equal(out, np.full((9, 1, 2), 50.0))


@pytest.mark.parametrize("mode", ["savgol", "median"])
def test_smooth_sequence_beats_the_raw_estimates_and_flags_what_it_did(mode):
    truth, times = stick_figure(240, seed=21)
    c = corrupt(truth, seed=21, jitter_px=3.0, drop_fraction=0.25, mean_drop_frames=4.0, outlier_rate=0.01)
    out, flags = smooth_sequence(c.poses, times, mode)
    good = c.poses[..., 2] >= 0.3
    raw_err = np.linalg.norm(c.poses[..., :2] - truth[..., :2], axis=-1)[good]
    placed = (flags & (OBSERVED | IMPUTED)) != 0
    err = np.linalg.norm(out[..., :2] - truth[..., :2], axis=-1)
    assert np.sqrt(np.mean(err[placed] ** 2)) < 0.5 * np.sqrt(np.mean(raw_err**2))
    assert placed.mean() > 0.97  # nearly everything dropped was filled in
    assert np.all((flags[placed] & SMOOTHED) != 0)
    assert np.all(out[~placed] == 0)
    # The injected glitches are flagged and replaced: the output there is close to the truth.
    caught = c.outliers & ((flags & OUTLIER) != 0)
    assert caught.sum() >= 0.9 * c.outliers.sum()
    assert np.median(err[caught]) < 10.0


def test_smooth_sequence_leaves_frames_without_a_person_empty():
    truth, times = stick_figure(60, seed=2)
    poses = truth.copy()
    poses[20:30, :, 2] = 0.0  # the person left
    poses[40, 4:, 2] = 0.0  # only the face: not enough to be a person
    out, flags = smooth_sequence(poses, times, "savgol")
    for frame in list(range(20, 30)) + [40]:
        assert np.all(out[frame] == 0) and np.all(flags[frame] == 0), frame
    assert np.all((flags[:20] & OBSERVED) != 0)


def test_smooth_sequence_rejects_bad_input():
    truth, times = stick_figure(10)
    with pytest.raises(ValueError, match="mode"):
        smooth_sequence(truth, times, "gaussian")
    with pytest.raises(ValueError, match="increase"):
        smooth_sequence(truth, times[::-1].copy(), "savgol")
    with pytest.raises(ValueError, match="times must have shape"):
        smooth_sequence(truth, times[:5], "savgol")
    with pytest.raises(ValueError, match="odd"):
        SmoothingParams(savgol_window=8)
