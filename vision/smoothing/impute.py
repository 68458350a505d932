"""Filling missing keypoints: from temporal neighbours for short gaps, from the skeleton for long ones.

Short gaps are interpolated linearly in time (offline, both sides known) or extrapolated from the last
velocity (online). A keypoint missing for longer is placed from keypoints visible now (its "anchors":
rigid partners or kinematic neighbours first, then the torso): the anchors' remembered positions
relative to it are fitted onto where they are now by a rotation + translation, which carries it along.
That keeps it attached to the turning body instead of frozen in the image. Nothing is estimated for a
frame without a person.
"""

from __future__ import annotations

import math

import numpy as np

from schemas.keypoints import INDEX, NUM_KEYPOINTS

TORSO = (INDEX["left_shoulder"], INDEX["right_shoulder"], INDEX["left_hip"], INDEX["right_hip"])

# Per keypoint, the keypoints its position is estimated from during a long gap, best first: its
# rigid partners (other torso or face points) or its neighbours in the kinematic chain, then the
# torso as a last resort.
_ANCHOR_NAMES = {
    "nose": ("left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder"),
    "left_eye": ("nose", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder"),
    "right_eye": ("nose", "left_eye", "right_ear", "left_ear", "right_shoulder", "left_shoulder"),
    "left_ear": ("left_eye", "nose", "right_ear", "right_eye", "left_shoulder", "right_shoulder"),
    "right_ear": ("right_eye", "nose", "left_ear", "left_eye", "right_shoulder", "left_shoulder"),
    "left_shoulder": ("right_shoulder", "left_hip", "right_hip", "left_elbow", "nose", "left_ear"),
    "right_shoulder": ("left_shoulder", "right_hip", "left_hip", "right_elbow", "nose", "right_ear"),
    "left_elbow": ("left_shoulder", "left_wrist", "right_shoulder", "left_hip", "right_hip", "nose"),
    "right_elbow": ("right_shoulder", "right_wrist", "left_shoulder", "right_hip", "left_hip", "nose"),
    "left_wrist": ("left_elbow", "left_shoulder", "right_shoulder", "left_hip", "right_hip", "nose"),
    "right_wrist": ("right_elbow", "right_shoulder", "left_shoulder", "right_hip", "left_hip", "nose"),
    "left_hip": ("right_hip", "left_shoulder", "right_shoulder", "left_knee", "right_knee", "left_elbow"),
    "right_hip": ("left_hip", "right_shoulder", "left_shoulder", "right_knee", "left_knee", "right_elbow"),
    "left_knee": ("left_hip", "left_ankle", "right_hip", "left_shoulder", "right_shoulder", "right_knee"),
    "right_knee": ("right_hip", "right_ankle", "left_hip", "right_shoulder", "left_shoulder", "left_knee"),
    "left_ankle": ("left_knee", "left_hip", "right_hip", "left_shoulder", "right_shoulder", "right_ankle"),
    "right_ankle": ("right_knee", "right_hip", "left_hip", "right_shoulder", "left_shoulder", "left_ankle"),
}
ANCHORS = np.array(
    [[INDEX[a] for a in _ANCHOR_NAMES[name]] for name in sorted(_ANCHOR_NAMES, key=lambda name: INDEX[name])],
    dtype=np.intp,
)  # [17, 6]
# Weights of the anchors in the rigid fit: the first ones (rigid partners, chain neighbours) lead.
ANCHOR_WEIGHTS = 0.25 ** np.arange(ANCHORS.shape[1])


def check_poses(poses: np.ndarray, what: str = "poses") -> np.ndarray:
    """Return `poses` as float64 [..., 17, 3], or raise a ValueError naming the problem."""
    arr = np.asarray(poses, dtype=np.float64)
    if arr.ndim < 2 or arr.shape[-2:] != (NUM_KEYPOINTS, 3):
        raise ValueError(f"{what} must have shape [..., {NUM_KEYPOINTS}, 3] (x, y, score), got {arr.shape}")
    return arr


def check_times(times: np.ndarray, n: int) -> np.ndarray:
    """Return `times` as float64 [n], strictly increasing and finite, or raise a ValueError."""
    t = np.asarray(times, dtype=np.float64)
    if t.shape != (n,):
        raise ValueError(f"times must have shape [{n}] (one per frame), got {t.shape}")
    if not np.all(np.isfinite(t)):
        raise ValueError("times must be finite seconds")
    if n > 1 and not np.all(np.diff(t) > 0):
        bad = int(np.argmin(np.diff(t) > 0)) + 1
        raise ValueError(f"times must strictly increase: frame {bad} has t={t[bad]} after t={t[bad - 1]}")
    return t


def confident_mask(poses: np.ndarray, threshold: float) -> np.ndarray:
    """Keypoints seen well enough to use: score >= threshold and finite coordinates. Shape [..., 17]."""
    poses = check_poses(poses)
    return (poses[..., 2] >= threshold) & np.all(np.isfinite(poses), axis=-1)


def person_present(confident: np.ndarray, min_keypoints: int, min_torso: int) -> np.ndarray:
    """Whether enough of a person is seen to output one: guards against inventing a skeleton."""
    confident = np.asarray(confident, bool)
    return (confident.sum(axis=-1) >= min_keypoints) & (confident[..., list(TORSO)].sum(axis=-1) >= min_torso)


def interpolate_gaps(
    xy: np.ndarray, available: np.ndarray, times: np.ndarray, max_gap: int
) -> tuple[np.ndarray, np.ndarray]:
    """Linearly interpolate (in time) each keypoint across gaps of at most `max_gap` frames.

    `xy` [T, 17, 2], `available` [T, 17]. A gap at the start or end of the sequence is held at the
    nearest value when it is no longer than `max_gap`. Longer gaps are left untouched (not even
    partly filled, so later estimates do not meet a seam). Returns (xy filled, imputed mask [T, 17]).
    """
    xy = np.array(xy, dtype=np.float64)
    available = np.asarray(available, bool)
    n = len(xy)
    imputed = np.zeros(available.shape, bool)
    for k in range(available.shape[1]):
        seen = np.flatnonzero(available[:, k])
        missing = np.flatnonzero(~available[:, k])
        if seen.size == 0 or missing.size == 0:
            continue
        after = np.searchsorted(seen, missing)  # position in `seen` of the next observation
        prev = np.where(after > 0, seen[np.maximum(after - 1, 0)], -1)
        nxt = np.where(after < seen.size, seen[np.minimum(after, seen.size - 1)], n)
        gap = nxt - prev - 1  # edge gaps count from the sequence boundary
        fill = missing[gap <= max_gap]
        for c in range(2):
            # np.interp holds the end values outside the observed range: the edge-gap rule.
            xy[fill, k, c] = np.interp(times[fill], times[seen], xy[seen, k, c])
        imputed[fill, k] = True
    return xy, imputed


def extrapolate(
    xy: np.ndarray, velocity: np.ndarray, dt: np.ndarray | float, decay_s: float
) -> tuple[np.ndarray, np.ndarray]:
    """Advance positions by `dt` seconds (scalar or array) with a velocity decaying at time constant `decay_s`.

    Decaying the velocity stops a noisy velocity estimate from flinging a keypoint off across a
    long gap; decay_s = 0 holds the position, inf extrapolates at constant velocity. Applied step by
    step this sums to the closed form x0 + v0 * decay * (1 - exp(-t / decay)).
    """
    if decay_s == 0:
        return np.array(xy, dtype=np.float64), np.zeros_like(velocity, dtype=np.float64)
    if math.isinf(decay_s):
        return xy + velocity * dt, np.array(velocity, dtype=np.float64)
    keep = np.exp(-np.asarray(dt, dtype=np.float64) / decay_s)
    return xy + velocity * decay_s * (1.0 - keep), velocity * keep


def anchor_offsets(xy: np.ndarray, available: np.ndarray) -> np.ndarray:
    """Offsets of each keypoint from each of its anchors: [..., 17, 4, 2], NaN unless both available."""
    xy = np.asarray(xy, dtype=np.float64)
    available = np.asarray(available, bool)
    offsets = xy[..., :, None, :] - xy[..., ANCHORS, :]
    both = available[..., :, None] & available[..., ANCHORS]
    return np.where(both[..., None], offsets, np.nan)


def estimate_from_anchors(xy: np.ndarray, known: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Place unknown keypoints of one pose by a rigid fit of their remembered anchors.

    `xy` [17, 2], `known` [17], `offsets` [17, A, 2] (keypoint minus anchor; NaN where never seen
    together). For each unknown keypoint, the remembered anchor positions (relative to it) are
    matched to where those anchors are now by a weighted 2D rotation + translation (Procrustes;
    earlier anchors weigh more), which carries the keypoint along; with a single anchor this is
    just anchor + offset. Anchors known from the start are used before estimated ones, so estimates
    chain outwards only when needed. Returns (xy, estimated mask [17]); keypoints with no usable
    anchor stay unknown.
    """
    xy = np.array(xy, dtype=np.float64)
    known = np.array(known, bool)
    estimated = np.zeros(NUM_KEYPOINTS, bool)
    usable = np.all(np.isfinite(offsets), axis=-1)  # [17, A]
    template = -(offsets[..., 0] + 1j * offsets[..., 1])  # anchors relative to the keypoint
    while True:
        candidates = ~known[:, None] & known[ANCHORS] & usable  # from this pass's snapshot
        todo = np.flatnonzero(candidates.any(axis=1))
        if todo.size == 0:
            return xy, estimated
        w = np.where(candidates[todo], ANCHOR_WEIGHTS, 0.0)
        w /= w.sum(axis=1, keepdims=True)
        now = xy[ANCHORS[todo], 0] + 1j * xy[ANCHORS[todo], 1]
        ref = np.where(candidates[todo], template[todo], 0.0)
        now = np.where(candidates[todo], now, 0.0)
        now_c = (w * now).sum(axis=1, keepdims=True)
        ref_c = (w * ref).sum(axis=1, keepdims=True)
        cross = (w * (now - now_c) * np.conj(ref - ref_c)).sum(axis=1)
        rotation = np.where(np.abs(cross) > 1e-9, cross / np.maximum(np.abs(cross), 1e-300), 1.0)
        placed = now_c[:, 0] - rotation * ref_c[:, 0]  # where the template's origin lands
        xy[todo] = np.stack([placed.real, placed.imag], axis=-1)
        known[todo] = True
        estimated[todo] = True


def _interpolate_over_time(values: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Fill NaNs of each series in values[T, ...] by linear interpolation in time, holding the ends."""
    flat = values.reshape(len(values), -1).copy()
    for j in range(flat.shape[1]):
        ok = np.isfinite(flat[:, j])
        if ok.any() and not ok.all():
            flat[~ok, j] = np.interp(times[~ok], times[ok], flat[ok, j])
    return flat.reshape(values.shape)


def impute_sequence(
    xy: np.ndarray,
    available: np.ndarray,
    times: np.ndarray,
    max_gap: int,
    present: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Offline imputation of a whole sequence: short gaps interpolated, long gaps from anchors.

    For long gaps the anchor offsets are themselves interpolated in time between the last frame
    before and the first frame after the gap where both points were seen. Frames where `present`
    is false get nothing. Returns (xy [T, 17, 2], imputed [T, 17]); still-missing keypoints keep
    their input coordinates and are neither available nor imputed.
    """
    available = np.asarray(available, bool)
    present = np.ones(len(xy), bool) if present is None else np.asarray(present, bool)
    filled, imputed = interpolate_gaps(xy, available, times, max_gap)
    imputed &= present[:, None]
    have = available | imputed
    need = present[:, None] & ~have
    if need.any():
        offsets = _interpolate_over_time(anchor_offsets(filled, available), times)
        for t in np.flatnonzero(need.any(axis=1)):
            filled[t], estimated = estimate_from_anchors(filled[t], have[t], offsets[t])
            imputed[t] |= estimated
    return filled, imputed
