"""The per-camera online pipeline: glitch rejection, imputation and One Euro smoothing, frame by frame.

Causal: the output for a frame depends only on it and earlier frames, so it adds no frames of
delay. All state fits a small JSON-able dict, so a stream processor can keep it in a changelogged
table and a restarted worker continues exactly where the old one stopped.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from schemas.keypoints import IMPUTED, NUM_KEYPOINTS, OBSERVED, OUTLIER, SKELETON, SMOOTHED

from .glitches import blame_limbs, body_size, limb_lengths, limb_too_long, nanmedian_quiet
from .impute import (
    ANCHORS,
    anchor_offsets,
    check_poses,
    check_times,
    confident_mask,
    estimate_from_anchors,
    extrapolate,
    person_present,
)
from .one_euro import OneEuroFilter
from .params import SmoothingParams

STATE_VERSION = 1
# Values kept only for judging glitches or placing keypoints are rounded to 0.01 px when stored:
# far below pose-estimation noise, and their JSON stays short.
_STORE_DECIMALS = 2
# A limb needs this many recent measurements before its running median is trusted.
_MIN_LIMB_SAMPLES = 3
# Jump tolerance grows by this fraction per frame a keypoint has been unseen: its prediction was
# extrapolated blind for that long.
_TOLERANCE_GROWTH = 0.25


def _per_coordinate(mask: np.ndarray) -> np.ndarray:
    """A per-keypoint mask [17] as a mask over the filter's [17, 2] coordinates."""
    return np.repeat(mask[:, None], 2, axis=1)


def _with_none(values: np.ndarray) -> list:
    """Nested lists with None for NaN: JSON has no NaN."""
    return np.where(np.isfinite(values), values, None).tolist()  # type: ignore[call-overload]


def _from_none(values: list, shape: tuple[int, ...], what: str) -> np.ndarray:
    arr = np.array(values, dtype=np.float64)  # None -> NaN
    if arr.shape != shape:
        raise ValueError(f"OnlineSmoother state '{what}' has shape {arr.shape}, expected {shape}")
    return arr


class OnlineSmoother:
    """Smooths one camera's pose stream. Call `update` once per frame, in capture order."""

    def __init__(self, params: SmoothingParams = SmoothingParams()):
        self.params = params
        self._filter = OneEuroFilter((NUM_KEYPOINTS, 2), params.min_cutoff, params.beta, params.d_cutoff)
        self._t_last: float | None = None
        # Frames since each keypoint was last accepted, capped at max_gap + 1 ("long gone").
        self._missing = np.full(NUM_KEYPOINTS, params.max_gap + 1, np.int64)
        self._outlier_run = np.zeros(NUM_KEYPOINTS, np.int64)
        # Smoothed offset of each keypoint from each of its anchors, when last both were seen.
        self._offsets = np.full((NUM_KEYPOINTS, ANCHORS.shape[1], 2), np.nan)
        # Ring of the raw limb lengths of recent frames (NaN where not seen), for running medians.
        self._lengths: deque[np.ndarray] = deque(maxlen=params.window)

    def update(self, keypoints: np.ndarray, t_seconds: float) -> tuple[np.ndarray, np.ndarray, bool]:
        """Process one frame's pose [17, 3] captured at `t_seconds`.

        Returns (smoothed [17, 3] float32, flags [17] uint8 of OBSERVED/IMPUTED/SMOOTHED/OUTLIER,
        person_present). Keypoints that could not be placed, and every keypoint of a frame without a
        person, come back as (0, 0, score 0) with no OBSERVED/IMPUTED flag. Imputed keypoints carry
        score = confidence_threshold (the lowest score that counts as seen).
        """
        p = self.params
        kp = check_poses(keypoints, "keypoints")
        if kp.shape != (NUM_KEYPOINTS, 3):
            raise ValueError(f"update takes one pose of shape [{NUM_KEYPOINTS}, 3], got {kp.shape}")
        t = float(t_seconds)
        if not np.isfinite(t):
            raise ValueError(f"update needs a finite capture time in seconds, got {t_seconds}")
        if self._t_last is not None and t <= self._t_last:
            raise ValueError(f"frames must arrive in capture order: t={t} is not after t={self._t_last}")
        self._t_last = t
        cap = p.max_gap + 1
        out = np.zeros((NUM_KEYPOINTS, 3), np.float32)
        flags = np.zeros(NUM_KEYPOINTS, np.uint8)

        conf = confident_mask(kp, p.confidence_threshold)
        if not person_present(conf, p.min_keypoints, p.min_torso):
            self._missing = np.minimum(self._missing + 1, cap)
            self._outlier_run[:] = 0
            return out, flags, False

        xy = kp[:, :2]
        tracked = self._filter.initialised[:, 0] & (self._missing <= p.max_gap)
        te = t - self._filter.t[:, 0]
        outlier = self._glitches(xy, conf, tracked, te)
        self._outlier_run = np.where(outlier, self._outlier_run + 1, 0)
        # A keypoint rejected too long is where it really is: take it and restart its filter.
        give_in = self._outlier_run > p.max_outlier_run
        outlier &= ~give_in
        self._outlier_run[give_in] = 0
        accepted = conf & ~outlier

        # Short gaps (keypoint still tracked) coast on; long ones are estimated from the skeleton.
        short = ~accepted & tracked
        restart = accepted & (~tracked | give_in)
        self._filter.reset(_per_coordinate(restart | (~accepted & ~tracked)))
        prev_x, prev_dx = self._filter.x.copy(), self._filter.dx.copy()
        self._filter(xy, t, _per_coordinate(accepted))
        self._coast(short, accepted & ~restart, prev_x, prev_dx, te, t)
        self._missing = np.where(accepted, 0, np.minimum(self._missing + 1, cap))

        smoothed = self._filter.x.copy()
        placed, estimated = estimate_from_anchors(smoothed, accepted | short, self._offsets)
        imputed = short | estimated

        fresh = anchor_offsets(smoothed, accepted)
        self._offsets = np.where(np.isfinite(fresh), np.round(fresh, _STORE_DECIMALS), self._offsets)
        self._lengths.append(np.round(limb_lengths(xy, accepted), _STORE_DECIMALS))

        show = accepted | imputed
        out[show, :2] = placed[show]
        out[:, 2] = np.where(accepted, kp[:, 2], np.where(imputed, p.confidence_threshold, 0.0))
        flags[accepted] |= OBSERVED | SMOOTHED
        flags[imputed] |= IMPUTED
        flags[outlier] |= OUTLIER
        return out, flags, True

    def _coast(
        self, short: np.ndarray, followed: np.ndarray, prev_x: np.ndarray, prev_dx: np.ndarray, te: np.ndarray, t: float
    ) -> None:
        """Carry the filters of briefly hidden keypoints (`short`) through this frame.

        Each extrapolates its own motion and also takes on the unexpected part of its first
        followed anchor's motion (its position and velocity innovation this frame): a hidden wrist
        keeps its place relative to a visible elbow rather than a place in the image.
        """
        ext_x, ext_dx = extrapolate(prev_x, prev_dx, te[:, None], self.params.velocity_decay_s)
        candidates = followed[ANCHORS]
        anchor = ANCHORS[np.arange(NUM_KEYPOINTS), candidates.argmax(axis=1)]
        has = np.asarray(candidates.any(axis=1))[:, None]
        surprise_x = np.where(followed[:, None], self._filter.x - ext_x, 0.0)
        surprise_dx = np.where(followed[:, None], self._filter.dx - ext_dx, 0.0)
        ext_x = ext_x + np.where(has, surprise_x[anchor], 0.0)
        ext_dx = ext_dx + np.where(has, surprise_dx[anchor], 0.0)
        self._filter.overwrite(_per_coordinate(short), ext_x, ext_dx, t)

    def _glitches(self, xy: np.ndarray, conf: np.ndarray, tracked: np.ndarray, te: np.ndarray) -> np.ndarray:
        """Outlier mask [17]: jumps away from the filter's prediction, then over-long limbs.

        Only tracked keypoints can jump; the tolerance grows with the frames they were unseen. A
        keypoint back after a long gap is not judged against the skeleton's guess: that guess is
        often further off than a glitch, and rejecting a true return costs more than the rare
        glitch it would catch (the limb check still applies).
        """
        p = self.params
        history = np.array(self._lengths) if self._lengths else np.full((1, len(SKELETON)), np.nan)
        size = nanmedian_quiet(body_size(history), axis=0)
        jumped = np.zeros(NUM_KEYPOINTS, bool)
        if np.isfinite(size):
            tolerance = p.jump_threshold * size * (1 + _TOLERANCE_GROWTH * self._missing)
            predicted = self._filter.x + self._filter.dx * te[:, None]
            jumped = conf & tracked & (np.linalg.norm(xy - predicted, axis=-1) > tolerance)
        usable = conf & ~jumped
        lengths = limb_lengths(xy, usable)
        typical = nanmedian_quiet(history, axis=0)
        enough = np.isfinite(history).sum(axis=0) >= _MIN_LIMB_SAMPLES
        bad = enough & limb_too_long(lengths, typical, size, p)
        return jumped | (blame_limbs(bad, lengths) & usable)

    def to_state(self) -> dict:
        """All state as a JSON-able dict of lists, ints and floats (None for unknown)."""
        return {
            "version": STATE_VERSION,
            "t_last": self._t_last,
            "filter": self._filter.to_state(),
            "missing": self._missing.tolist(),
            "outlier_run": self._outlier_run.tolist(),
            "offsets": _with_none(self._offsets),
            "limb_lengths": [_with_none(row) for row in self._lengths],
        }

    @classmethod
    def from_state(cls, state: dict, params: SmoothingParams = SmoothingParams()) -> OnlineSmoother:
        """Rebuild a smoother from `to_state()` output (after a JSON round trip, too)."""
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            raise ValueError(
                f"OnlineSmoother state must be a dict with version {STATE_VERSION}, got "
                f"{state.get('version') if isinstance(state, dict) else type(state).__name__}"
            )
        try:
            smoother = cls(params)
            smoother._t_last = None if state["t_last"] is None else float(state["t_last"])
            smoother._filter.load_state(state["filter"])
            smoother._missing = np.minimum(np.array(state["missing"], np.int64), params.max_gap + 1)
            smoother._outlier_run = np.array(state["outlier_run"], np.int64)
            smoother._offsets = _from_none(state["offsets"], smoother._offsets.shape, "offsets")
            for row in state["limb_lengths"]:  # a smaller window keeps the newest rows
                smoother._lengths.append(_from_none(row, (len(SKELETON),), "limb_lengths"))
        except KeyError as err:
            raise ValueError(f"OnlineSmoother state lacks the key {err}") from None
        if smoother._missing.shape != (NUM_KEYPOINTS,) or smoother._outlier_run.shape != (NUM_KEYPOINTS,):
            raise ValueError(f"OnlineSmoother state 'missing'/'outlier_run' must have {NUM_KEYPOINTS} entries")
        return smoother


def smooth_online(
    poses: np.ndarray, times: np.ndarray, params: SmoothingParams = SmoothingParams()
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run a fresh OnlineSmoother over a sequence: (poses [T, 17, 3], flags [T, 17], present [T])."""
    poses = check_poses(poses)
    if poses.ndim != 3:
        raise ValueError(f"smooth_online needs a sequence [T, 17, 3], got {poses.shape}")
    times = check_times(times, len(poses))
    smoother = OnlineSmoother(params)
    out = np.zeros(poses.shape, np.float32)
    flags = np.zeros(poses.shape[:2], np.uint8)
    present = np.zeros(len(poses), bool)
    for i in range(len(poses)):
        out[i], flags[i], present[i] = smoother.update(poses[i], times[i])
    return out, flags, present
