"""The one stick-figure pose-map renderer, shared by dataset assembly and rendition.

The generator learns "pose map -> this person", so the training pairs and the maps rendered at
show time must come from the same drawing code: same limb colours, same line widths relative to
the output size, same placement. Everything here is deterministic.

Coordinates are continuous pixel coordinates: a source image of size (w, h) spans [0, w] x [0, h]
and pixel (i, j) covers [i, i+1) x [j, j+1). This is what "normalized coordinate * image size"
gives, which is how the pose estimators report keypoints.

Placement (letterbox): a source of size (w, h) is scaled by s = min(W / w, H / h) so it fits the
output (W, H) without distortion, rounded to whole pixels (rw, rh) = (round(w*s), round(h*s)), and
centred with integer offsets ox = (W - rw) // 2, oy = (H - rh) // 2; the rest is black. A point maps
as x' = x * rw / w + ox, y' = y * rh / h + oy. `letterbox_image` applies exactly the same mapping
to a photo, so a frame and its pose map stay pixel-aligned.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from schemas.keypoints import NUM_KEYPOINTS, SKELETON

# One RGB colour per SKELETON limb, in SKELETON order. Part of the training contract: changing a
# colour invalidates every trained generator.
LIMB_COLOURS: tuple[tuple[int, int, int], ...] = (
    (255, 0, 170),
    (170, 0, 255),
    (255, 0, 255),
    (85, 0, 255),  # face
    (255, 85, 0),
    (255, 170, 0),
    (170, 255, 0),
    (0, 255, 85),  # torso
    (255, 0, 0),
    (255, 255, 0),  # left arm
    (0, 255, 0),
    (0, 255, 170),  # right arm
    (0, 170, 255),
    (0, 85, 255),  # left leg
    (0, 255, 255),
    (0, 0, 255),  # right leg
)
KEYPOINT_COLOUR: tuple[int, int, int] = (255, 255, 255)
assert len(LIMB_COLOURS) == len(SKELETON)

DEFAULT_SCORE_THRESHOLD = 0.2
# Line thickness and dot radius as fractions of min(W, H): 256 px -> 4 px lines, 3 px dots.
DEFAULT_LINE_FRAC = 0.015
DEFAULT_DOT_FRAC = 0.012

_SHIFT = 4  # cv2 fixed-point bits: draw with 1/16 px precision instead of rounding to pixels
_ONE = 1 << _SHIFT


def as_size(size: int | tuple[int, int]) -> tuple[int, int]:
    """(width, height) from an int (square) or a pair; rejects non-positive sizes."""
    if isinstance(size, (int, np.integer)):
        w = h = int(size)
    else:
        try:
            w, h = (int(v) for v in size)
        except (TypeError, ValueError):
            raise ValueError(f"size must be an int or a (width, height) pair, got {size!r}") from None
    if w <= 0 or h <= 0:
        raise ValueError(f"size must be positive, got {(w, h)}")
    return w, h


def check_pose(pose: np.ndarray) -> np.ndarray:
    """The pose as float32 [17, 3]; a clear error for anything else."""
    arr = np.asarray(pose, dtype=np.float32)
    if arr.shape != (NUM_KEYPOINTS, 3):
        raise ValueError(f"pose must have shape ({NUM_KEYPOINTS}, 3) (x, y, score), got {arr.shape}")
    return arr


@dataclass(frozen=True)
class Letterbox:
    """The source -> output mapping described in the module docstring."""

    src_size: tuple[int, int]
    out_size: tuple[int, int]
    sx: float
    sy: float
    ox: int
    oy: int

    @classmethod
    def fit(cls, src_size: int | tuple[int, int], out_size: int | tuple[int, int]) -> Letterbox:
        (w, h), (W, H) = as_size(src_size), as_size(out_size)
        s = min(W / w, H / h)
        rw, rh = max(1, min(W, round(w * s))), max(1, min(H, round(h * s)))
        return cls((w, h), (W, H), rw / w, rh / h, (W - rw) // 2, (H - rh) // 2)

    @property
    def scaled_size(self) -> tuple[int, int]:
        return round(self.src_size[0] * self.sx), round(self.src_size[1] * self.sy)

    def to_output(self, xy: np.ndarray) -> np.ndarray:
        """Source pixel coordinates [..., 2] -> output pixel coordinates."""
        xy = np.asarray(xy, dtype=np.float32)
        return np.stack([xy[..., 0] * self.sx + self.ox, xy[..., 1] * self.sy + self.oy], axis=-1)

    def pose_to_output(self, pose: np.ndarray) -> np.ndarray:
        """A [17, 3] pose in source pixels -> the same pose in output pixels (scores kept)."""
        pose = check_pose(pose)
        out = pose.copy()
        out[:, :2] = self.to_output(pose[:, :2])
        return out


def letterbox_image(image: np.ndarray, out_size: int | tuple[int, int]) -> np.ndarray:
    """Scale and pad an HxWx3 uint8 image exactly as pose maps are placed (black borders)."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 HxWx3, got {image.dtype} {image.shape}")
    h, w = image.shape[:2]
    box = Letterbox.fit((w, h), out_size)
    rw, rh = box.scaled_size
    interp = cv2.INTER_AREA if rw < w else cv2.INTER_LINEAR
    out = np.zeros((box.out_size[1], box.out_size[0], 3), np.uint8)
    out[box.oy : box.oy + rh, box.ox : box.ox + rw] = cv2.resize(image, (rw, rh), interpolation=interp)
    return out


def _thickness(size: tuple[int, int], line_frac: float, dot_frac: float) -> tuple[int, int]:
    m = min(size)
    return max(1, round(line_frac * m)), max(1, round(dot_frac * m))


def _draw(canvas: np.ndarray, xy: np.ndarray, visible: np.ndarray, line: int, radius: int) -> None:
    # cv2 pixel centres sit at integer coordinates; ours at +0.5 (see module docstring).
    fixed = np.round((xy - 0.5) * _ONE).astype(np.int64)
    # Far-off points (bad estimates) would overflow cv2's int32 fixed-point maths; clamp them well
    # outside the canvas so the visible part of the line keeps its direction.
    lim = (4 * max(canvas.shape[:2]) + 16) * _ONE
    fixed = np.clip(fixed, -lim, lim)
    pts = [tuple(int(v) for v in p) for p in fixed]
    for (a, b), colour in zip(SKELETON, LIMB_COLOURS):
        if visible[a] and visible[b]:
            cv2.line(canvas, pts[a], pts[b], colour, line, cv2.LINE_AA, _SHIFT)
    for i in np.flatnonzero(visible):
        cv2.circle(canvas, pts[i], radius * _ONE, KEYPOINT_COLOUR, -1, cv2.LINE_AA, _SHIFT)


def render_pose_map(
    pose: np.ndarray,
    src_size: int | tuple[int, int],
    out_size: int | tuple[int, int] = 256,
    *,
    score_threshold: float = DEFAULT_SCORE_THRESHOLD,
    line_frac: float = DEFAULT_LINE_FRAC,
    dot_frac: float = DEFAULT_DOT_FRAC,
) -> np.ndarray:
    """Draw one pose as a stick figure on black: uint8 RGB [H, W, 3] at out_size (W, H).

    pose is [17, 3] in pixels of a source image of size src_size (w, h); keypoints scoring below
    score_threshold are skipped, and so is every limb touching one.
    """
    pose = check_pose(pose)
    box = Letterbox.fit(src_size, out_size)
    W, H = box.out_size
    canvas = np.zeros((H, W, 3), np.uint8)
    visible = np.isfinite(pose).all(axis=1) & (pose[:, 2] >= score_threshold)
    line, radius = _thickness((W, H), line_frac, dot_frac)
    _draw(canvas, np.nan_to_num(box.to_output(pose[:, :2])), visible, line, radius)
    return canvas


def render_pose_maps(poses: np.ndarray, src_size, out_size=256, **style) -> np.ndarray:
    """render_pose_map over a [T, 17, 3] sequence -> uint8 [T, H, W, 3]."""
    poses = np.asarray(poses, dtype=np.float32)
    if poses.ndim != 3:
        raise ValueError(f"poses must have shape (T, {NUM_KEYPOINTS}, 3), got {poses.shape}")
    W, H = as_size(out_size)
    out = np.empty((len(poses), H, W, 3), np.uint8)
    for i, p in enumerate(poses):
        out[i] = render_pose_map(p, src_size, (W, H), **style)
    return out


def draw_pose_overlay(
    image: np.ndarray,
    pose: np.ndarray,
    *,
    score_threshold: float = DEFAULT_SCORE_THRESHOLD,
    line_frac: float = DEFAULT_LINE_FRAC,
    dot_frac: float = DEFAULT_DOT_FRAC,
    alpha: float = 1.0,
) -> np.ndarray:
    """A copy of an RGB uint8 photo with the pose (in the photo's pixels) drawn over it.

    alpha < 1 blends the figure with the photo, for previews where the person should show through.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 HxWx3, got {image.dtype} {image.shape}")
    pose = check_pose(pose)
    h, w = image.shape[:2]
    layer = image.copy()
    visible = np.isfinite(pose).all(axis=1) & (pose[:, 2] >= score_threshold)
    line, radius = _thickness((w, h), line_frac, dot_frac)
    _draw(layer, np.nan_to_num(pose[:, :2]), visible, line, radius)
    if alpha >= 1.0:
        return layer
    return cv2.addWeighted(layer, float(alpha), image, 1.0 - float(alpha), 0.0)
