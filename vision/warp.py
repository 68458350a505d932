"""Part-wise warping: a person seen in one frame, moved part by part into another pose, no training.

    views = [SourceView.build(frame, mask, pose) for frame, mask, pose in best_views]
    warper = PartWarper(views)
    rgb, alpha, missing = warper.warp(target_pose, (W, H))     # premultiplied rgb, its matte
    frame = warper.render(target_pose, plate)                  # composited onto a background

Parts: the torso, the head and the eight limb bones (upper arm, forearm, thigh, shin per side; the
forearm and shin reach past the wrist and ankle to carry the hand and the foot). Each pixel of
the person mask belongs to the nearest bone, except that the torso's quadrilateral keeps its
inside unless an arm passes close by (an arm in front of the chest goes with the arm). Pixels far
from every bone (another object the mask caught) belong to nothing and are not drawn.

Transforms, source -> target, in pixels of one camera (so sizes are comparable):
* torso: least-squares affine of its four corners, its singular values kept within [0.6, 1.6]
  of the body scale (a profile torso would otherwise stretch to a frontal one's width); without
  hips, a similarity of the shoulder pair. It anchors the body.
* head: rotated about the neck by the change of the neck -> nose direction, scaled by the body
  scale, so it stays on the shoulders.
* limbs: the bone rotated onto the target bone, stretched along it by the length ratio (a limb
  foreshortened towards the camera gets shorter, not thinner) and across it by the body scale.
The body scale is the ratio of torso lengths (else shoulder widths).

Where an arm covers the torso in the source, the torso's hidden pixels are filled in from the
torso around them (inpainting), so moving the arm away shows a plausible chest, not a hole.

Composition: far to near. Facing the camera (vision.posemap.facing >= 0): legs, torso, head,
arms; facing away: arms, legs, torso, head. Seams: each part's matte is grown by SEAM_GROW px
(neighbours overlap at the joints, so no crack opens when they rotate) and feathered by a
Gaussian of SEAM_SIGMA px before it is moved.

Views: `select_views` ranks a session's frames as sources (confident keypoints, the whole body
inside the frame, a mask the size of the person's typical one, facing the camera). A
`PartWarper` may hold several views: for each target it takes the view facing the same way, and
for a part that view lacks, the first other view that has it; a part no view has is named in
`missing` and left out (never an error).

What it cannot do: clothes that fold or swing, a face or a back it never saw (turning round shows
the same side, mirrored by the pose), hands and feet in detail, hair; a pose far from the source's
shows stretched pixels at the joints.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from schemas.keypoints import INDEX, NUM_KEYPOINTS
from vision.posemap import facing

SCORE_THRESHOLD = 0.3
SEAM_GROW = 2  # px
SEAM_SIGMA = 1.0  # px
ARM_CLAIM = 0.15  # x torso length: an arm bone this close claims torso pixels
FAR = 0.8  # x body scale: mask pixels farther than this from every bone are nobody's
SCALE_CLAMP = (0.6, 1.6)  # torso singular values, x body scale

_L_SH, _R_SH = INDEX["left_shoulder"], INDEX["right_shoulder"]
_L_HIP, _R_HIP = INDEX["left_hip"], INDEX["right_hip"]
_NOSE = INDEX["nose"]

# name: (from, to, reach past `to` as a share of the bone)
LIMBS: dict[str, tuple[int, int, float]] = {
    "left upper arm": (_L_SH, INDEX["left_elbow"], 0.0),
    "left forearm": (INDEX["left_elbow"], INDEX["left_wrist"], 0.45),
    "right upper arm": (_R_SH, INDEX["right_elbow"], 0.0),
    "right forearm": (INDEX["right_elbow"], INDEX["right_wrist"], 0.45),
    "left thigh": (_L_HIP, INDEX["left_knee"], 0.0),
    "left shin": (INDEX["left_knee"], INDEX["left_ankle"], 0.3),
    "right thigh": (_R_HIP, INDEX["right_knee"], 0.0),
    "right shin": (INDEX["right_knee"], INDEX["right_ankle"], 0.3),
}
PARTS: tuple[str, ...] = ("torso", "head", *LIMBS)
_ARMS = ("left upper arm", "right upper arm", "left forearm", "right forearm")
_LEGS = ("left thigh", "right thigh", "left shin", "right shin")
FRONT_ORDER = (*_LEGS, "torso", "head", *_ARMS)
BACK_ORDER = (*_ARMS, *_LEGS, "torso", "head")


def _ok(pose: np.ndarray, *idx: int) -> bool:
    return bool(np.all(np.isfinite(pose[list(idx)])) and (pose[list(idx), 2] >= SCORE_THRESHOLD).all())


def _mid(pose: np.ndarray, a: int, b: int) -> np.ndarray:
    return (pose[a, :2] + pose[b, :2]) / 2


def _check(pose: np.ndarray) -> np.ndarray:
    p = np.asarray(pose, np.float64)
    if p.shape != (NUM_KEYPOINTS, 3):
        raise ValueError(f"a pose must be [{NUM_KEYPOINTS}, 3], got {p.shape}")
    return p


def body_scale(pose: np.ndarray) -> float | None:
    """Torso length (shoulder centre to hip centre) in pixels, else 1.4 x shoulder width, else None."""
    p = _check(pose)
    if _ok(p, _L_SH, _R_SH, _L_HIP, _R_HIP):
        return float(np.linalg.norm(_mid(p, _L_SH, _R_SH) - _mid(p, _L_HIP, _R_HIP)))
    if _ok(p, _L_SH, _R_SH):
        return 1.4 * float(np.linalg.norm(p[_L_SH, :2] - p[_R_SH, :2]))
    return None


def scale_ratio(source: np.ndarray, target: np.ndarray) -> float | None:
    """How much larger the target's body is (torso lengths where both have hips, else shoulder
    widths, each measured alike in both), clipped to [0.4, 2.5]; None without shoulders."""
    s, t = _check(source), _check(target)
    both = _ok(s, _L_SH, _R_SH, _L_HIP, _R_HIP) and _ok(t, _L_SH, _R_SH, _L_HIP, _R_HIP)
    if not both and not (_ok(s, _L_SH, _R_SH) and _ok(t, _L_SH, _R_SH)):
        return None
    if both:
        ls = float(np.linalg.norm(_mid(s, _L_SH, _R_SH) - _mid(s, _L_HIP, _R_HIP)))
        lt = float(np.linalg.norm(_mid(t, _L_SH, _R_SH) - _mid(t, _L_HIP, _R_HIP)))
    else:
        ls, lt = (float(np.linalg.norm(p[_L_SH, :2] - p[_R_SH, :2])) for p in (s, t))
    return float(np.clip(lt / max(ls, 1e-6), 0.4, 2.5))


def part_defined(pose: np.ndarray, name: str) -> bool:
    """Whether the pose has the keypoints the part is moved by."""
    p = _check(pose)
    if name == "torso":
        return _ok(p, _L_SH, _R_SH)
    if name == "head":
        return _ok(p, _NOSE, _L_SH, _R_SH)
    a, b, _ = LIMBS[name]
    return _ok(p, a, b)


def _bone(p: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    if name == "head":
        neck = _mid(p, _L_SH, _R_SH)
        return neck + 0.4 * (p[_NOSE, :2] - neck), p[_NOSE, :2] + 0.6 * (p[_NOSE, :2] - neck)
    a, b, reach = LIMBS[name]
    return p[a, :2], p[b, :2] + reach * (p[b, :2] - p[a, :2])


def part_region(pose: np.ndarray, name: str, size: tuple[int, int]) -> np.ndarray:
    """uint8 [H, W] (255 inside) of where part `name` of `pose` lies on a frame of size (W, H):
    the torso's quadrilateral (else a band along the shoulders), the head's disc, a limb's bone
    drawn a third of the body scale thick; empty where the pose does not define the part."""
    p = _check(pose)
    w, h = size
    out = np.zeros((h, w), np.uint8)
    scale = body_scale(p)
    if scale is None or not part_defined(p, name):
        return out
    thick = max(1, int(round(scale / 3)))
    if name == "torso" and (quad := _torso_quad(p)) is not None:
        cv2.fillConvexPoly(out, np.round(quad).astype(np.int32), 255)
        cv2.polylines(out, [np.round(quad).astype(np.int32)], True, 255, thick // 2 + 1)
    elif name == "head":
        a, b = _bone(p, name)
        cv2.circle(out, tuple(int(v) for v in np.round((a + b) / 2)), max(1, int(round(scale * 0.3))), 255, -1)
    else:
        a, b = _bone(p, name) if name != "torso" else (p[_L_SH, :2], p[_R_SH, :2])
        cv2.line(out, tuple(int(v) for v in np.round(a)), tuple(int(v) for v in np.round(b)), 255, thick)
    return out


def _segment_distance(px: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = b - a
    t = np.clip(((px - a) @ d) / max(float(d @ d), 1e-9), 0.0, 1.0)
    return np.linalg.norm(px - (a + t[:, None] * d), axis=1)


def _torso_quad(p: np.ndarray) -> np.ndarray | None:
    if _ok(p, _L_SH, _R_SH, _L_HIP, _R_HIP):
        return p[[_L_SH, _R_SH, _R_HIP, _L_HIP], :2]
    return None


def segment_parts(pose: np.ndarray, mask: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """int8 [H, W]: the index into PARTS of every person pixel (mask > threshold; a uint8 mask is
    read as 0..255), -1 for the rest and for pixels far from every bone the pose defines."""
    p = _check(pose)
    m = np.asarray(mask)
    inside = m > (threshold * 255 if m.dtype == np.uint8 else threshold)
    labels = np.full(inside.shape, -1, np.int8)
    scale = body_scale(p)
    ys, xs = np.nonzero(inside)
    if scale is None or ys.size == 0:
        return labels
    px = np.column_stack([xs + 0.5, ys + 0.5])
    dist = np.full((len(px), len(PARTS)), np.inf)
    for k, name in enumerate(PARTS):
        if name != "torso" and part_defined(p, name):
            dist[:, k] = _segment_distance(px, *_bone(p, name))
    quad = _torso_quad(p)
    if quad is not None:
        inq = np.zeros(inside.shape, np.uint8)
        cv2.fillConvexPoly(inq, np.round(quad - 0.5).astype(np.int32), 1)
        in_quad = inq[ys, xs].astype(bool)
        edge = np.min([_segment_distance(px, quad[i], quad[(i + 1) % 4]) for i in range(4)], axis=0)
        dist[:, 0] = np.where(in_quad, 0.0, edge)
        arm = dist[:, [PARTS.index(n) for n in _ARMS]].min(axis=1)
        dist[in_quad & (arm < ARM_CLAIM * scale), 0] = np.inf
    elif part_defined(p, "torso"):  # shoulders only: the torso hangs below the shoulder line
        neck = _mid(p, _L_SH, _R_SH)
        dist[:, 0] = _segment_distance(px, neck, neck + np.array([0.0, 0.8 * scale]))
    best = dist.argmin(axis=1)
    near = dist.min(axis=1) <= FAR * scale
    labels[ys[near], xs[near]] = best[near].astype(np.int8)
    return labels


def _affine(m: np.ndarray, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2x3 taking src to dst with linear part m."""
    return np.hstack([m, (dst - m @ src)[:, None]])


def _rotation(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s], [s, c]])


def _angle(v: np.ndarray) -> float:
    return float(np.arctan2(v[1], v[0]))


def part_transforms(source: np.ndarray, target: np.ndarray) -> dict[str, np.ndarray]:
    """2x3 affines (source pixels -> target pixels) of every part both poses define."""
    s, t = _check(source), _check(target)
    g = scale_ratio(s, t)
    if g is None:
        return {}
    out: dict[str, np.ndarray] = {}
    qs, qt = _torso_quad(s), _torso_quad(t)
    if qs is not None and qt is not None:
        cs, ct = qs.mean(0), qt.mean(0)
        m, *_ = np.linalg.lstsq(qs - cs, qt - ct, rcond=None)
        u, sv, vt = np.linalg.svd(m.T)
        out["torso"] = _affine(u @ np.diag(np.clip(sv, SCALE_CLAMP[0] * g, SCALE_CLAMP[1] * g)) @ vt, cs, ct)
    elif part_defined(s, "torso") and part_defined(t, "torso"):
        vs, vt_ = s[_L_SH, :2] - s[_R_SH, :2], t[_L_SH, :2] - t[_R_SH, :2]
        out["torso"] = _affine(g * _rotation(_angle(vt_) - _angle(vs)), _mid(s, _L_SH, _R_SH), _mid(t, _L_SH, _R_SH))
    if part_defined(s, "head") and part_defined(t, "head"):
        ns, nt = _mid(s, _L_SH, _R_SH), _mid(t, _L_SH, _R_SH)
        turn = _angle(t[_NOSE, :2] - nt) - _angle(s[_NOSE, :2] - ns)
        out["head"] = _affine(g * _rotation(turn), ns, nt)
    for name, (a, b, _) in LIMBS.items():
        if not (part_defined(s, name) and part_defined(t, name)):
            continue
        ds, dt = s[b, :2] - s[a, :2], t[b, :2] - t[a, :2]
        ls, lt = float(np.linalg.norm(ds)), float(np.linalg.norm(dt))
        if ls < 1e-3 or lt < 1e-3:
            continue
        along = float(np.clip(lt / ls, 0.3, 3.0))
        rs, rt = _rotation(_angle(ds)), _rotation(_angle(dt))
        out[name] = _affine(rt @ np.diag([along, g]) @ rs.T, s[a, :2], t[a, :2])
    return out


def draw_order(target: np.ndarray) -> tuple[str, ...]:
    """Far-to-near drawing order for a target pose (see the module docstring)."""
    return _order(facing(np.asarray(target, np.float32)))


def _order(target_facing: float) -> tuple[str, ...]:
    return FRONT_ORDER if target_facing >= 0 else BACK_ORDER


@dataclass
class _Layer:
    """One part of a source view: premultiplied RGBA float32 patch and its top-left in the frame."""

    rgba: np.ndarray
    x0: int
    y0: int


@dataclass
class SourceView:
    """A frame of the person prepared as a source: its parts cut out, seams grown and feathered."""

    pose: np.ndarray  # [17, 3] in the frame's pixels
    layers: dict[str, _Layer]
    facing: float

    @classmethod
    def build(cls, frame: np.ndarray, mask: np.ndarray, pose: np.ndarray) -> SourceView:
        """frame uint8 [H, W, 3]; mask [H, W] float 0..1 (or uint8 0..255), 1 = the person."""
        frame = np.asarray(frame)
        m = np.asarray(mask)
        if frame.ndim != 3 or frame.shape[2] != 3 or m.shape != frame.shape[:2]:
            raise ValueError(f"need a [H, W, 3] frame and an [H, W] mask, got {frame.shape} and {m.shape}")
        soft = m.astype(np.float32) / (255.0 if m.dtype == np.uint8 else 1.0)
        p = _check(pose).astype(np.float32)
        labels = segment_parts(p, soft)
        h, w = labels.shape
        pad = SEAM_GROW + int(np.ceil(3 * SEAM_SIGMA)) + 1
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * SEAM_GROW + 1,) * 2)
        layers = {}
        torso_hidden, image = _torso_behind_arms(frame, labels, p)
        for k, name in enumerate(PARTS):
            part_of = labels == k
            if name == "torso" and torso_hidden is not None:
                part_of = part_of | torso_hidden
            ys, xs = np.nonzero(part_of)
            if ys.size < 4:
                continue
            x0, y0 = max(0, int(xs.min()) - pad), max(0, int(ys.min()) - pad)
            x1, y1 = min(w, int(xs.max()) + pad + 1), min(h, int(ys.max()) + pad + 1)
            part = part_of[y0:y1, x0:x1].astype(np.uint8)
            grown = cv2.dilate(part, kernel)
            # The soft mask gives the outline; inside the part (its grown seam included) it is
            # at least half, so a seam never turns transparent where the mask is unsure.
            alpha = grown * np.maximum(soft[y0:y1, x0:x1], 0.5 * grown)
            alpha = cv2.GaussianBlur(alpha.astype(np.float32), (0, 0), SEAM_SIGMA)
            source = image if name == "torso" else frame
            rgb = source[y0:y1, x0:x1].astype(np.float32) * alpha[..., None]
            layers[name] = _Layer(np.dstack([rgb, alpha]).astype(np.float32), x0, y0)
        return cls(p, layers, facing(p))

    @property
    def parts(self) -> tuple[str, ...]:
        return tuple(n for n in PARTS if n in self.layers)


def _torso_behind_arms(frame: np.ndarray, labels: np.ndarray, pose: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
    """(the torso's pixels an arm hides in the source, the frame with them filled in from the torso
    around them), so an arm moved away does not leave a hole in the chest; (None, frame) when no
    arm crosses the torso."""
    quad = _torso_quad(pose)
    if quad is None:
        return None, frame
    inside = np.zeros(labels.shape, np.uint8)
    cv2.fillConvexPoly(inside, np.round(quad - 0.5).astype(np.int32), 1)
    arms = np.isin(labels, [PARTS.index(n) for n in _ARMS])
    hidden = inside.astype(bool) & arms
    if not hidden.any():
        return None, frame
    ys, xs = np.nonzero(inside)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    filled = frame.copy()
    hole = hidden[y0:y1, x0:x1].astype(np.uint8) * 255
    radius = max(3, round(0.05 * float(y1 - y0)))
    filled[y0:y1, x0:x1] = cv2.inpaint(np.ascontiguousarray(frame[y0:y1, x0:x1]), hole, radius, cv2.INPAINT_TELEA)
    return hidden, filled


def _warp_layer(layer: _Layer, a: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, int, int] | None:
    """The layer moved by a (frame -> frame), cut to the frame: (rgba patch, x0, y0), or None."""
    ph, pw = layer.rgba.shape[:2]
    corners = np.array([[0, 0], [pw, 0], [0, ph], [pw, ph]], np.float64) + [layer.x0, layer.y0]
    moved = corners @ a[:, :2].T + a[:, 2]
    w, h = size
    x0, y0 = max(0, int(np.floor(moved[:, 0].min()))), max(0, int(np.floor(moved[:, 1].min())))
    x1, y1 = min(w, int(np.ceil(moved[:, 0].max()))), min(h, int(np.ceil(moved[:, 1].max())))
    if x1 - x0 < 1 or y1 - y0 < 1:
        return None
    # patch pixel -> frame pixel: shift by the layer's corner; then frame -> output patch.
    m = a.copy()
    m[:, 2] = a[:, :2] @ np.array([layer.x0, layer.y0]) + a[:, 2] - [x0, y0]
    m[:, 2] += m[:, :2].sum(axis=1) * 0.5 - 0.5  # pixel centres at +0.5 -> cv2's integer centres
    out = cv2.warpAffine(layer.rgba, m, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    return out, x0, y0


class PartWarper:
    """Moves the person of one or more source views into target poses (see the module docstring)."""

    def __init__(self, views: Sequence[SourceView]):
        if not views:
            raise ValueError("the warper needs at least one source view")
        self.views = list(views)

    def seen_parts(self) -> tuple[str, ...]:
        """Parts some view has."""
        return tuple(n for n in PARTS if any(n in v.layers for v in self.views))

    def missing_parts(self, poses: np.ndarray) -> list[str]:
        """Parts the poses show (in at least a tenth of them) that no view has."""
        seen = set(self.seen_parts())
        shown = [n for n in PARTS if np.mean([part_defined(p, n) for p in poses]) >= 0.1] if len(poses) else []
        return [n for n in shown if n not in seen]

    def _ranked(self, ft: float) -> list[SourceView]:
        """Views facing the target's way (its facing ft) first, then by how frontal they are: the
        first one gives every part it has, so a dance is drawn from one view wherever it can be (no
        flicker)."""
        return sorted(self.views, key=lambda v: (np.sign(v.facing) != np.sign(ft) and abs(ft) > 0.3, -abs(v.facing)))

    def sources(self, target: np.ndarray) -> dict[str, tuple[SourceView, np.ndarray] | None]:
        """Far to near, each part the target defines: (the view that gives it, its source -> target
        affine), or None where no view has it."""
        t = _check(target)
        ft = facing(np.asarray(t, np.float32))  # once per target: it ranks the views and orders the parts
        ranked = self._ranked(ft)
        transforms = [part_transforms(v.pose, t) for v in ranked]
        return {
            name: next(((v, tr[name]) for v, tr in zip(ranked, transforms) if name in v.layers and name in tr), None)
            for name in _order(ft)
            if part_defined(t, name)
        }

    def warp(self, target: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """(premultiplied rgb float32 [H, W, 3], alpha float32 [H, W], parts the target has that
        no view could give) of the person in pose `target` on a frame of size (W, H)."""
        t = _check(target)
        w, h = size
        rgb = np.zeros((h, w, 3), np.float32)
        alpha = np.zeros((h, w), np.float32)
        missing = []
        for name, pick in self.sources(t).items():
            if pick is None:
                missing.append(name)
                continue
            moved = _warp_layer(pick[0].layers[name], pick[1], size)
            if moved is None:
                continue
            patch, x0, y0 = moved
            ph, pw = patch.shape[:2]
            a = np.clip(patch[..., 3], 0.0, 1.0)
            region = rgb[y0 : y0 + ph, x0 : x0 + pw]
            region *= 1.0 - a[..., None]
            region += patch[..., :3]
            alpha[y0 : y0 + ph, x0 : x0 + pw] = a + alpha[y0 : y0 + ph, x0 : x0 + pw] * (1.0 - a)
        return rgb, alpha, missing

    def render(self, target: np.ndarray, background: np.ndarray) -> tuple[np.ndarray, list[str]]:
        """(uint8 frame: the person in pose `target` over `background` uint8 [H, W, 3], missing parts)."""
        h, w = background.shape[:2]
        rgb, alpha, missing = self.warp(target, (w, h))
        out = np.asarray(background, np.float32) * (1.0 - alpha[..., None]) + rgb
        return np.clip(np.round(out), 0, 255).astype(np.uint8), missing


# --- choosing source views -------------------------------------------------------------------------
def view_quality(pose: np.ndarray, mask_area: float, typical_area: float, frame_size: tuple[int, int]) -> float:
    """How good a frame is as a source, 0..1: keypoints confident and complete, the body inside
    the frame, the mask as large as the person's typical one (not hidden, not merged with
    someone), and facing the camera (a profile hides an arm; a back view hides the face)."""
    p = _check(pose)
    score = np.where(np.isfinite(p[:, 2]), p[:, 2], 0.0)
    conf = float(score.mean()) * float((score >= SCORE_THRESHOLD).mean())
    ok = score >= SCORE_THRESHOLD
    w, h = frame_size
    inside = bool(ok.any()) and bool(((p[ok, 0] > 0) & (p[ok, 0] < w) & (p[ok, 1] > 0) & (p[ok, 1] < h)).all())
    whole = min(mask_area, typical_area) / max(mask_area, typical_area, 1e-6)
    front = 0.5 + 0.5 * facing(p.astype(np.float32))
    return conf * whole * (1.0 if inside else 0.3) * (0.4 + 0.6 * front)


def select_views(
    poses: np.ndarray, mask_areas: Sequence[float], frame_size: tuple[int, int], k: int = 2, spacing: int = 10
) -> list[int]:
    """Up to k frame indices, best source first (view_quality), at least `spacing` frames apart;
    the best view facing away is included when the session has one (a back is never painted from
    a front). Frames with no usable pose are never chosen; [] when none is usable."""
    areas = np.asarray(mask_areas, np.float64)
    typical = float(np.median(areas[areas > 0])) if (areas > 0).any() else 1.0
    quality = np.array([view_quality(p, a, typical, frame_size) for p, a in zip(poses, areas)])
    usable = [i for i in np.argsort(-quality, kind="stable") if quality[i] > 0 and body_scale(poses[i]) is not None]
    chosen: list[int] = []
    back = next((int(i) for i in usable if facing(np.asarray(poses[i], np.float32)) < -0.3), None)
    for i in usable:
        if len(chosen) >= k - (back is not None and back not in chosen):
            break
        if all(abs(int(i) - c) >= spacing for c in chosen):
            chosen.append(int(i))
    if back is not None and back not in chosen and len(chosen) < k:
        chosen.append(back)
    return chosen


def pose_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean distance of the keypoints both poses have, each pose relative to its hip centre (its
    shoulder centre unless both show their hips) in its own body scale; inf without shoulders."""
    pa, pb = _check(a), _check(b)
    hips = _ok(pa, _L_HIP, _R_HIP) and _ok(pb, _L_HIP, _R_HIP)
    rel = []
    for p in (pa, pb):
        scale = body_scale(p)
        if scale is None or not _ok(p, _L_SH, _R_SH):
            return float("inf")
        centre = _mid(p, _L_HIP, _R_HIP) if hips else _mid(p, _L_SH, _R_SH)
        rel.append((p[:, :2] - centre) / scale)
    ok = (pa[:, 2] >= SCORE_THRESHOLD) & (pb[:, 2] >= SCORE_THRESHOLD)
    ok &= np.isfinite(rel[0]).all(axis=1) & np.isfinite(rel[1]).all(axis=1)
    return float(np.linalg.norm(rel[0][ok] - rel[1][ok], axis=1).mean()) if ok.any() else float("inf")
