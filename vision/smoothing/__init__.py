"""Keypoint imputation and smoothing (pure numpy/scipy), online per camera and offline per video.

Poses follow schemas.keypoints: float32 [17, 3] of (x_px, y_px, score); flags are bit sets of
OBSERVED / IMPUTED / SMOOTHED / OUTLIER.
"""

from .centered import savgol_smooth, weighted_median_smooth
from .glitches import Glitch, detect_glitches, render_report
from .impute import impute_sequence, interpolate_gaps
from .offline import smooth_sequence
from .one_euro import OneEuroFilter, one_euro_sequence
from .online import OnlineSmoother, smooth_online
from .params import SmoothingParams

__all__ = [
    "Glitch",
    "OneEuroFilter",
    "OnlineSmoother",
    "SmoothingParams",
    "detect_glitches",
    "impute_sequence",
    "interpolate_gaps",
    "one_euro_sequence",
    "render_report",
    "savgol_smooth",
    "smooth_online",
    "smooth_sequence",
    "weighted_median_smooth",
]
