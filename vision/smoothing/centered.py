"""Centered (non-causal) smoothing of whole sequences, for reference videos processed ahead of time.

Both smoothers work per keypoint coordinate and never smooth across a frame where the keypoint is
unknown: a gap splits the track into runs that are smoothed separately.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.signal import savgol_filter


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of each run of True in a 1-D mask."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)))


def savgol_smooth(xy: np.ndarray, have: np.ndarray, window: int, polyorder: int) -> np.ndarray:
    """Savitzky-Golay smoothing of xy[T, 17, 2] along time, separately on each run of `have` [T, 17].

    Runs shorter than `window` use the longest odd window that fits; runs too short for a fit of
    `polyorder` are returned unchanged. Unknown entries are returned unchanged.
    """
    xy = np.asarray(xy, dtype=np.float64)
    have = np.asarray(have, bool)
    if xy.ndim != 3 or xy.shape[2] != 2 or have.shape != xy.shape[:2]:
        raise ValueError(f"savgol_smooth needs xy [T, K, 2] and have [T, K], got {xy.shape} and {have.shape}")
    if window % 2 == 0 or window <= polyorder:
        raise ValueError(f"savgol window must be odd and > polyorder, got {window} and {polyorder}")
    out = xy.copy()
    for k in range(xy.shape[1]):
        for start, stop in _runs(have[:, k]):
            length = stop - start
            w = min(window, length if length % 2 else length - 1)
            if w > polyorder:
                # mode="interp" fits the edge frames with the polynomial instead of padding them.
                out[start:stop, k] = savgol_filter(xy[start:stop, k], w, polyorder, axis=0, mode="interp")
    return out


def weighted_median_smooth(xy: np.ndarray, weights: np.ndarray, window: int) -> np.ndarray:
    """Confidence-weighted median of each coordinate over a centered window of `window` frames.

    xy [T, K, 2], weights [T, K] (e.g. the scores; 0 for unknown). A low-confidence spike barely
    moves a weighted median, where it would drag a mean. Entries with weight 0 are returned unchanged.
    """
    xy = np.asarray(xy, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    if xy.ndim != 3 or xy.shape[2] != 2 or weights.shape != xy.shape[:2]:
        raise ValueError(
            f"weighted_median_smooth needs xy [T, K, 2] and weights [T, K], got {xy.shape} and {weights.shape}"
        )
    if window < 1 or window % 2 == 0:
        raise ValueError(f"median window must be odd and >= 1, got {window}")
    if np.any(weights < 0):
        raise ValueError("weighted_median_smooth weights must be >= 0")
    half = window // 2
    w = np.where(np.isfinite(weights) & np.all(np.isfinite(xy), axis=-1), weights, 0.0)
    vals = np.pad(np.where(w[..., None] > 0, xy, np.inf), ((half, half), (0, 0), (0, 0)), constant_values=np.inf)
    wpad = np.pad(w, ((half, half), (0, 0)))
    vwin = sliding_window_view(vals, window, axis=0)  # [T, K, 2, W]
    wwin = np.broadcast_to(sliding_window_view(wpad, window, axis=0)[:, :, None, :], vwin.shape)
    order = np.argsort(vwin, axis=-1, kind="stable")
    sorted_v = np.take_along_axis(vwin, order, axis=-1)
    cum = np.cumsum(np.take_along_axis(wwin, order, axis=-1), axis=-1)
    # First value at which the cumulative weight reaches half the total.
    pick = np.argmax(cum >= cum[..., -1:] / 2.0, axis=-1)
    med = np.take_along_axis(sorted_v, pick[..., None], axis=-1)[..., 0]
    return np.where(w[..., None] > 0, med, xy)
