"""Body parts without BodyPix: each person-mask pixel goes to the nearest limb of the pose.

The limbs are the stick figure's (schemas.keypoints.SKELETON), each mapped to a BodyPix part:
face lines to the left/right face, arm and leg bones to their upper/lower parts, the torso
quadrilateral (shoulders and hips) to the torso, which also owns every pixel inside it. Hands
and feet are short segments beyond the wrists and ankles: towards BlazePose's hand and foot
landmarks when they are given, else along the forearm / shin. Whether the front or the back of
the body faces the camera comes from the shoulders (or hips): the person's left on the right of
the image means the person faces the camera.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from schemas.keypoints import INDEX, NUM_KEYPOINTS, SKELETON
from vision.parts.colours import PART_ID
from vision.parts.result import PartsResult
from vision.pose.base import Estimator, Person, check_image

DEFAULT_SCORE_THRESHOLD = 0.2
HAND_FRACTION = 0.45  # hand length beyond the wrist, as a fraction of the forearm
FOOT_FRACTION = 0.3  # foot length beyond the ankle, as a fraction of the shin
# BlazePose landmark indices (Person.extra rows) of the hand and foot tips, per side.
BLAZEPOSE_HAND_TIP = {"left": 19, "right": 20}  # index fingers
BLAZEPOSE_FOOT_TIP = {"left": 31, "right": 32}  # foot index (toes)
TORSO_CORNERS = (INDEX["left_shoulder"], INDEX["right_shoulder"], INDEX["right_hip"], INDEX["left_hip"])


def _limb_part(a: int, b: int, facing_camera: bool) -> str:
    """BodyPix part name of the SKELETON limb a-b."""
    names = {INDEX[n]: n for n in INDEX}
    na, nb = names[a], names[b]
    side = "left" if "left" in na + nb and "right" not in na + nb else "right"
    if {"nose", "left_eye", "right_eye", "left_ear", "right_ear"} >= {na, nb}:
        return f"{side}_face"
    face = "front" if facing_camera else "back"
    joints = {na.split("_", 1)[-1], nb.split("_", 1)[-1]}
    if joints == {"shoulder", "elbow"}:
        return f"{side}_upper_arm_{face}"
    if joints == {"elbow", "wrist"}:
        return f"{side}_lower_arm_{face}"
    if joints == {"hip", "knee"}:
        return f"{side}_upper_leg_{face}"
    if joints == {"knee", "ankle"}:
        return f"{side}_lower_leg_{face}"
    return f"torso_{face}"  # shoulders, hips and the shoulder-hip sides


def facing_camera(keypoints: np.ndarray, score_threshold: float = DEFAULT_SCORE_THRESHOLD) -> bool:
    """True if the person shows the camera their front (True when it cannot be told)."""
    for left, right in (("left_shoulder", "right_shoulder"), ("left_hip", "right_hip")):
        lk, rk = keypoints[INDEX[left]], keypoints[INDEX[right]]
        if min(lk[2], rk[2]) >= score_threshold and abs(lk[0] - rk[0]) > 1e-3:
            return bool(lk[0] > rk[0])
    return True


def limb_segments(
    keypoints: np.ndarray, extra: np.ndarray | None = None, score_threshold: float = DEFAULT_SCORE_THRESHOLD
) -> list[tuple[np.ndarray, np.ndarray, int]]:
    """(start xy, end xy, part id) for every limb whose two keypoints are confident enough."""
    kps = np.asarray(keypoints, np.float64)
    if kps.shape != (NUM_KEYPOINTS, 3):
        raise ValueError(f"keypoints must have shape ({NUM_KEYPOINTS}, 3), got {kps.shape}")
    ok = np.isfinite(kps).all(axis=1) & (kps[:, 2] >= score_threshold)
    front = facing_camera(kps, score_threshold)
    out = [(kps[a, :2], kps[b, :2], PART_ID[_limb_part(a, b, front)]) for a, b in SKELETON if ok[a] and ok[b]]
    for side in ("left", "right"):
        for base, joint, tips, fraction, part in (
            ("elbow", "wrist", BLAZEPOSE_HAND_TIP, HAND_FRACTION, "hand"),
            ("knee", "ankle", BLAZEPOSE_FOOT_TIP, FOOT_FRACTION, "foot"),
        ):
            j, b = INDEX[f"{side}_{joint}"], INDEX[f"{side}_{base}"]
            if not ok[j]:
                continue
            tip = None
            if extra is not None and len(extra) > tips[side] and np.isfinite(extra[tips[side], :2]).all():
                tip = np.asarray(extra[tips[side], :2], np.float64)
            elif ok[b]:
                tip = kps[j, :2] + fraction * (kps[j, :2] - kps[b, :2])
            if tip is not None:
                out.append((kps[j, :2], tip, PART_ID[f"{side}_{part}"]))
    return out


def _segment_distances(px: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """[P, S] distance from each pixel centre to each segment."""
    d = ends - starts  # [S, 2]
    length2 = np.maximum((d**2).sum(axis=1), 1e-9)
    rel = px[:, None, :] - starts[None, :, :]  # [P, S, 2]
    t = np.clip((rel * d[None]).sum(axis=2) / length2, 0.0, 1.0)
    nearest = starts[None] + t[..., None] * d[None]
    return np.sqrt(((px[:, None, :] - nearest) ** 2).sum(axis=2))


def parts_from_pose(
    keypoints: np.ndarray,
    mask: np.ndarray,
    *,
    extra: np.ndarray | None = None,
    score_threshold: float = DEFAULT_SCORE_THRESHOLD,
    mask_threshold: float = 0.5,
) -> np.ndarray:
    """Part ids uint8 [H, W] for one person: mask pixels labelled by their nearest limb.

    keypoints: [17, 3] (x_px, y_px, score) in the mask's pixels. mask: [H, W] bool or person
    probability (above mask_threshold counts). extra: BlazePose's 33 landmarks, for hand and
    foot tips. Mask pixels stay 0 when no limb is confident enough.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be [H, W], got shape {mask.shape}")
    inside = mask if mask.dtype == bool else mask > mask_threshold
    out = np.zeros(mask.shape, np.uint8)
    segments = limb_segments(keypoints, extra, score_threshold)
    ys, xs = np.nonzero(inside)
    if not segments or ys.size == 0:
        return out
    starts = np.array([s[0] for s in segments])
    ends = np.array([s[1] for s in segments])
    ids = np.array([s[2] for s in segments], np.uint8)
    px = np.column_stack([xs + 0.5, ys + 0.5])  # pixel centres, as keypoints are continuous
    labels = ids[_segment_distances(px, starts, ends).argmin(axis=1)]
    out[ys, xs] = labels
    # The torso owns its whole quadrilateral: its middle is far from every torso edge, and an
    # arm lying across the body should not claim it.
    kps = np.asarray(keypoints, np.float64)
    corners = kps[list(TORSO_CORNERS)]
    if (corners[:, 2] >= score_threshold).all():
        quad = np.zeros(mask.shape, np.uint8)
        torso = PART_ID["torso_front" if facing_camera(kps, score_threshold) else "torso_back"]
        cv2.fillPoly(quad, [np.round(corners[:, :2] * 16).astype(np.int32)], 1, cv2.LINE_8, 4)
        torso_px = inside & (quad > 0)
        # Except where a limb's own line runs through: keep pixels right on an arm bone.
        arm_ids = [PART_ID[n] for n in PART_ID if "arm" in n or "hand" in n]
        on_arm = np.zeros_like(torso_px)
        arm = [s for s in segments if s[2] in arm_ids]
        if arm:
            scale = np.linalg.norm(corners[0, :2] - corners[1, :2])
            ty, tx = np.nonzero(torso_px)
            d = _segment_distances(
                np.column_stack([tx + 0.5, ty + 0.5]), np.array([s[0] for s in arm]), np.array([s[1] for s in arm])
            )
            near = d.min(axis=1) < 0.12 * scale
            on_arm[ty[near], tx[near]] = True
        out[torso_px & ~on_arm] = torso
    return out


def parts_from_persons(
    persons: Sequence[Person],
    image_size: tuple[int, int],
    *,
    score_threshold: float = DEFAULT_SCORE_THRESHOLD,
    mask_threshold: float = 0.5,
) -> PartsResult:
    """Part and person maps for several people, each with a mask (Person.mask).

    image_size: (width, height). Where masks overlap, the pixel goes to the person with the
    higher mask value there.
    """
    w, h = image_size
    part_ids = np.zeros((h, w), np.uint8)
    person_ids = np.zeros((h, w), np.uint8)
    best = np.full((h, w), mask_threshold, np.float32)
    for k, person in enumerate(persons):
        if person.mask is None:
            raise ValueError(
                f"person {k} has no mask: use a pose backend that returns one (blazepose with with_mask=True)"
            )
        m = np.asarray(person.mask, np.float32)
        if m.shape != (h, w):
            raise ValueError(f"person {k}'s mask has shape {m.shape}, expected {(h, w)}")
        parts = parts_from_pose(
            person.keypoints, m, extra=person.extra, score_threshold=score_threshold, mask_threshold=mask_threshold
        )
        take = (m > best) & (parts > 0)
        part_ids[take], person_ids[take], best[take] = parts[take], k + 1, m[take]
    return PartsResult(part_ids, person_ids, list(persons), source="pose")


class PoseDerivedSegmenter:
    """Parts from a pose estimator that returns person masks (BlazePose), when BodyPix cannot run."""

    name = "pose"

    def __init__(
        self, estimator: Estimator, score_threshold: float = DEFAULT_SCORE_THRESHOLD, mask_threshold: float = 0.5
    ):
        self.estimator = estimator
        self.device = estimator.device
        self.score_threshold = score_threshold
        self.mask_threshold = mask_threshold

    def __repr__(self) -> str:
        return f"<PoseDerivedSegmenter estimator={self.estimator!r}>"

    def segment(self, image_rgb: np.ndarray, key: str = "") -> PartsResult:
        image = check_image(image_rgb)
        persons = self.estimator.estimate(image, key=key)
        return parts_from_persons(
            persons,
            (image.shape[1], image.shape[0]),
            score_threshold=self.score_threshold,
            mask_threshold=self.mask_threshold,
        )
