"""Body-part maps as the generator's input, alone or blended with the pose.

Three representations share one entry point, ``render_representation(kind, ...)``:

- "pose": the stick figure(s) of vision.posemap;
- "parts": the 24-part map, each part in its palette colour (vision.parts.colours);
- "pose+parts": the part map with the face keypoints and face lines of the pose drawn on top.
  BodyPix's face is two coarse regions; the eyes, ears and nose sharpen where the face looks.

With several people, each person's parts keep their hues and get the person's own brightness
(colours.person_palette), so the generator can tell who is who. Placement is vision.posemap's
letterbox, so part maps, pose maps and frames of the same source stay pixel-aligned; part ids
are resized nearest-neighbour (a blend of two ids is no id).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from schemas.keypoints import SKELETON
from vision.parts.colours import NUM_CLASSES, PALETTE, person_palette
from vision.posemap import (
    DEFAULT_DOT_FRAC,
    DEFAULT_LINE_FRAC,
    DEFAULT_SCORE_THRESHOLD,
    KEYPOINT_COLOUR,
    LIMB_COLOURS,
    Letterbox,
    as_size,
    check_pose,
    render_pose_map,
)

KINDS = ("pose", "parts", "pose+parts")
FACE_KEYPOINTS = (0, 1, 2, 3, 4)  # nose, eyes, ears
FACE_LIMBS = tuple(i for i, (a, b) in enumerate(SKELETON) if a in FACE_KEYPOINTS and b in FACE_KEYPOINTS)
_SHIFT = 4  # cv2 fixed-point bits, as in vision.posemap
_ONE = 1 << _SHIFT


def _check_ids(name: str, ids: np.ndarray, limit: int) -> np.ndarray:
    ids = np.asarray(ids)
    if ids.ndim != 2 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"{name} must be an integer [H, W] map, got {ids.dtype} {ids.shape}")
    if ids.size and (ids.min() < 0 or ids.max() > limit):
        raise ValueError(f"{name} must lie in 0..{limit}, got {ids.min()}..{ids.max()}")
    return ids.astype(np.uint8)


def letterbox_ids(ids: np.ndarray, out_size: int | tuple[int, int]) -> np.ndarray:
    """An id map placed like vision.posemap.letterbox_image, nearest-neighbour, 0 outside."""
    ids = np.asarray(ids, np.uint8)
    h, w = ids.shape
    box = Letterbox.fit((w, h), out_size)
    rw, rh = box.scaled_size
    out = np.zeros((box.out_size[1], box.out_size[0]), np.uint8)
    out[box.oy : box.oy + rh, box.ox : box.ox + rw] = cv2.resize(ids, (rw, rh), interpolation=cv2.INTER_NEAREST)
    return out


def colour_parts(part_ids: np.ndarray, person_ids: np.ndarray | None = None) -> np.ndarray:
    """RGB uint8 [H, W, 3]: each part in its colour, each person (person_ids k >= 1) in its shade.

    Pixels with a part but no person (person id 0) take the first person's colours.
    """
    part_ids = _check_ids("part_ids", part_ids, NUM_CLASSES - 1)
    rgb = PALETTE[part_ids]
    if person_ids is None:
        return rgb
    person_ids = _check_ids("person_ids", person_ids, 255)
    if person_ids.shape != part_ids.shape:
        raise ValueError(f"person_ids shape {person_ids.shape} differs from part_ids shape {part_ids.shape}")
    for k in np.unique(person_ids):
        if k >= 2:  # person 1 (index 0) keeps the base palette
            sel = person_ids == k
            rgb[sel] = person_palette(int(k) - 1)[part_ids[sel]]
    return rgb


def draw_face(
    canvas: np.ndarray,
    pose_out: np.ndarray,
    *,
    score_threshold: float = DEFAULT_SCORE_THRESHOLD,
    line_frac: float = DEFAULT_LINE_FRAC,
    dot_frac: float = DEFAULT_DOT_FRAC,
) -> np.ndarray:
    """Draw a pose's face lines and face keypoints (already in canvas pixels) onto canvas, in place.

    Colours and widths are the stick figure's (vision.posemap), so the face reads the same in
    every representation.
    """
    pose_out = check_pose(pose_out)
    visible = np.isfinite(pose_out).all(axis=1) & (pose_out[:, 2] >= score_threshold)
    m = min(canvas.shape[:2])
    line, radius = max(1, round(line_frac * m)), max(1, round(dot_frac * m))
    lim = (4 * max(canvas.shape[:2]) + 16) * _ONE
    fixed = np.clip(np.round((np.nan_to_num(pose_out[:, :2]) - 0.5) * _ONE), -lim, lim).astype(np.int64)
    pts = [tuple(int(v) for v in p) for p in fixed]
    for i in FACE_LIMBS:
        a, b = SKELETON[i]
        if visible[a] and visible[b]:
            cv2.line(canvas, pts[a], pts[b], LIMB_COLOURS[i], line, cv2.LINE_AA, _SHIFT)
    for k in FACE_KEYPOINTS:
        if visible[k]:
            cv2.circle(canvas, pts[k], radius * _ONE, KEYPOINT_COLOUR, -1, cv2.LINE_AA, _SHIFT)
    return canvas


def pose_transform(
    src_pose: np.ndarray, dst_pose: np.ndarray, score_threshold: float = DEFAULT_SCORE_THRESHOLD
) -> np.ndarray:
    """The 2x3 scale-and-shift that moved src_pose onto dst_pose (least squares).

    For carrying a source frame's part map along with its pose, e.g. after trainer.normalize
    rescaled and moved the pose (a uniform scale plus a shift, which this recovers exactly).
    Uses the keypoints confident in both poses; needs two of them at different places.
    """
    src, dst = check_pose(src_pose), check_pose(dst_pose)
    ok = (
        (src[:, 2] >= score_threshold)
        & (dst[:, 2] >= score_threshold)
        & np.isfinite(src).all(axis=1)
        & np.isfinite(dst).all(axis=1)
    )
    p, q = src[ok, :2].astype(np.float64), dst[ok, :2].astype(np.float64)
    centred = p - p.mean(axis=0) if len(p) else p
    spread = (centred**2).sum()
    if len(p) < 2 or spread < 1e-9:
        raise ValueError("need two confident keypoints at different places in both poses")
    scale = float((centred * (q - q.mean(axis=0))).sum() / spread)
    shift = q.mean(axis=0) - scale * p.mean(axis=0)
    return np.array([[scale, 0.0, shift[0]], [0.0, scale, shift[1]]])


def warp_ids(ids: np.ndarray, matrix: np.ndarray, out_size: int | tuple[int, int]) -> np.ndarray:
    """An id map moved by a 2x3 affine (source pixels -> output pixels), nearest-neighbour, 0 outside."""
    ids = _check_ids("ids", ids, 255)
    m = np.asarray(matrix, np.float64)
    if m.shape != (2, 3):
        raise ValueError(f"matrix must be 2x3, got {m.shape}")
    # Pixel centres sit at +0.5 (vision.posemap's convention); cv2 puts them at integers.
    shift = np.array([[1.0, 0.0, -0.5], [0.0, 1.0, -0.5], [0.0, 0.0, 1.0]])
    unshift = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]])
    cv_m = (shift @ np.vstack([m, [0.0, 0.0, 1.0]]) @ unshift)[:2]
    return cv2.warpAffine(
        ids, cv_m, as_size(out_size), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )


def render_parts_map(
    part_ids: np.ndarray,
    persons_poses: Sequence[np.ndarray] | np.ndarray = (),
    out_size: int | tuple[int, int] = 256,
    *,
    person_ids: np.ndarray | None = None,
    face: bool = True,
    score_threshold: float = DEFAULT_SCORE_THRESHOLD,
    line_frac: float = DEFAULT_LINE_FRAC,
    dot_frac: float = DEFAULT_DOT_FRAC,
) -> np.ndarray:
    """The part map at out_size (W, H), letterboxed, with each pose's face drawn on top.

    part_ids: [h, w] ids 0..24 in source pixels (the source size is the map's size).
    persons_poses: [17, 3] poses (x_px, y_px, score) in the same source pixels, one per person;
    face=False draws none of them. person_ids: [h, w] person index + 1 per pixel (0 = none),
    for one shade per person.
    """
    part_ids = _check_ids("part_ids", part_ids, NUM_CLASSES - 1)
    h, w = part_ids.shape
    W, H = as_size(out_size)
    rgb = colour_parts(
        letterbox_ids(part_ids, (W, H)),
        None if person_ids is None else letterbox_ids(_check_ids("person_ids", person_ids, 255), (W, H)),
    )
    if face:
        box = Letterbox.fit((w, h), (W, H))
        for pose in persons_poses:
            draw_face(
                rgb, box.pose_to_output(pose), score_threshold=score_threshold, line_frac=line_frac, dot_frac=dot_frac
            )
    return rgb


def render_representation(
    kind: str,
    *,
    poses: Sequence[np.ndarray] | np.ndarray = (),
    src_size: int | tuple[int, int] | None = None,
    out_size: int | tuple[int, int] = 256,
    part_ids: np.ndarray | None = None,
    person_ids: np.ndarray | None = None,
    score_threshold: float = DEFAULT_SCORE_THRESHOLD,
    line_frac: float = DEFAULT_LINE_FRAC,
    dot_frac: float = DEFAULT_DOT_FRAC,
) -> np.ndarray:
    """One generator input of the given kind, uint8 RGB [H, W, 3] at out_size (W, H).

    kind: "pose" (needs poses and src_size), "parts" (needs part_ids) or "pose+parts" (needs
    part_ids; draws the poses' faces). poses: a [17, 3] pose or a sequence of them, in source
    pixels; src_size: (w, h) of the source (for parts kinds it must match part_ids if given).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown representation {kind!r}; choose one of {KINDS}")
    poses = np.asarray(poses, np.float32)
    if poses.ndim == 2:
        poses = poses[None]
    if poses.size and (poses.ndim != 3 or poses.shape[1:] != (17, 3)):
        raise ValueError(f"poses must be [17, 3] or [N, 17, 3], got {poses.shape}")
    style = dict(score_threshold=score_threshold, line_frac=line_frac, dot_frac=dot_frac)
    if kind == "pose":
        if src_size is None:
            raise ValueError("the 'pose' representation needs src_size (the source's width, height)")
        W, H = as_size(out_size)
        out = np.zeros((H, W, 3), np.uint8)
        for pose in poses:  # later people are drawn over earlier ones
            figure = render_pose_map(
                pose, src_size, (W, H), score_threshold=score_threshold, line_frac=line_frac, dot_frac=dot_frac
            )
            drawn = figure.any(axis=2)
            out[drawn] = figure[drawn]
        return out
    if part_ids is None:
        raise ValueError(f"the {kind!r} representation needs part_ids (a [H, W] part-id map)")
    if src_size is not None and as_size(src_size) != (np.shape(part_ids)[1], np.shape(part_ids)[0]):
        raise ValueError(
            f"src_size {as_size(src_size)} differs from the part map's size "
            f"{(np.shape(part_ids)[1], np.shape(part_ids)[0])}: poses and parts must share pixels"
        )
    return render_parts_map(part_ids, poses, out_size, person_ids=person_ids, face=kind == "pose+parts", **style)
