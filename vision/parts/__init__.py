"""Body-part segmentation: 24 BodyPix parts per person, as an alternative to stick-figure poses.

    seg = load_segmenter("auto", models_dir)     # BodyPix, else parts derived from BlazePose
    result = seg.segment(frame_rgb)              # PartsResult
    result.part_ids    # uint8 [H, W]: 0 background, 1..24 = PART_NAMES
    result.person_ids  # uint8 [H, W]: 0 no one, k = result.persons[k - 1]
    result.persons     # [Person]: COCO-17 keypoints (x_px, y_px, score)

Part ids and colours: vision.parts.colours. Repairing colour-perturbed part masks:
vision.parts.repair. Rendering for the generator: vision.partsmap.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from vision.parts.colours import NUM_PARTS, PALETTE, PART_ID, PART_NAMES
from vision.parts.result import PartsResult

log = logging.getLogger(__name__)

KINDS = ("auto", "bodypix", "pose")

__all__ = ["KINDS", "NUM_PARTS", "PALETTE", "PART_ID", "PART_NAMES", "PartsResult", "load_segmenter"]


def load_segmenter(kind: str = "auto", models_dir: Path | None = None, num_threads: int = 1, **options: Any):
    """A part segmenter with ``segment(image_rgb) -> PartsResult``.

    kind: "bodypix" (Edge TPU or CPU; see vision.parts.bodypix), "pose" (BlazePose keypoints
    and person mask, nearest limb per pixel; one person), or "auto" (BodyPix, else "pose" with
    the reason logged). options go to BodyPixSegmenter (device=, cache_dir=, mask_threshold=,
    ...) for "bodypix"; "auto" passes them to BodyPix only.
    Raises vision.pose.BackendUnavailable when the chosen kind cannot run.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown part segmenter {kind!r}; choose one of {KINDS}")
    from vision.parts.surgery import ModelSurgeryError
    from vision.pose.base import BackendUnavailable

    if kind in ("auto", "bodypix"):
        from vision.parts.bodypix import BodyPixSegmenter

        try:
            return BodyPixSegmenter(models_dir, num_threads, **options)
        except (BackendUnavailable, ModelSurgeryError, OSError) as e:
            if kind == "bodypix":
                raise
            log.warning("BodyPix unavailable (%s): deriving parts from BlazePose keypoints and mask", e)
    from vision.parts.from_pose import PoseDerivedSegmenter
    from vision.pose import load_estimator

    return PoseDerivedSegmenter(load_estimator("blazepose", models_dir, num_threads, with_mask=True))
