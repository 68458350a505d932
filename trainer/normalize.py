"""Source-to-target pose normalization, as in "Everybody Dance Now" (global pose normalization).

The reference dancer (source) and the booth visitor (target) stand at different distances from
their cameras and have different builds, so the source's poses are rescaled and moved to where
the target's body would be before rendering. With y growing downwards, the ankle's y tells how
close to the camera a person stands (lower in the picture = closer):

* over each sequence take the farthest and closest ankle positions (a low / high quantile of the
  per-frame ankle y, so a few bad frames do not decide), and the body height (ankle to the top
  of the head keypoints) near each of them (the largest height within a window, so crouching
  frames do not count);
* the scale at the far end is target_far_height / source_far_height, likewise at the close end;
  a frame's scale is interpolated linearly between them by where its ankle lies in the source's
  far..close range;
* the frame's ankle y is mapped linearly from the source's far..close range onto the target's,
  and the pose is scaled about its ankle by the frame's scale; horizontally the source's median
  body-centre x maps to the target's, with the same scale.

A source that barely moves in depth (range under `min_range_frac` of its height) would make the
range-to-range map explode, so it is then placed at the middle of the target's range with vertical
motion passed through at the body scale.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, fields

import numpy as np

from schemas.keypoints import INDEX, NUM_KEYPOINTS

_ANKLES = (INDEX["left_ankle"], INDEX["right_ankle"])
_HEAD = tuple(INDEX[n] for n in ("nose", "left_eye", "right_eye", "left_ear", "right_ear"))
_HIPS = (INDEX["left_hip"], INDEX["right_hip"])


def _check_sequence(poses: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(poses, dtype=np.float32)
    if arr.ndim != 3 or arr.shape[1:] != (NUM_KEYPOINTS, 3):
        raise ValueError(f"{name} must have shape (T, {NUM_KEYPOINTS}, 3), got {arr.shape}")
    if len(arr) == 0:
        raise ValueError(f"{name} is empty")
    return arr


def _ankle_y(poses: np.ndarray, thr: float) -> np.ndarray:
    """Per frame, the lower confident ankle's y (the foot on the ground); -inf if neither."""
    ok = poses[:, _ANKLES, 2] >= thr
    return np.where(ok, poses[:, _ANKLES, 1], -np.inf).max(axis=1).astype(np.float64)


def _frame_stats(poses: np.ndarray, thr: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per frame: ankle y, height (ankle to highest head keypoint) and body-centre x; NaN = n/a."""
    ankle = _ankle_y(poses, thr)
    ankle[~np.isfinite(ankle)] = np.nan
    head_y = np.where(poses[:, _HEAD, 2] >= thr, poses[:, _HEAD, 1], np.inf).min(axis=1)
    height = np.where(np.isfinite(head_y), ankle - head_y, np.nan)
    height[height <= 0] = np.nan
    hips_ok = poses[:, _HIPS, 2] >= thr
    hip_x = np.where(hips_ok, poses[:, _HIPS, 0], np.nan)
    all_x = np.where(poses[:, :, 2] >= thr, poses[:, :, 0], np.nan)
    with warnings.catch_warnings():  # all-NaN rows are expected: they stay NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        cx = np.nanmean(hip_x, axis=1)
        cx = np.where(np.isfinite(cx), cx, np.nanmean(all_x, axis=1))
    return ankle, height, cx


@dataclass(frozen=True)
class _Extent:
    far: float
    close: float
    far_height: float
    close_height: float
    centre_x: float
    median_ankle: float
    median_height: float


def _extent(poses: np.ndarray, thr: float, quantile: float, window: float, name: str) -> _Extent:
    ankle, height, cx = _frame_stats(poses, thr)
    valid = np.isfinite(ankle) & np.isfinite(height)
    if not valid.any():
        raise ValueError(
            f"{name}: no frame has a confident ankle and head keypoint (score >= {thr}); "
            "cannot measure where the person stands"
        )
    a, h = ankle[valid], height[valid]
    far, close = float(np.quantile(a, quantile)), float(np.quantile(a, 1.0 - quantile))
    span = max(close - far, 1e-6)
    near_far = a <= far + window * span
    near_close = a >= close - window * span
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        centre = float(np.nanmedian(cx)) if np.isfinite(cx).any() else float("nan")
    if not np.isfinite(centre):
        raise ValueError(f"{name}: no confident keypoint to locate the body horizontally")
    return _Extent(
        far=far,
        close=close,
        far_height=float(h[near_far].max()),
        close_height=float(h[near_close].max()),
        centre_x=centre,
        median_ankle=float(np.median(a)),
        median_height=float(np.median(h)),
    )


@dataclass(frozen=True)
class Normalizer:
    """Maps source poses into the target's frame; build it with `fit_normalizer`."""

    source_far: float
    source_close: float
    target_far: float
    target_close: float
    scale_far: float
    scale_close: float
    source_centre_x: float
    target_centre_x: float
    source_median_ankle: float
    degenerate: bool
    score_threshold: float

    def frame_transform(self, ankle_y: float) -> tuple[float, float]:
        """(scale, target ankle y) for a source frame whose ankle is at ankle_y."""
        if self.degenerate:
            scale = 0.5 * (self.scale_far + self.scale_close)
            mid_s = 0.5 * (self.source_far + self.source_close)
            mid_t = 0.5 * (self.target_far + self.target_close)
            return scale, mid_t + (ankle_y - mid_s) * scale
        t = (ankle_y - self.source_far) / (self.source_close - self.source_far)
        tc = min(max(t, 0.0), 1.0)
        scale = self.scale_far + tc * (self.scale_close - self.scale_far)
        return scale, self.target_far + t * (self.target_close - self.target_far)

    def apply(self, pose: np.ndarray, ankle_y: float | None = None) -> np.ndarray:
        """One source pose [17, 3] -> normalized pose (scores kept).

        ankle_y overrides the frame's own ankle (use `apply_sequence` to fill frames without a
        confident ankle from their neighbours); without either, the source's median ankle is used.
        """
        pose = np.asarray(pose, dtype=np.float32)
        if pose.shape != (NUM_KEYPOINTS, 3):
            raise ValueError(f"pose must have shape ({NUM_KEYPOINTS}, 3), got {pose.shape}")
        if ankle_y is None:
            own = float(_ankle_y(pose[None], self.score_threshold)[0])
            ankle_y = own if np.isfinite(own) else self.source_median_ankle
        scale, target_ankle = self.frame_transform(float(ankle_y))
        out = pose.copy()
        out[:, 0] = self.target_centre_x + scale * (pose[:, 0] - self.source_centre_x)
        out[:, 1] = target_ankle + scale * (pose[:, 1] - ankle_y)
        return out

    def apply_sequence(self, poses: np.ndarray) -> np.ndarray:
        """apply() over [T, 17, 3]; frames without a confident ankle borrow one interpolated
        from the nearest frames that have one, so the figure does not jump."""
        poses = _check_sequence(poses, "poses")
        ankle = _ankle_y(poses, self.score_threshold)
        ok = np.isfinite(ankle)
        idx = np.arange(len(poses))
        if ok.any():
            ankle = np.interp(idx, idx[ok], ankle[ok])
        else:
            ankle = np.full(len(poses), self.source_median_ankle)
        return np.stack([self.apply(p, float(a)) for p, a in zip(poses, ankle)])

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Normalizer:
        names = {f.name for f in fields(cls)}
        missing = names - set(data)
        if missing:
            raise ValueError(f"normalizer dict lacks {sorted(missing)}")
        return cls(**{k: data[k] for k in names})


def fit_normalizer(
    source_poses: np.ndarray,
    target_poses: np.ndarray,
    *,
    score_threshold: float = 0.3,
    quantile: float = 0.02,
    window: float = 0.1,
    min_range_frac: float = 0.05,
) -> Normalizer:
    """Fit the source -> target mapping from a source sequence [T, 17, 3] (the reference dancer)
    and target poses [N, 17, 3] (the visitor's recorded frames), both in their own pixels.

    quantile: the far/close ankle positions are these quantiles of the ankle y (robust to a few
    bad frames); window: fraction of the far..close range within which heights are measured.
    """
    if not 0.0 <= quantile < 0.5:
        raise ValueError(f"quantile must be in [0, 0.5), got {quantile}")
    src = _extent(_check_sequence(source_poses, "source_poses"), score_threshold, quantile, window, "source_poses")
    tgt = _extent(_check_sequence(target_poses, "target_poses"), score_threshold, quantile, window, "target_poses")
    degenerate = (src.close - src.far) < min_range_frac * src.median_height
    return Normalizer(
        source_far=src.far,
        source_close=src.close,
        target_far=tgt.far,
        target_close=tgt.close,
        scale_far=tgt.far_height / src.far_height,
        scale_close=tgt.close_height / src.close_height,
        source_centre_x=src.centre_x,
        target_centre_x=tgt.centre_x,
        source_median_ankle=src.median_ankle,
        degenerate=bool(degenerate),
        score_threshold=float(score_threshold),
    )


_SHOULDERS = (INDEX["left_shoulder"], INDEX["right_shoulder"])


@dataclass(frozen=True)
class BodyNormalizer:
    """The fallback when fit_normalizer cannot measure where a person stands (their feet or head
    are never seen: a visitor cut off by the frame): one scale and shift for the whole sequence,
    matching the median torso length (shoulders to hips; else the confident keypoints' height)
    and the median body centre (the torso's middle; else the confident keypoints' mean) of the two
    sequences. Depth is not followed."""

    scale: float
    source_centre: tuple[float, float]
    target_centre: tuple[float, float]

    def apply(self, pose: np.ndarray) -> np.ndarray:
        pose = np.asarray(pose, dtype=np.float32)
        if pose.shape != (NUM_KEYPOINTS, 3):
            raise ValueError(f"pose must have shape ({NUM_KEYPOINTS}, 3), got {pose.shape}")
        out = pose.copy()
        out[:, :2] = np.asarray(self.target_centre, np.float32) + self.scale * (
            pose[:, :2] - np.asarray(self.source_centre, np.float32)
        )
        return out


def _body_stats(poses: np.ndarray, thr: float, name: str) -> tuple[np.ndarray, float, bool]:
    """(median body centre, median size, whether the size is the torso's) of a sequence."""
    ok = poses[:, :, 2] >= thr
    torso_ok = ok[:, list(_SHOULDERS)].all(axis=1) & ok[:, list(_HIPS)].all(axis=1)
    centres = [poses[i, ok[i], :2].mean(axis=0) for i in range(len(poses)) if ok[i].sum() >= 2]
    if not centres:
        raise ValueError(f"{name}: no frame has two confident keypoints")
    if torso_ok.any():
        sh = poses[torso_ok][:, list(_SHOULDERS), :2].mean(axis=1)
        hp = poses[torso_ok][:, list(_HIPS), :2].mean(axis=1)
        return np.median((sh + hp) / 2, axis=0), float(np.median(np.linalg.norm(sh - hp, axis=1))), True
    heights = [np.ptp(poses[i, ok[i], 1]) for i in range(len(poses)) if ok[i].sum() >= 2]
    return np.median(centres, axis=0), float(np.median(heights)), False


def fit_body_normalizer(
    source_poses: np.ndarray, target_poses: np.ndarray, score_threshold: float = 0.3
) -> BodyNormalizer:
    """See BodyNormalizer; ValueError when either sequence has no frame with two confident keypoints."""
    src_c, src_size, src_torso = _body_stats(
        _check_sequence(source_poses, "source_poses"), score_threshold, "source_poses"
    )
    tgt_c, tgt_size, tgt_torso = _body_stats(
        _check_sequence(target_poses, "target_poses"), score_threshold, "target_poses"
    )
    if src_torso != tgt_torso:  # compare like with like: the keypoints' height on both sides
        src_c, src_size, _ = _body_stats(_drop_torso(source_poses), score_threshold, "source_poses")
        tgt_c, tgt_size, _ = _body_stats(_drop_torso(target_poses), score_threshold, "target_poses")
    scale = tgt_size / src_size if src_size > 1e-6 else 1.0
    return BodyNormalizer(float(scale), (float(src_c[0]), float(src_c[1])), (float(tgt_c[0]), float(tgt_c[1])))


def _drop_torso(poses: np.ndarray) -> np.ndarray:
    """The poses with their hips unscored, so _body_stats measures the keypoints' height."""
    out = np.array(poses, np.float32, copy=True)
    out[:, list(_HIPS), 2] = 0.0
    return out
