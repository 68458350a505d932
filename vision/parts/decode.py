"""Decode BodyPix / PoseNet network outputs in numpy: poses, person instances, part maps.

The network sees the image stretched to its input size and answers on a coarse grid of
"blocks" (33 x 33 for a 512 x 512 input at output stride 16); block (i, j) sits at input pixel
(i * stride, j * stride). Its outputs, all float here (dequantized by the caller):

- heatmaps [h, w, 17]: keypoint logits, COCO-17 order;
- short offsets [h, w, 34]: input-pixel offsets to each keypoint, 17 y then 17 x;
- mid offsets [h, w, 64]: displacements along the 16 pose-tree edges, blocks of 16 channels:
  forward y, forward x, backward y, backward x (the PersonLab / PoseNet multi-person layout);
- long offsets [h, w, 34]: from any body pixel to each keypoint of its own person (17 y, 17 x);
- segments [h, w]: person logit; part heatmaps [h, w, 24]: body-part logits (BodyPix only: a
  PoseNet graph answers with the first three outputs alone).

Multi-person decoding follows the published PoseNet procedure: local maxima of the heatmaps are
root candidates in decreasing score order; a candidate near the same keypoint of an accepted
pose is skipped; otherwise the pose is grown along the tree edges (mid offsets, then a few short
offset refinement steps), scored as the mean keypoint probability and rescored with keypoint-
level soft non-maximum suppression. Pixels are assigned to people by following the long offsets
to the 17 keypoint "embeddings" and taking the pose with the nearest keypoints.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
from scipy import ndimage

from schemas.keypoints import NUM_KEYPOINTS

# The 16 pose-tree edges (parent, child), in the order of the mid-offset channels. Walking an
# edge backwards (child -> parent) uses the backward displacement channels of the same edge.
POSE_TREE = (
    (0, 1),
    (1, 3),
    (0, 2),
    (2, 4),  # nose - eyes - ears
    (0, 5),
    (5, 7),
    (7, 9),
    (5, 11),
    (11, 13),
    (13, 15),  # left side
    (0, 6),
    (6, 8),
    (8, 10),
    (6, 12),
    (12, 14),
    (14, 16),  # right side
)
NUM_EDGES = len(POSE_TREE)
NUM_PARTS = 24
REFINE_STEPS = 5  # short-offset refinements after each mid-offset jump
LONG_REFINE_STEPS = 2  # long-offset refinements per pixel embedding
LOCAL_MAX_RADIUS = 1


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -50.0, 50.0)))


def logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1.0 - p))


def dequantize(array: np.ndarray, quantization: tuple[float, int]) -> np.ndarray:
    """uint8/int8 tensor -> float32 using its (scale, zero point); float tensors pass through."""
    array = np.asarray(array)
    if array.dtype in (np.uint8, np.int8):
        scale, zero = quantization
        if not scale:
            raise ValueError(f"quantized {array.dtype} tensor without a quantization scale")
        return (array.astype(np.float32) - np.float32(zero)) * np.float32(scale)
    return array.astype(np.float32, copy=False)


@dataclass
class NetOutputs:
    """One image's network outputs as floats on the block grid (see the module docstring).

    long_offsets, segments and part_heatmaps are None for a pose-only network (PoseNet).
    """

    heatmaps: np.ndarray
    short_offsets: np.ndarray
    mid_offsets: np.ndarray
    long_offsets: np.ndarray | None
    segments: np.ndarray | None
    part_heatmaps: np.ndarray | None
    stride: int
    input_size: tuple[int, int]  # (width, height) of the network input

    def __post_init__(self) -> None:
        h, w = self.heatmaps.shape[:2]
        expected = {
            "heatmaps": NUM_KEYPOINTS,
            "short_offsets": 2 * NUM_KEYPOINTS,
            "mid_offsets": 4 * NUM_EDGES,
            "part_heatmaps": NUM_PARTS,
            "long_offsets": 2 * NUM_KEYPOINTS,
        }
        for name, channels in expected.items():
            field = getattr(self, name)
            if field is not None and field.shape != (h, w, channels):
                raise ValueError(f"{name} must have shape ({h}, {w}, {channels}), got {field.shape}")
        if self.segments is not None and self.segments.shape != (h, w):
            raise ValueError(f"segments must have shape ({h}, {w}), got {self.segments.shape}")
        if self.stride < 1:
            raise ValueError(f"stride must be >= 1, got {self.stride}")


@dataclass
class DecodedPose:
    """A pose in network-input pixels: keypoints [17, 2] as (y, x), scores [17], pose score."""

    yx: np.ndarray
    scores: np.ndarray
    score: float


def _sample(field: np.ndarray, y: float, x: float, channels: tuple[int, ...]) -> list[float]:
    """Bilinear sample of field[y, x, c] for a few channels, (y, x) clamped to the grid."""
    h, w = field.shape[:2]
    y = min(max(y, 0.0), h - 1.0)
    x = min(max(x, 0.0), w - 1.0)
    y0, x0 = int(y), int(x)
    y1, x1 = min(y0 + 1, h - 1), min(x0 + 1, w - 1)
    fy, fx = y - y0, x - x0
    out = []
    for c in channels:
        top = field[y0, x0, c] * (1 - fx) + field[y0, x1, c] * fx
        bottom = field[y1, x0, c] * (1 - fx) + field[y1, x1, c] * fx
        out.append(float(top * (1 - fy) + bottom * fy))
    return out


def _sample_many(field: np.ndarray, y: np.ndarray, x: np.ndarray, channels: np.ndarray) -> np.ndarray:
    """Vectorised bilinear sample: y, x and channels broadcast together; (y, x) clamped."""
    h, w = field.shape[:2]
    y = np.clip(y, 0.0, h - 1.0)
    x = np.clip(x, 0.0, w - 1.0)
    y0, x0 = np.floor(y).astype(np.intp), np.floor(x).astype(np.intp)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    fy, fx = y - y0, x - x0
    top = field[y0, x0, channels] * (1 - fx) + field[y0, x1, channels] * fx
    bottom = field[y1, x0, channels] * (1 - fx) + field[y1, x1, channels] * fx
    return top * (1 - fy) + bottom * fy


def _clamp(v: float, hi: float) -> float:
    return min(max(v, 0.0), hi)


def _children() -> list[list[tuple[int, int, int]]]:
    """Per keypoint: (child, y channel, x channel) of the mid offsets leading to each neighbour."""
    out: list[list[tuple[int, int, int]]] = [[] for _ in range(NUM_KEYPOINTS)]
    for e, (parent, child) in enumerate(POSE_TREE):
        out[parent].append((child, e, NUM_EDGES + e))  # forward
        out[child].append((parent, 2 * NUM_EDGES + e, 3 * NUM_EDGES + e))  # backward
    return out


_NEIGHBOURS = _children()


def _grow_pose(
    root_yx: tuple[float, float], root_id: int, heat: np.ndarray, short: np.ndarray, mid: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """All 17 keypoints (block units) and their logits, grown from one root along the tree.

    The most confident known keypoint is expanded first, so errors made on weak keypoints do
    not propagate to strong ones.
    """
    h, w = heat.shape[:2]
    yx = np.full((NUM_KEYPOINTS, 2), -1.0)
    logits = np.full(NUM_KEYPOINTS, -1e5)
    done = [False] * NUM_KEYPOINTS
    root_logit = _sample(heat, *root_yx, (root_id,))[0]
    queue = [(-root_logit, root_id, root_yx)]
    while queue:
        neg, k, (y, x) = heapq.heappop(queue)
        if done[k]:
            continue
        done[k], yx[k], logits[k] = True, (y, x), -neg
        for child, cy, cx in _NEIGHBOURS[k]:
            if done[child]:
                continue
            dy, dx = _sample(mid, y, x, (cy, cx))
            ty, tx = _clamp(y + dy, h - 1.0), _clamp(x + dx, w - 1.0)
            for _ in range(REFINE_STEPS):
                dy, dx = _sample(short, ty, tx, (child, NUM_KEYPOINTS + child))
                ty, tx = _clamp(ty + dy, h - 1.0), _clamp(tx + dx, w - 1.0)
            heapq.heappush(queue, (-_sample(heat, ty, tx, (child,))[0], child, (ty, tx)))
    return yx, logits


def _root_candidates(heat: np.ndarray, short: np.ndarray, min_logit: float) -> list[tuple]:
    """(logit, keypoint id, (y, x) refined by the short offset) of every local maximum, best first."""
    h, w = heat.shape[:2]
    peak = ndimage.maximum_filter(heat, size=(2 * LOCAL_MAX_RADIUS + 1,) * 2 + (1,), mode="constant", cval=-np.inf)
    ys, xs, ks = np.nonzero((heat >= min_logit) & (heat >= peak))
    scores = heat[ys, xs, ks]
    ry = np.clip(ys + short[ys, xs, ks], 0, h - 1)
    rx = np.clip(xs + short[ys, xs, ks + NUM_KEYPOINTS], 0, w - 1)
    order = np.argsort(-scores, kind="stable")
    return [(float(scores[i]), int(ks[i]), (float(ry[i]), float(rx[i]))) for i in order]


def decode_multiple_poses(
    out: NetOutputs, max_detections: int = 20, score_threshold: float = 0.2, nms_radius: float = 10.0
) -> list[DecodedPose]:
    """Several poses in network-input pixels, best first.

    score_threshold: minimum keypoint probability for a root candidate and minimum pose score.
    nms_radius: input pixels; a root candidate this close to the same keypoint of an accepted
    pose is skipped, and overlapping keypoints do not count towards a later pose's score.
    """
    if max_detections < 1:
        raise ValueError(f"max_detections must be >= 1, got {max_detections}")
    s = float(out.stride)
    heat = out.heatmaps
    short, mid = out.short_offsets / s, out.mid_offsets / s  # to block units
    radius2 = (nms_radius / s) ** 2
    poses: list[tuple[np.ndarray, np.ndarray, float]] = []
    for _, k, (y, x) in _root_candidates(heat, short, logit(score_threshold)):
        if len(poses) >= max_detections:
            break
        if any((p[0][k, 0] - y) ** 2 + (p[0][k, 1] - x) ** 2 <= radius2 for p in poses):
            continue
        yx, logits = _grow_pose((y, x), k, heat, short, mid)
        probs = sigmoid(logits)
        score = float(probs.mean())
        if score >= score_threshold:
            poses.append((yx, probs, score))
    # Soft keypoint NMS: a keypoint within the radius of the same keypoint of a better pose
    # stops counting towards this pose's score.
    poses.sort(key=lambda p: -p[2])
    rescored = []
    for i, (yx, probs, _) in enumerate(poses):
        occluded = np.zeros(NUM_KEYPOINTS, bool)
        for better, _, _ in poses[:i]:
            occluded |= ((better - yx) ** 2).sum(axis=1) <= radius2
        rescored.append(DecodedPose(yx * s, probs.astype(np.float32), float(probs[~occluded].sum() / NUM_KEYPOINTS)))
    rescored.sort(key=lambda p: -p.score)
    return [p for p in rescored if p.score >= score_threshold]


def decode_single_pose(out: NetOutputs) -> DecodedPose:
    """One pose: each keypoint at its heatmap's maximum, refined by the short offset there."""
    heat = out.heatmaps
    h, w = heat.shape[:2]
    flat = heat.reshape(-1, NUM_KEYPOINTS).argmax(axis=0)
    ys, xs = np.unravel_index(flat, (h, w))
    k = np.arange(NUM_KEYPOINTS)
    yx = np.stack(
        [
            ys * out.stride + out.short_offsets[ys, xs, k],
            xs * out.stride + out.short_offsets[ys, xs, k + NUM_KEYPOINTS],
        ],
        axis=1,
    )
    probs = sigmoid(heat[ys, xs, k]).astype(np.float32)
    return DecodedPose(yx.astype(np.float64), probs, float(probs.mean()))


def instance_costs(out: NetOutputs, poses: list[DecodedPose], min_keypoint_score: float = 0.2) -> np.ndarray:
    """[h, w, N] cost of giving each block to each pose (lower is better).

    From every block the long offsets are followed (with refinement) to where it believes each
    of its person's keypoints is; the cost is the mean squared distance, in input pixels, from
    those points to the pose's keypoints, over the pose's keypoints scoring min_keypoint_score
    or more (all of them if none does).
    """
    if out.long_offsets is None:
        raise ValueError("instance assignment needs the long offsets output")
    h, w = out.heatmaps.shape[:2]
    s = float(out.stride)
    long = out.long_offsets / s
    gy, gx = np.mgrid[0:h, 0:w]
    k = np.arange(NUM_KEYPOINTS)
    y = np.repeat(gy.reshape(-1, 1).astype(np.float64), NUM_KEYPOINTS, axis=1)
    x = np.repeat(gx.reshape(-1, 1).astype(np.float64), NUM_KEYPOINTS, axis=1)
    for _ in range(LONG_REFINE_STEPS + 1):
        dy = _sample_many(long, y, x, k[None, :])
        dx = _sample_many(long, y, x, k[None, :] + NUM_KEYPOINTS)
        y, x = np.clip(y + dy, 0, h - 1), np.clip(x + dx, 0, w - 1)
    costs = np.empty((h * w, len(poses)), np.float32)
    for n, pose in enumerate(poses):
        use = pose.scores >= min_keypoint_score
        if not use.any():
            use[:] = True
        d2 = (y * s - pose.yx[:, 0]) ** 2 + (x * s - pose.yx[:, 1]) ** 2
        costs[:, n] = d2[:, use].mean(axis=1)
    return costs.reshape(h, w, len(poses))


@lru_cache(maxsize=16)
def _block_maps(stride: int, input_size: tuple[int, int], image_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """cv2.remap maps from image pixels to block coordinates (one pair per frame geometry)."""
    (in_w, in_h), (w, h) = input_size, image_size
    bx = ((np.arange(w, dtype=np.float64) + 0.5) * (in_w / (w * stride))).astype(np.float32)
    by = ((np.arange(h, dtype=np.float64) + 0.5) * (in_h / (h * stride))).astype(np.float32)
    mx, my = np.meshgrid(bx, by)
    return cv2.convertMaps(mx, my, cv2.CV_16SC2)  # fixed point: the fast remap path


def block_to_image(
    field: np.ndarray,
    stride: int,
    input_size: tuple[int, int],
    image_size: tuple[int, int],
    region: tuple[int, int, int, int] | None = None,
) -> np.ndarray:
    """Bilinearly resample a block-grid field [h, w] or [h, w, C] to image pixels [H, W(, C)].

    Image pixel centre (u + 0.5, v + 0.5) maps to the input (stretched) and from there to block
    coordinates by dividing by the stride; the edge blocks extend outwards. cv2 places samples
    to 1/32 of a block (half an input pixel at stride 16). region (x0, y0, x1, y1) resamples only
    those image pixels (the result is then [y1 - y0, x1 - x0(, C)]).
    """
    w, h = image_size
    m1, m2 = _block_maps(int(stride), tuple(input_size), (int(w), int(h)))
    if region is not None:
        x0, y0, x1, y1 = region
        m1, m2 = np.ascontiguousarray(m1[y0:y1, x0:x1]), np.ascontiguousarray(m2[y0:y1, x0:x1])
    rh, rw = m1.shape[:2]
    field = np.ascontiguousarray(field, dtype=np.float32)
    if field.ndim == 2:
        return cv2.remap(field, m1, m2, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    out = np.empty((rh, rw, field.shape[2]), np.float32)
    for c in range(0, field.shape[2], 4):  # cv2.remap interpolates at most 4 channels at once
        chunk = np.ascontiguousarray(field[..., c : c + 4])
        out[..., c : c + chunk.shape[2]] = cv2.remap(
            chunk, m1, m2, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        ).reshape(rh, rw, -1)
    return out
