"""Where a warped view cannot be trusted: three maps the warp-conditioned generator reads beside it
(trainer.warp_framing, conditioning "warp-reliable"), so it learns to follow the pose map there.

    maps = reliability_maps(warper, target_pose, (W, H))   # float32 [H, W, 3] in 0..1

Each map is painted over the target's parts (vision.warp.part_region), per part:
* unseen: no source view has the part (the warp leaves it out: the network paints it from the pose).
* far: how far the part's bone turned or stretched between the view it is moved from and the
  target, in the torso's frame (so a body moved as a whole is not far), in torso lengths, 1 at
  FAR_FULL or more. A limb far from its source is stretched pixels at best, a source stride at worst.
* facing: the part's view faces another way (front / back / profile, trainer.fidelity.facing_class)
  than the target: the warp would show a face where the target shows a back.
A target the estimator left without a torso gets the "far" of nothing known: 1 on every part.
"""

from __future__ import annotations

import numpy as np

from schemas.keypoints import INDEX
from trainer.fidelity import SCORE_THRESHOLD, facing_class
from vision.warp import LIMBS, PartWarper, part_region

NAMES = ("unseen", "far", "facing")
FAR_FULL = 1.0  # torso lengths: a bone vector that changed this much is not warped, it is redrawn

_L_SH, _R_SH = INDEX["left_shoulder"], INDEX["right_shoulder"]
_L_HIP, _R_HIP = INDEX["left_hip"], INDEX["right_hip"]


def _frame(pose: np.ndarray) -> tuple[np.ndarray, np.ndarray, float] | None:
    """(origin, [2, 2] rotation rows, torso length) of the pose's hip-shoulder frame, else None."""
    p = np.asarray(pose, np.float64)
    need = [_L_SH, _R_SH, _L_HIP, _R_HIP]
    if not (np.isfinite(p[need]).all() and (p[need, 2] >= SCORE_THRESHOLD).all()):
        return None
    hip, shoulder = (p[_L_HIP, :2] + p[_R_HIP, :2]) / 2, (p[_L_SH, :2] + p[_R_SH, :2]) / 2
    up = shoulder - hip
    length = float(np.linalg.norm(up))
    if length < 1e-6:
        return None
    uy = up / length
    return hip, np.stack([np.array([uy[1], -uy[0]]), uy]), length


def _bone_vector(pose: np.ndarray, name: str) -> np.ndarray | None:
    """The part's bone in the pose's torso frame (torso lengths): a limb from joint to joint, the
    head from the shoulders' centre to the nose, the torso from left to right shoulder."""
    frame = _frame(pose)
    if frame is None:
        return None
    _o, rot, length = frame
    p = np.asarray(pose, np.float64)
    if name == "head":
        a, b = (p[_L_SH, :2] + p[_R_SH, :2]) / 2, p[INDEX["nose"], :2]
        ok = p[INDEX["nose"], 2] >= SCORE_THRESHOLD
    elif name == "torso":
        a, b, ok = p[_L_SH, :2], p[_R_SH, :2], True
    else:
        i, j, _reach = LIMBS[name]
        a, b, ok = p[i, :2], p[j, :2], bool(min(p[i, 2], p[j, 2]) >= SCORE_THRESHOLD)
    if not ok or not (np.isfinite(a).all() and np.isfinite(b).all()):
        return None
    return rot @ (b - a) / length


def part_distance(source: np.ndarray, target: np.ndarray, name: str) -> float:
    """How much part `name`'s bone changed from source to target pose, in torso lengths (each in its
    own torso frame); inf where either pose cannot say."""
    a, b = _bone_vector(source, name), _bone_vector(target, name)
    return float("inf") if a is None or b is None else float(np.linalg.norm(a - b))


def reliability_maps(warper: PartWarper, target: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """float32 [H, W, 3] (unseen, far, facing), 0 = the warp can be trusted, for pose `target` on a
    frame of size (W, H); zero where the target has no part."""
    w, h = size
    out = np.zeros((h, w, 3), np.float32)
    target = np.asarray(target, np.float32)
    facing_t = facing_class(target)
    for name, pick in warper.sources(target).items():
        region = part_region(target, name, size) > 0
        if not region.any():
            continue
        if pick is None:
            values = (1.0, 1.0, 1.0 if facing_t is not None else 0.0)
        else:
            view = pick[0]
            far = min(1.0, part_distance(view.pose, target, name) / FAR_FULL)
            facing_s = facing_class(view.pose)
            values = (0.0, far, float(facing_t is not None and facing_s != facing_t))
        for c, v in enumerate(values):
            if v > 0:
                out[..., c][region] = np.maximum(out[..., c][region], v)
    return out
