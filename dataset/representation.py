"""Which picture the generator learns from: the stick figure, the body-part map, or both.

    "pose"        vision.posemap's stick figure (the default)
    "parts"       the 24 BodyPix parts in their palette colours (vision.partsmap)
    "pose+parts"  the part map with the pose's face keypoints drawn on top

The assembler draws every sample's input in one representation and the manifest records it, so
the trainer and the rendition use the same one. Part maps need a part segmenter on every frame
(vision.parts); it is loaded only when a representation needs it.

A sample, like a reference frame, carries one person's pose (the most confident one), so its part
map keeps that person alone: the rendition moves the map with that pose (trainer.normalize), which
has no meaning for anyone else in the picture.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np

from vision.partsmap import KINDS as REPRESENTATIONS
from vision.posemap import DEFAULT_SCORE_THRESHOLD, check_pose

log = logging.getLogger(__name__)

DEFAULT_REPRESENTATION = "pose"

__all__ = [
    "DEFAULT_REPRESENTATION",
    "REPRESENTATIONS",
    "LazySegmenter",
    "check_representation",
    "main_person_parts",
    "needs_parts",
]


def check_representation(kind: str) -> str:
    if kind not in REPRESENTATIONS:
        raise ValueError(f"unknown representation {kind!r}; choose one of {', '.join(REPRESENTATIONS)}")
    return kind


def needs_parts(kind: str) -> bool:
    """Whether the representation is drawn from part maps (each frame must be segmented)."""
    return check_representation(kind) != "pose"


def main_person_parts(result, pose: np.ndarray | None, score_threshold: float = DEFAULT_SCORE_THRESHOLD) -> np.ndarray:
    """The part ids (uint8 [H, W]) of the person the pose belongs to; everyone else is background.

    result: a vision.parts.PartsResult of the frame; pose: [17, 3] in the frame's pixels.
    The person is the one whose pixels (result.person_ids) most of the pose's confident keypoints
    fall on. Without person ids, or when no keypoint falls on anyone, all parts are kept.
    """
    part_ids, person_ids = result.part_ids, result.person_ids
    if pose is None or not person_ids.any():
        return part_ids.copy()
    pose = check_pose(pose)
    h, w = person_ids.shape
    ok = np.isfinite(pose).all(axis=1) & (pose[:, 2] >= score_threshold)
    # Keypoints are continuous coordinates with pixel centres at +0.5 (vision.posemap).
    xs, ys = np.floor(pose[ok, 0]).astype(np.int64), np.floor(pose[ok, 1]).astype(np.int64)
    inside = (xs >= 0) & (xs < w) & (ys >= 0) & (ys < h)
    votes = person_ids[ys[inside], xs[inside]]
    votes = votes[votes > 0]
    if not votes.size:
        return part_ids.copy()
    who = np.bincount(votes).argmax()
    return np.where(person_ids == who, part_ids, 0).astype(np.uint8)


class LazySegmenter:
    """vision.parts.load_segmenter, called on first use (and once, also across threads).

    kind: "auto" (BodyPix, else parts derived from BlazePose), "bodypix" or "pose". Models come
    from settings.models_dir; BodyPix's decoder-less model is cached under <state_dir>/models.
    """

    def __init__(self, settings, kind: str = "auto") -> None:
        self.settings, self.kind = settings, kind
        self._segmenter = None
        self._lock = threading.Lock()

    def load(self):
        """The segmenter; raises vision.pose.BackendUnavailable when none can run."""
        with self._lock:
            if self._segmenter is None:
                from vision.parts import load_segmenter

                s = self.settings
                self._segmenter = load_segmenter(
                    self.kind, Path(s.models_dir), s.pose_threads, cache_dir=Path(s.state_dir) / "models"
                )
                log.info("part segmenter: %r", self._segmenter)
            return self._segmenter

    @property
    def name(self) -> str:
        return getattr(self.load(), "name", self.kind)

    def segment(self, image_rgb: np.ndarray):
        return self.load().segment(image_rgb)
