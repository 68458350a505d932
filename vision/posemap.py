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

Styles (part of the training contract: recorded in manifests and checkpoints, a generator reads
the style it learnt):
* "stick" (the original): limbs in LIMB_COLOURS, keypoints as white dots.
* "facing": the stick figure drawn over its torso filled in a colour that says which way the body
  faces (FRONT_COLOUR when the person shows the camera their front, i.e. their left shoulder is
  on the image's right; BACK_COLOUR for their back; the blend between for a profile, see
  `facing`), and the face keypoints coloured by side (LEFT_FACE / RIGHT_FACE, the nose white).
  In a plain stick figure "front or back" is only a relation between distant strokes, which a
  generator fine-tuned on a few hundred frames does not pick up reliably: it renders a back
  when the dancer faces the camera. The fill says it locally, where the clothes differ.

Several people (`render_people_map`): each person is drawn in the palette of their slot in the
session (PALETTES; slot 0 is the one-person palette, so a lone person's map is exactly what
`render_pose_map` draws). A slot is fixed for the whole session (dataset.people assigns them), so
the generator learns which palette is which visitor. Palettes differ in brightness and dot
colour, not in hue order: every limb keeps its hue in every palette, so what a limb is stays
learnt across people, and who it belongs to is read from how bright it is.
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


def _palette(limbs, dot) -> tuple[tuple[tuple[int, int, int], ...], tuple[int, int, int]]:
    return tuple((int(r), int(g), int(b)) for r, g, b in limbs), dot


_LIMBS = np.asarray(LIMB_COLOURS, np.float64)
# (limb colours, keypoint colour) per slot. Part of the training contract like LIMB_COLOURS.
PALETTES: tuple[tuple[tuple[tuple[int, int, int], ...], tuple[int, int, int]], ...] = (
    (LIMB_COLOURS, KEYPOINT_COLOUR),  # slot 0: full colours, white dots (the one-person map)
    _palette(np.round(_LIMBS * 0.45), (255, 60, 60)),  # slot 1: dark limbs, red dots
    _palette(np.round(_LIMBS * 0.5 + 127.5), (60, 60, 255)),  # slot 2: pastel limbs, blue dots
    _palette(np.round(_LIMBS * 0.3 + 90), (60, 255, 60)),  # slot 3: greyed limbs, green dots
)
MAX_SLOTS = len(PALETTES)

STYLES = ("stick", "facing")
DEFAULT_STYLE = "stick"
FRONT_COLOUR = np.array([230.0, 90.0, 40.0])  # warm: the front faces the camera
BACK_COLOUR = np.array([40.0, 90.0, 230.0])  # cold: the back does
LEFT_FACE: tuple[int, int, int] = (255, 255, 0)  # the person's left eye and ear
RIGHT_FACE: tuple[int, int, int] = (0, 255, 255)
FACING_SCALE = 0.45  # shoulder offset (in torso lengths) at which facing saturates: a frontal torso is ~0.7 wide
_LEFT_FACE_POINTS, _RIGHT_FACE_POINTS = (1, 3), (2, 4)
_L_SHOULDER, _R_SHOULDER, _L_HIP, _R_HIP = 5, 6, 11, 12

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


def check_style(style: str) -> str:
    if style not in STYLES:
        raise ValueError(f"unknown pose-map style {style!r}; choose one of {', '.join(STYLES)}")
    return style


def facing(pose: np.ndarray, score_threshold: float = DEFAULT_SCORE_THRESHOLD) -> float:
    """Which way the body faces, from the 2-D order of its shoulders (else hips): +1 the front
    (the person's left shoulder on the image's right), -1 the back, near 0 a profile or unknown.

    The shoulder offset is measured in torso lengths, so the value does not depend on distance."""
    kp = check_pose(pose)
    ok = np.isfinite(kp).all(axis=1) & (kp[:, 2] >= score_threshold)
    shoulders, hips = ok[[_L_SHOULDER, _R_SHOULDER]].all(), ok[[_L_HIP, _R_HIP]].all()
    if shoulders:
        dx = float(kp[_L_SHOULDER, 0] - kp[_R_SHOULDER, 0])
    elif hips:
        dx = float(kp[_L_HIP, 0] - kp[_R_HIP, 0]) * 1.3  # hips are narrower than shoulders
    else:
        return 0.0
    if shoulders and hips:
        torso = float(np.linalg.norm(kp[[_L_SHOULDER, _R_SHOULDER], :2].mean(0) - kp[[_L_HIP, _R_HIP], :2].mean(0)))
    else:
        torso = 0.0
    if torso < 1e-6:
        torso = 2.0 * abs(dx) + 1e-6
    return float(np.clip(dx / (FACING_SCALE * torso), -1.0, 1.0))


def facing_colour(f: float) -> tuple[int, int, int]:
    """The torso fill of facing value f: FRONT_COLOUR at +1, BACK_COLOUR at -1, blended between."""
    c = FRONT_COLOUR * (1 + f) / 2 + BACK_COLOUR * (1 - f) / 2
    return int(round(c[0])), int(round(c[1])), int(round(c[2]))


def _thickness(size: tuple[int, int], line_frac: float, dot_frac: float) -> tuple[int, int]:
    m = min(size)
    return max(1, round(line_frac * m)), max(1, round(dot_frac * m))


def _draw(
    canvas: np.ndarray,
    xy: np.ndarray,
    visible: np.ndarray,
    line: int,
    radius: int,
    style: str = DEFAULT_STYLE,
    facing_value: float = 0.0,
    slot: int = 0,
) -> None:
    # cv2 pixel centres sit at integer coordinates; ours at +0.5 (see module docstring).
    fixed = np.round((xy - 0.5) * _ONE).astype(np.int64)
    # Far-off points (bad estimates) would overflow cv2's int32 fixed-point maths; clamp them well
    # outside the canvas so the visible part of the line keeps its direction.
    lim = (4 * max(canvas.shape[:2]) + 16) * _ONE
    fixed = np.clip(fixed, -lim, lim)
    pts = [tuple(int(v) for v in p) for p in fixed]
    limbs, dot = PALETTES[slot]
    dots = [dot] * NUM_KEYPOINTS
    if style == "facing":
        torso = [_L_SHOULDER, _R_SHOULDER, _R_HIP, _L_HIP]
        if visible[torso].all():
            cv2.fillConvexPoly(canvas, fixed[torso].astype(np.int32), facing_colour(facing_value), cv2.LINE_AA, _SHIFT)
        for i in _LEFT_FACE_POINTS:
            dots[i] = LEFT_FACE
        for i in _RIGHT_FACE_POINTS:
            dots[i] = RIGHT_FACE
    for (a, b), colour in zip(SKELETON, limbs):
        if visible[a] and visible[b]:
            cv2.line(canvas, pts[a], pts[b], colour, line, cv2.LINE_AA, _SHIFT)
    for k in np.flatnonzero(visible):
        cv2.circle(canvas, pts[k], radius * _ONE, dots[k], -1, cv2.LINE_AA, _SHIFT)


def render_pose_map(
    pose: np.ndarray,
    src_size: int | tuple[int, int],
    out_size: int | tuple[int, int] = 256,
    *,
    score_threshold: float = DEFAULT_SCORE_THRESHOLD,
    line_frac: float = DEFAULT_LINE_FRAC,
    dot_frac: float = DEFAULT_DOT_FRAC,
    style: str = DEFAULT_STYLE,
) -> np.ndarray:
    """Draw one pose as a stick figure on black: uint8 RGB [H, W, 3] at out_size (W, H).

    pose is [17, 3] in pixels of a source image of size src_size (w, h); keypoints scoring below
    score_threshold are skipped, and so is every limb touching one. style: see STYLES.
    """
    pose = check_pose(pose)
    check_style(style)
    box = Letterbox.fit(src_size, out_size)
    W, H = box.out_size
    canvas = np.zeros((H, W, 3), np.uint8)
    visible = np.isfinite(pose).all(axis=1) & (pose[:, 2] >= score_threshold)
    line, radius = _thickness((W, H), line_frac, dot_frac)
    f = facing(pose, score_threshold) if style == "facing" else 0.0
    _draw(canvas, np.nan_to_num(box.to_output(pose[:, :2])), visible, line, radius, style, f)
    return canvas


def check_slot(slot: int) -> int:
    if not 0 <= int(slot) < MAX_SLOTS:
        raise ValueError(f"a person's slot must be in 0..{MAX_SLOTS - 1} (one palette each), got {slot}")
    return int(slot)


def render_people_map(
    people: np.ndarray,
    slots: np.ndarray | list[int],
    src_size: int | tuple[int, int],
    out_size: int | tuple[int, int] = 256,
    *,
    score_threshold: float = DEFAULT_SCORE_THRESHOLD,
    line_frac: float = DEFAULT_LINE_FRAC,
    dot_frac: float = DEFAULT_DOT_FRAC,
    style: str = DEFAULT_STYLE,
) -> np.ndarray:
    """Draw several people, person i in PALETTES[slots[i]], on one black map (uint8 RGB [H, W, 3]).

    people: [P, 17, 3] in pixels of the source image (P may be 0: an empty map). People are drawn
    in descending slot order, so where figures overlap the lower slot is on top. One person in
    slot 0 gives exactly render_pose_map's picture.
    """
    people = np.asarray(people, dtype=np.float32).reshape(-1, NUM_KEYPOINTS, 3)
    slots = [check_slot(int(k)) for k in np.asarray(slots, dtype=np.int64).reshape(-1)]
    if len(slots) != len(people):
        raise ValueError(f"{len(people)} people but {len(slots)} slots: one slot per person")
    if len(set(slots)) != len(slots):
        raise ValueError(f"two people share a slot (slots {slots}); each needs its own palette")
    check_style(style)
    box = Letterbox.fit(src_size, out_size)
    W, H = box.out_size
    canvas = np.zeros((H, W, 3), np.uint8)
    line, radius = _thickness((W, H), line_frac, dot_frac)
    for i in sorted(range(len(people)), key=lambda i: -slots[i]):
        pose = people[i]
        visible = np.isfinite(pose).all(axis=1) & (pose[:, 2] >= score_threshold)
        f = facing(pose, score_threshold) if style == "facing" else 0.0
        _draw(canvas, np.nan_to_num(box.to_output(pose[:, :2])), visible, line, radius, style, f, slots[i])
    return canvas


def render_pose_maps(poses: np.ndarray, src_size, out_size=256, **options) -> np.ndarray:
    """render_pose_map over a [T, 17, 3] sequence -> uint8 [T, H, W, 3]."""
    poses = np.asarray(poses, dtype=np.float32)
    if poses.ndim != 3:
        raise ValueError(f"poses must have shape (T, {NUM_KEYPOINTS}, 3), got {poses.shape}")
    W, H = as_size(out_size)
    out = np.empty((len(poses), H, W, 3), np.uint8)
    for i, p in enumerate(poses):
        out[i] = render_pose_map(p, src_size, (W, H), **options)
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


def unletterbox(image: np.ndarray, src_size: tuple[int, int]) -> np.ndarray:
    """A letterboxed square (vision.posemap) back to the source's size: the picture without its
    bars, resized (bicubic) to (w, h)."""
    size = image.shape[1], image.shape[0]
    box = Letterbox.fit(src_size, size)
    rw, rh = box.scaled_size
    inner = np.ascontiguousarray(image[box.oy : box.oy + rh, box.ox : box.ox + rw])
    return cv2.resize(inner, tuple(src_size), interpolation=cv2.INTER_CUBIC)
