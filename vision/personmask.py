"""Person masks for frames that come with a pose: which pixels are the person.

The pose stage publishes keypoints only, yet the trainer needs the person's pixels: to estimate
the background plate (vision.plate) and to teach the generator its alpha matte. Two sources:

* "blazepose": BlazePose's landmark model run on the region the pose points at
  (vision.pose.blazepose.Roi.from_keypoints), whatever estimator found the pose; its
  segmentation output is a soft mask (0..1) that follows hair and clothes. About 20 ms a frame on
  one CPU thread with the lite model.
* "silhouette": drawn from the keypoints alone: thick limbs, a filled torso and a head disc, sized
  by the body. Coarse (it misses loose clothes and hair, and takes background between the legs);
  the fallback where the BlazePose models are missing, and for frames where BlazePose finds
  nobody in the region.

`PersonMasker("auto")` uses BlazePose when its models load, else the silhouette; its `name` says
which, and `fallbacks` counts frames that fell back to the silhouette.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from schemas.keypoints import INDEX, NUM_KEYPOINTS, SKELETON

if TYPE_CHECKING:
    from vision.pose.blazepose import BlazePoseEstimator

log = logging.getLogger(__name__)

KINDS = ("auto", "blazepose", "silhouette")
DEFAULT_SCORE_THRESHOLD = 0.2
_TORSO = (INDEX["left_shoulder"], INDEX["right_shoulder"], INDEX["right_hip"], INDEX["left_hip"])
_SHIFT = 4  # cv2 fixed-point bits


def body_height(pose: np.ndarray, score_threshold: float = DEFAULT_SCORE_THRESHOLD) -> float:
    """The vertical extent of the confident keypoints (0 with fewer than two)."""
    kp = np.asarray(pose, np.float32)
    ok = np.isfinite(kp).all(axis=1) & (kp[:, 2] >= score_threshold)
    return float(np.ptp(kp[ok, 1])) if ok.sum() >= 2 else 0.0


def silhouette(
    pose: np.ndarray, size: tuple[int, int], *, score_threshold: float = DEFAULT_SCORE_THRESHOLD
) -> np.ndarray:
    """A rough person mask (float32 [H, W], 0 or 1) at size (W, H) from [17, 3] keypoints alone.

    Limbs are drawn 12% of the body's height wide, the torso quadrilateral filled, the head a disc
    on the nose; nothing is drawn with fewer than three confident keypoints."""
    w, h = size
    kp = np.asarray(pose, np.float32)
    if kp.shape != (NUM_KEYPOINTS, 3):
        raise ValueError(f"pose must be [{NUM_KEYPOINTS}, 3], got {kp.shape}")
    out = np.zeros((h, w), np.uint8)
    ok = np.isfinite(kp).all(axis=1) & (kp[:, 2] >= score_threshold)
    if ok.sum() < 3:
        return out.astype(np.float32)
    xy = kp[:, :2]
    height = max(body_height(kp, score_threshold), 0.5 * float(np.ptp(xy[ok, 0])), 4.0)
    lim = 4 * max(w, h) + 16
    pts = np.round((np.clip(np.nan_to_num(xy), -lim, lim) - 0.5) * (1 << _SHIFT)).astype(np.int32)
    line = max(2, round(0.12 * height))
    for a, b in SKELETON:
        if ok[a] and ok[b]:
            cv2.line(out, tuple(pts[a]), tuple(pts[b]), 1, line, cv2.LINE_8, _SHIFT)
    if ok[list(_TORSO)].all():
        cv2.fillConvexPoly(out, pts[list(_TORSO)], 1, cv2.LINE_8, _SHIFT)
    if ok[INDEX["nose"]]:
        radius = max(2, round(0.1 * height)) << _SHIFT
        cv2.circle(out, tuple(pts[INDEX["nose"]]), radius, 1, -1, cv2.LINE_8, _SHIFT)
    return out.astype(np.float32)


class PersonMasker:
    """mask(image, pose) -> float32 [H, W] in 0..1 for the person the pose belongs to."""

    def __init__(self, kind: str = "auto", models_dir: Path | str | None = None, threads: int = 1):
        if kind not in KINDS:
            raise ValueError(f"unknown person mask source {kind!r}; choose one of {', '.join(KINDS)}")
        self._blazepose: BlazePoseEstimator | None = None
        self.why = ""
        if kind in ("auto", "blazepose"):
            from vision import models
            from vision.pose import load_estimator

            folder = Path(models_dir) if models_dir else None
            try:
                self._blazepose = load_estimator(  # type: ignore[assignment]
                    "blazepose",
                    folder,
                    threads,
                    # The lite landmark model is quicker; the full one (the wheel's) does where it is missing.
                    model="full"
                    if models.available("blazepose", folder) and not models.available("blazepose-lite", folder)
                    else "lite",
                    track=False,
                    with_mask=True,
                    min_presence=0.3,
                )
            except (RuntimeError, OSError, ValueError) as exc:  # BackendUnavailable or a model that will not load
                if kind == "blazepose":
                    raise
                self.why = f"BlazePose is unavailable ({type(exc).__name__}: {exc}); masks are drawn from the pose"
                log.warning("%s", self.why)
        self.name = "blazepose" if self._blazepose is not None else "silhouette"
        self.fallbacks = 0  # frames BlazePose found nobody in, masked by the silhouette instead

    def __repr__(self) -> str:
        return f"<PersonMasker {self.name}>"

    def mask(self, image_rgb: np.ndarray, pose: np.ndarray) -> np.ndarray:
        h, w = image_rgb.shape[:2]
        if self._blazepose is not None:
            from vision.pose.blazepose import Roi

            roi = Roi.from_keypoints(pose)
            person = self._blazepose.estimate_at(image_rgb, roi) if roi is not None else None
            if person is not None and person.mask is not None:
                return np.asarray(person.mask, np.float32)
            self.fallbacks += 1
        return silhouette(pose, (w, h))
