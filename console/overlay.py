"""The preview image: a camera frame with its smoothed people drawn over it, flagged keypoints marked.

Every tracked person gets a box and a tag with their track id in their own colour (the same colour
for the same id all session; the main person's tag says "main"), so the operator sees who is who
and whether identities hold when people cross. A frame whose main person has imputed or outlier
keypoints gets a coloured border and a label, and each such keypoint (anyone's) a ring, so the
operator sees at a glance when a figure is partly guessed.
"""

from __future__ import annotations

import cv2
import numpy as np

from schemas import Frame, SmoothedPose
from schemas.images import ImageError, decode_bgr
from schemas.keypoints import IMPUTED, OUTLIER
from vision.posemap import DEFAULT_DOT_FRAC, DEFAULT_LINE_FRAC, DEFAULT_SCORE_THRESHOLD, draw_pose_overlay

# BGR, since the finished image is drawn on and encoded by OpenCV.
IMPUTED_COLOUR = (0, 170, 255)  # amber
OUTLIER_COLOUR = (40, 40, 230)  # red
NOTE_COLOUR = (90, 90, 90)  # grey: no pose yet, no person
BORDER_FRAC = 0.02
# Track colours (BGR), by track id: well apart in hue and bright enough to read on a photo, and none
# is the amber or red of the flags.
TRACK_COLOURS = (
    (255, 160, 0),  # azure
    (60, 200, 60),  # green
    (200, 60, 200),  # magenta
    (0, 220, 220),  # yellow
    (255, 80, 80),  # blue
    (160, 255, 120),  # mint
    (120, 60, 255),  # rose
    (255, 255, 0),  # cyan
)


class PreviewError(ValueError):
    """A frame that cannot be shown (its image does not decode)."""


def flag_counts(pose: SmoothedPose | None) -> tuple[int, int]:
    """(imputed, outlier) keypoint counts of a smoothed pose's main person; (0, 0) without flags."""
    if pose is None or not pose.flags:
        return 0, 0
    return sum(1 for f in pose.flags if f & IMPUTED), sum(1 for f in pose.flags if f & OUTLIER)


def track_colour(track: int | None) -> tuple[int, int, int]:
    """A person's colour (BGR) in the preview: the same for the same track id, grey untracked."""
    return NOTE_COLOUR if track is None else TRACK_COLOURS[(track - 1) % len(TRACK_COLOURS)]


def _size(keypoints: np.ndarray, frame_height: int) -> float:
    """How big a figure is drawn, 0.3..1: one filling half the frame's height or more is drawn at
    full size; a small pedestrian far off gets thinner lines, dots and rings so it stays visible."""
    seen = keypoints[keypoints[:, 2] >= DEFAULT_SCORE_THRESHOLD, 1]
    if len(seen) < 2:
        return 1.0
    return float(np.clip((seen.max() - seen.min()) / (0.5 * frame_height), 0.3, 1.0))


def _tag(image: np.ndarray, keypoints: np.ndarray, text: str, colour: tuple[int, int, int]) -> None:
    """A box around the person's keypoints and a filled tag with the text above it."""
    seen = keypoints[keypoints[:, 2] >= DEFAULT_SCORE_THRESHOLD, :2]
    if not len(seen):
        return
    pad = max(4, round(image.shape[1] * 0.01))
    (x0, y0), (x1, y1) = (seen.min(axis=0) - pad).round().astype(int), (seen.max(axis=0) + pad).round().astype(int)
    thickness = max(1, round(image.shape[1] / 400))
    cv2.rectangle(image, (int(x0), int(y0)), (int(x1), int(y1)), colour, thickness, cv2.LINE_AA)
    scale = max(0.4, image.shape[1] / 1100)
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    top = max(0, int(y0) - th - base - 2 * thickness)
    cv2.rectangle(image, (int(x0), top), (int(x0) + tw + 2 * thickness + 2, int(y0)), colour, -1)
    cv2.putText(
        image, text, (int(x0) + thickness + 1, int(y0) - base), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0),
        thickness, cv2.LINE_AA,
    )  # fmt: skip


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
    people = (pose.persons + pose.others) if pose is not None else []
    if pose is not None and people:
        # Poses are in the pixels of the frame they were estimated on; follow a resized image.
        scale = np.array([w / pose.width, h / pose.height, 1.0], np.float32)
        figures = [(p.array() * scale, p) for p in people]
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        for keypoints, _ in figures:
            size = _size(keypoints, h)
            rgb = draw_pose_overlay(
                rgb, keypoints, alpha=0.85, line_frac=DEFAULT_LINE_FRAC * size, dot_frac=DEFAULT_DOT_FRAC * size
            )
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        for i, (keypoints, person) in enumerate(figures):
            radius = max(3, round(min(w, h) * 0.025 * _size(keypoints, h)))
            flags = person.flags or (pose.flags if i == 0 and pose.persons else None) or [0] * len(keypoints)
            for (x, y, score), f in zip(keypoints, flags):
                if score >= DEFAULT_SCORE_THRESHOLD and f & (IMPUTED | OUTLIER):
                    cv2.circle(
                        bgr,
                        (round(x), round(y)),
                        radius,
                        OUTLIER_COLOUR if f & OUTLIER else IMPUTED_COLOUR,
                        max(2, radius // 3),
                        cv2.LINE_AA,
                    )
        for i, (keypoints, person) in enumerate(figures):
            if person.track is not None:
                main = i == 0 and bool(pose.persons)
                _tag(bgr, keypoints, f"#{person.track}" + (" main" if main else ""), track_colour(person.track))
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
    elif not pose.persons and not pose.others:
        _label(bgr, "no person", NOTE_COLOUR)
    elif not pose.persons:
        _label(bgr, "main person not in view", NOTE_COLOUR)
    ok, jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise PreviewError(f"frame {frame.session}/{frame.camera}#{frame.seq}: JPEG encoding failed")
    return jpeg.tobytes()
