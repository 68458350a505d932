"""The online per-camera smoother: quality, honesty about absent people, and restartable state."""

from __future__ import annotations

import json

import numpy as np
import pytest

from schemas.keypoints import IMPUTED, INDEX, NUM_KEYPOINTS, OBSERVED, OUTLIER, SMOOTHED
from vision.smoothing import OnlineSmoother, SmoothingParams, smooth_online
from vision.smoothing.synthetic import corrupt, stick_figure

EPOCH = 1.7e9  # capture timestamps are wall-clock seconds


def _rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.sum((a - b) ** 2, axis=-1))))


def _heavy(n: int, seed: int):
    truth, times = stick_figure(n, seed=seed)
    c = corrupt(truth, seed=seed, jitter_px=3.0, drop_fraction=0.3, mean_drop_frames=6.0, outlier_rate=0.01)
    return truth, times + EPOCH, c


def test_restoring_state_mid_stream_gives_exactly_the_same_output():
    truth, times, c = _heavy(160, seed=11)
    poses = c.poses.copy()
    poses[70:75] = 0.0  # the person steps out for a moment
    never_stopped = smooth_online(poses, times)
    for split in (0, 1, 37, 72, 120):
        smoother = OnlineSmoother()
        for i in range(split):
            smoother.update(poses[i], times[i])
        wire = json.dumps(smoother.to_state(), allow_nan=False)  # strict JSON: no NaN sneaks in
        smoother = OnlineSmoother.from_state(json.loads(wire), SmoothingParams())
        for i in range(split, len(times)):
            out, flags, present = smoother.update(poses[i], times[i])
            np.testing.assert_array_equal(out, never_stopped[0][i], err_msg=f"split {split}, frame {i}")
            np.testing.assert_array_equal(flags, never_stopped[1][i])
            assert present == never_stopped[2][i]


def test_state_is_small():
    _, times, c = _heavy(120, seed=12)
    smoother = OnlineSmoother()
    for i in range(120):
        smoother.update(c.poses[i], times[i])
    assert len(json.dumps(smoother.to_state())) < 12_000


def test_no_person_is_invented():
    truth, times = stick_figure(120, seed=13)
    poses = truth.copy()
    poses[40:100, :, 2] = 0.0  # gone for two seconds
    poses[100:105, 3:, 2] = 0.05  # only three keypoints seen
    poses[105:110, 11:, 2] = 0.0  # six face and arm points but no torso at all...
    poses[105:110, 5:7, 2] = 0.0
    out, flags, present = smooth_online(poses, times)
    assert present[:40].all() and present[110:].all()
    assert not present[40:110].any()
    assert np.all(out[40:110] == 0) and np.all(flags[40:110] == 0)
    # Back after the absence: filters restart from the new observations, not from the old pose.
    np.testing.assert_allclose(out[110, :, :2], truth[110, :, :2], atol=1e-3)
    assert np.abs(out[110:, :, :2] - truth[110:, :, :2]).max() < 5.0


def test_smoothing_beats_raw_with_little_lag():
    truth, times = stick_figure(300, seed=14)
    c = corrupt(truth, seed=14, jitter_px=3.0, drop_fraction=0.0, outlier_rate=0.0)
    out, flags, present = smooth_online(c.poses, times)
    assert present.all() and np.all(flags == OBSERVED | SMOOTHED)
    txy, oxy, rxy = truth[30:, :, :2], out[30:, :, :2], c.poses[30:, :, :2]
    # Fast dance leaves little room between jitter and lag: the error drops a little, the jitter a lot.
    assert _rmse(oxy, txy) < 0.95 * _rmse(rxy, txy)
    jitter = lambda x: np.abs(np.diff(x, 2, axis=0)).mean()  # noqa: E731
    assert jitter(oxy) < 0.6 * jitter(rxy)
    # Lag: the output is closest to the truth shifted by less than a frame.
    shifted = [_rmse(oxy[3:-3], truth[30 + 3 - s : len(truth) - 3 - s, :, :2]) for s in range(-3, 4)]
    assert int(np.argmin(shifted)) - 3 in (0, 1)


def test_dropouts_and_glitches_are_filled_and_flagged():
    truth, times, c = _heavy(300, seed=15)
    out, flags, present = smooth_online(c.poses, times)
    err = np.linalg.norm(out[..., :2] - truth[..., :2], axis=-1)
    placed = (flags & (OBSERVED | IMPUTED)) != 0
    imputed = (flags & IMPUTED) != 0
    assert np.all(((flags & OBSERVED) != 0) == (((flags & OBSERVED) != 0) & ~imputed))
    assert imputed[present].mean() > 0.2  # most of the 30 % dropped were filled in
    assert placed[present].mean() > 0.97
    raw_dropped = np.linalg.norm(c.poses[..., :2] - truth[..., :2], axis=-1)[c.dropped & present[:, None]]
    assert np.sqrt(np.mean(err[imputed] ** 2)) < 0.8 * np.sqrt(np.mean(raw_dropped**2))
    caught = c.outliers & ((flags & OUTLIER) != 0)
    assert caught.sum() >= 0.85 * c.outliers.sum()
    assert np.median(err[caught]) < 15.0  # replaced by an estimate near the truth
    assert np.all(out[..., 2][imputed] == pytest.approx(SmoothingParams().confidence_threshold))
    assert np.all(out[~placed] == 0)


def test_a_long_occlusion_follows_the_body():
    truth, times = stick_figure(150, seed=16)
    poses = truth.copy()
    wrist = INDEX["right_wrist"]
    poses[40:110, wrist, 2] = 0.0  # hidden for 70 frames, far beyond max_gap
    out, flags, _ = smooth_online(poses, times)
    assert np.all((flags[40:110, wrist] & IMPUTED) != 0)
    err = np.linalg.norm(out[40:110, wrist, :2] - truth[40:110, wrist, :2], axis=-1)
    frozen = np.linalg.norm(truth[39, wrist, :2] - truth[40:110, wrist, :2], axis=-1)
    assert np.sqrt(np.mean(err**2)) < 0.5 * np.sqrt(np.mean(frozen**2))


def test_output_types_and_bad_input():
    smoother = OnlineSmoother()
    truth, _ = stick_figure(2)
    out, flags, present = smoother.update(truth[0], 10.0)
    assert out.dtype == np.float32 and out.shape == (NUM_KEYPOINTS, 3)
    assert flags.dtype == np.uint8 and flags.shape == (NUM_KEYPOINTS,) and present is True
    with pytest.raises(ValueError, match="capture order"):
        smoother.update(truth[1], 10.0)
    with pytest.raises(ValueError, match=r"\[17, 3\]"):
        smoother.update(truth[:2], 11.0)
    with pytest.raises(ValueError, match="finite"):
        smoother.update(truth[1], float("nan"))
    with pytest.raises(ValueError, match="version"):
        OnlineSmoother.from_state({"version": 99})
    state = smoother.to_state()
    state["offsets"] = state["offsets"][:3]
    with pytest.raises(ValueError, match="offsets"):
        OnlineSmoother.from_state(state)
