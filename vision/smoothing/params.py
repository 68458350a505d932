"""Tuning knobs of the imputation and smoothing pipeline, with defaults for 30 fps video at 640x480."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class SmoothingParams:
    # One Euro filter (Casiez et al. 2012). Cutoffs in Hz; beta in 1/px, because the speed it scales
    # is in px/s. Low min_cutoff kills jitter when still; beta opens the filter when moving (less lag).
    min_cutoff: float = 1.0
    beta: float = 0.1
    d_cutoff: float = 2.0
    # A keypoint with a lower score is treated as missing.
    confidence_threshold: float = 0.3
    # Gaps up to this many frames are interpolated (offline) or extrapolated (online); longer ones
    # are estimated from the rest of the skeleton.
    max_gap: int = 4
    # Online extrapolation through short gaps: the keypoint's last velocity decays with this time
    # constant (seconds; 0 holds, math.inf keeps it constant), on top of following its visible
    # anchor. A short constant: velocities estimated from noisy keypoints overshoot quickly.
    velocity_decay_s: float = 0.05
    # Frames of history for the running median limb lengths and body size.
    window: int = 30
    # A keypoint further than this many body sizes (torso lengths) from where it was expected is a jump.
    jump_threshold: float = 0.45
    # A limb longer than this multiple of its running median length is a glitch. Only lengthening is
    # flagged: foreshortening legitimately makes a limb look short in 2D.
    limb_ratio: float = 1.6
    # ... and longer than it by this many body sizes (so pixel noise on short face limbs is no glitch).
    limb_min_excess: float = 0.2
    # After this many consecutive rejected frames an "outlier" is accepted as the real position (the
    # person really moved that fast), so the filter cannot lock onto a stale track.
    max_outlier_run: int = 3
    # Frames with fewer confident keypoints, or fewer confident torso keypoints, have no person.
    min_keypoints: int = 4
    min_torso: int = 1
    # Centered (offline) smoothing windows, in frames.
    savgol_window: int = 13
    savgol_polyorder: int = 2
    median_window: int = 5

    def __post_init__(self) -> None:
        for name in ("min_cutoff", "d_cutoff"):
            if not getattr(self, name) > 0:
                raise ValueError(f"SmoothingParams.{name} must be > 0 Hz, got {getattr(self, name)}")
        if not self.beta >= 0:
            raise ValueError(f"SmoothingParams.beta must be >= 0, got {self.beta}")
        if not 0.0 <= self.confidence_threshold <= 1.0:
            raise ValueError(f"SmoothingParams.confidence_threshold must be in [0, 1], got {self.confidence_threshold}")
        if not (self.velocity_decay_s >= 0 or math.isinf(self.velocity_decay_s)):
            raise ValueError(f"SmoothingParams.velocity_decay_s must be >= 0, got {self.velocity_decay_s}")
        for name in ("max_gap", "max_outlier_run", "min_torso", "savgol_polyorder"):
            if getattr(self, name) < 0:
                raise ValueError(f"SmoothingParams.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("window", "min_keypoints", "median_window"):
            if getattr(self, name) < 1:
                raise ValueError(f"SmoothingParams.{name} must be >= 1, got {getattr(self, name)}")
        if not self.limb_min_excess >= 0:
            raise ValueError(f"SmoothingParams.limb_min_excess must be >= 0, got {self.limb_min_excess}")
        if not self.jump_threshold > 0 or not self.limb_ratio > 1:
            raise ValueError(
                "SmoothingParams.jump_threshold must be > 0 and limb_ratio > 1, got "
                f"{self.jump_threshold} and {self.limb_ratio}"
            )
        if self.savgol_window % 2 == 0 or self.savgol_window <= self.savgol_polyorder:
            raise ValueError(
                "SmoothingParams.savgol_window must be odd and greater than savgol_polyorder, got "
                f"{self.savgol_window} and {self.savgol_polyorder}"
            )
        if self.median_window % 2 == 0:
            raise ValueError(f"SmoothingParams.median_window must be odd, got {self.median_window}")

    def to_dict(self) -> dict:
        return asdict(self)
