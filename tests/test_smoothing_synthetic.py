"""The synthetic dancer and its corruption behave as the benchmark and tests assume."""

from __future__ import annotations

import numpy as np
import pytest

from schemas.keypoints import NUM_KEYPOINTS
from vision.smoothing.glitches import limb_lengths
from vision.smoothing.synthetic import corrupt, stick_figure


def test_limbs_keep_their_length_while_the_pose_moves_smoothly():
    poses, times = stick_figure(300, fps=30.0, seed=4)
    assert poses.shape == (300, NUM_KEYPOINTS, 3) and poses.dtype == np.float32
    np.testing.assert_allclose(np.diff(times), 1 / 30.0)
    lengths = limb_lengths(poses[..., :2], np.ones((300, NUM_KEYPOINTS), bool))
    assert np.all(lengths.std(axis=0) < 1e-3 * lengths.mean(axis=0))
    speed = np.linalg.norm(np.diff(poses[..., :2], axis=0), axis=-1)
    assert speed.max() < 60.0 and speed.mean() > 1.0  # moving, and continuously
    assert np.abs(np.diff(poses[..., :2], 2, axis=0)).max() < 10.0  # no kinks


def test_figures_are_reproducible_per_seed():
    a, _ = stick_figure(50, seed=1)
    b, _ = stick_figure(50, seed=1)
    c, _ = stick_figure(50, seed=2)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_corruption_drops_jitters_and_glitches_as_asked():
    truth, _ = stick_figure(600, seed=5)
    c = corrupt(truth, seed=5, jitter_px=2.0, drop_fraction=0.3, mean_drop_frames=6.0, outlier_rate=0.01)
    assert c.dropped.mean() == pytest.approx(0.3, abs=0.06)
    # Dropouts come in bursts: far fewer starts than dropped frames.
    starts = (c.dropped[1:] & ~c.dropped[:-1]).sum()
    assert c.dropped.sum() / starts > 3.0
    assert np.all(c.poses[..., 2][c.dropped] < 0.2) and np.all(c.poses[..., 2][~c.dropped] >= 0.5)
    err = np.linalg.norm(c.poses[..., :2] - truth[..., :2], axis=-1)
    assert np.all(err[c.outliers] > 45.0)
    clean = ~c.dropped & ~c.outliers
    assert np.std(c.poses[..., :2][clean] - truth[..., :2][clean]) == pytest.approx(2.0, rel=0.1)
    assert not (c.outliers & c.dropped).any()


def test_corruption_rejects_bad_arguments():
    truth, _ = stick_figure(10)
    with pytest.raises(ValueError, match="drop_fraction"):
        corrupt(truth, drop_fraction=1.0)
