"""The preview image: a camera frame with its smoothed pose drawn over it, flagged keypoints marked.

A frame whose pose has imputed or outlier keypoints gets a coloured border and a label, and each
such keypoint a ring, so the operator sees at a glance when the figure is partly guessed.
"""

from __future__ import annotations

import cv2
import numpy as np

from schemas import Frame, SmoothedPose
from schemas.images import ImageError, decode_bgr
from schemas.keypoints import IMPUTED, OUTLIER
from vision.posemap import DEFAULT_SCORE_THRESHOLD, draw_pose_overlay

# BGR, since the finished image is drawn on and encoded by OpenCV.
IMPUTED_COLOUR = (0, 170, 255)  # amber
OUTLIER_COLOUR = (40, 40, 230)  # red
NOTE_COLOUR = (90, 90, 90)  # grey: no pose yet, no person
BORDER_FRAC = 0.02


class PreviewError(ValueError):
    """A frame that cannot be shown (its image does not decode)."""


def flag_counts(pose: SmoothedPose | None) -> tuple[int, int]:
    """(imputed, outlier) keypoint counts of a smoothed pose; (0, 0) without flags."""
    if pose is None or not pose.flags:
        return 0, 0
    return sum(1 for f in pose.flags if f & IMPUTED), sum(1 for f in pose.flags if f & OUTLIER)


def _label(image: np.ndarray, text: str, colour: tuple[int, int, int]) -> None:
    scale = max(0.45, image.shape[1] / 900)
    thickness = max(1, round(scale * 1.6))
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    pad = max(4, th // 2)
    x0 = y0 = max(6, round(image.shape[1] * BORDER_FRAC) + 4)
    cv2.rectangle(image, (x0, y0), (x0 + tw + 2 * pad, y0 + th + base + 2 * pad), colour, -1)
    cv2.putText(
        image, text, (x0 + pad, y0 + pad + th), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness, cv2.LINE_AA
    )


def render_preview(frame: Frame, pose: SmoothedPose | None, *, max_width: int = 640, quality: int = 80) -> bytes:
    """JPEG bytes of ``frame`` with ``pose`` (of the same frame, or None) drawn over it."""
    try:
        bgr = decode_bgr(frame)
    except ImageError as exc:
        raise PreviewError(
            f"frame {frame.session}/{frame.camera}#{frame.seq}: its image does not decode: {exc}"
        ) from None
    h, w = bgr.shape[:2]
    imputed, outlier = flag_counts(pose)
    if pose is not None and pose.persons:
        keypoints = pose.persons[0].array()
        # The pose is in the pixels of the frame it was estimated on; follow a resized image.
        keypoints[:, 0] *= w / pose.width
        keypoints[:, 1] *= h / pose.height
        rgb = draw_pose_overlay(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), keypoints, alpha=0.85)
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        radius = max(4, round(min(w, h) * 0.025))
        for (x, y, score), f in zip(keypoints, pose.flags or [0] * len(keypoints)):
            if score >= DEFAULT_SCORE_THRESHOLD and f & (IMPUTED | OUTLIER):
                cv2.circle(
                    bgr,
                    (round(x), round(y)),
                    radius,
                    OUTLIER_COLOUR if f & OUTLIER else IMPUTED_COLOUR,
                    max(2, radius // 3),
                    cv2.LINE_AA,
                )
    if w > max_width:
        bgr = cv2.resize(bgr, (max_width, max(1, round(h * max_width / w))), interpolation=cv2.INTER_AREA)

    if outlier or imputed:
        colour = OUTLIER_COLOUR if outlier else IMPUTED_COLOUR
        edge = max(3, round(bgr.shape[1] * BORDER_FRAC))
        cv2.rectangle(bgr, (0, 0), (bgr.shape[1] - 1, bgr.shape[0] - 1), colour, 2 * edge)
        parts = ([f"{outlier} outlier"] if outlier else []) + ([f"{imputed} imputed"] if imputed else [])
        _label(bgr, " / ".join(parts), colour)
    elif pose is None:
        _label(bgr, "no pose yet", NOTE_COLOUR)
    elif not pose.persons:
        _label(bgr, "no person", NOTE_COLOUR)
    ok, jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise PreviewError(f"frame {frame.session}/{frame.camera}#{frame.seq}: JPEG encoding failed")
    return jpeg.tobytes()
