"""Whole-sequence (centered) smoothing for reference videos processed ahead of time."""

from __future__ import annotations

import numpy as np

from schemas.keypoints import IMPUTED, OBSERVED, OUTLIER, SMOOTHED

from .centered import savgol_smooth, weighted_median_smooth
from .glitches import detect_glitches
from .impute import check_poses, check_times, confident_mask, impute_sequence, person_present
from .params import SmoothingParams

# Weight of an imputed value in the weighted median, relative to scores in [0, 1]: it only decides
# where nothing better was seen in the window.
IMPUTED_MEDIAN_WEIGHT = 0.05
MODES = ("savgol", "median")


def smooth_sequence(
    poses: np.ndarray, times: np.ndarray, mode: str = "savgol", params: SmoothingParams = SmoothingParams()
) -> tuple[np.ndarray, np.ndarray]:
    """Glitch removal, imputation and centered smoothing of poses[T, 17, 3] at times[T] (seconds).

    mode "savgol": Savitzky-Golay (params.savgol_window, savgol_polyorder); "median":
    confidence-weighted median over params.median_window frames. Returns (poses [T, 17, 3] float32,
    flags [T, 17] uint8). Frames without a person are all zeros with no flags; keypoints that
    could not be placed are (0, 0, 0); imputed ones carry score = confidence_threshold.
    """
    if mode not in MODES:
        raise ValueError(f"smooth_sequence mode must be one of {MODES}, got {mode!r}")
    poses = check_poses(poses)
    if poses.ndim != 3:
        raise ValueError(f"smooth_sequence needs a sequence [T, 17, 3], got {poses.shape}")
    times = check_times(times, len(poses))
    p = params
    conf = confident_mask(poses, p.confidence_threshold)
    present = person_present(conf, p.min_keypoints, p.min_torso)
    conf &= present[:, None]
    outlier, _ = detect_glitches(poses, times, p, confident=conf)
    available = conf & ~outlier
    xy, imputed = impute_sequence(poses[..., :2], available, times, p.max_gap, present)
    have = available | imputed
    if mode == "savgol":
        smoothed = savgol_smooth(xy, have, p.savgol_window, p.savgol_polyorder)
    else:
        weights = np.where(available, poses[..., 2], np.where(imputed, IMPUTED_MEDIAN_WEIGHT, 0.0))
        smoothed = weighted_median_smooth(xy, weights, p.median_window)

    out = np.zeros(poses.shape, np.float32)
    out[..., :2] = np.where(have[..., None], smoothed, 0.0)
    out[..., 2] = np.where(available, poses[..., 2], np.where(imputed, p.confidence_threshold, 0.0))
    flags = np.zeros(poses.shape[:2], np.uint8)
    flags[available] |= OBSERVED | SMOOTHED
    flags[imputed] |= IMPUTED | SMOOTHED
    flags[outlier] |= OUTLIER
    return out, flags
