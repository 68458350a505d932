"""A clip of a photo's person dancing: their own limbs moved through a generated dance by the part
warper (vision.warp), over the photo's backdrop without them. The demo's camera and reference.

    clip = dancing_person_clip(photo, mask, pose, n_frames=150, size=(640, 360), seed=1)

The dance (`dance_poses`) swings the arms up and out and bends the elbows, sways the hips and
knees, tilts the head and sways the whole body, each on its own slow rhythm with seeded phases;
a part the photo does not show (legs below its edge) is simply not drawn (vision.warp).
"""

from __future__ import annotations

import numpy as np

from schemas.keypoints import INDEX
from vision.pose.synthetic import cutout_backdrop
from vision.warp import SCORE_THRESHOLD, PartWarper, SourceView

_CHAINS = {  # joint -> the keypoints that move with it, by side (+1: the person's left)
    "shoulder": ("elbow", "wrist"),
    "elbow": ("wrist",),
    "hip": ("knee", "ankle"),
    "knee": ("ankle",),
}


def _rotate(pose: np.ndarray, centre: int, moving: list[int], angle: float) -> None:
    c, s = np.cos(angle), np.sin(angle)
    r = np.array([[c, -s], [s, c]])
    pose[moving, :2] = (pose[moving, :2] - pose[centre, :2]) @ r.T + pose[centre, :2]


def dance_poses(pose: np.ndarray, n_frames: int, fps: float = 30.0, seed: int = 0) -> np.ndarray:
    """[n_frames, 17, 3]: `pose` (standing, in its image's pixels) dancing; scores kept."""
    base = np.asarray(pose, np.float64)
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 2 * np.pi, 8)
    period = rng.uniform(1.6, 2.4)  # seconds per arm swing
    shoulders = base[[INDEX["left_shoulder"], INDEX["right_shoulder"]], :2]
    size = float(np.linalg.norm(shoulders[0] - shoulders[1])) or 1.0
    out = np.empty((n_frames, *base.shape))
    for i in range(n_frames):
        t = 2 * np.pi * i / fps / period
        p = base.copy()
        for k, side in enumerate(("left", "right")):
            # Image y points down: the person's left arm rises outwards by turning clockwise on screen.
            out_sign = -1.0 if side == "left" else 1.0
            lift = 0.5 - 0.5 * np.cos(t + phase[k])  # 0 (down) .. 1 (up and out)
            _rotate(
                p, INDEX[f"{side}_shoulder"], [INDEX[f"{side}_{j}"] for j in _CHAINS["shoulder"]], out_sign * 1.5 * lift
            )
            _rotate(p, INDEX[f"{side}_elbow"], [INDEX[f"{side}_wrist"]], out_sign * 0.9 * np.sin(t + phase[2 + k]))
            _rotate(
                p,
                INDEX[f"{side}_hip"],
                [INDEX[f"{side}_{j}"] for j in _CHAINS["hip"]],
                out_sign * 0.18 * (0.5 - 0.5 * np.cos(0.5 * t + phase[4 + k])),
            )
            _rotate(p, INDEX[f"{side}_knee"], [INDEX[f"{side}_ankle"]], -out_sign * 0.2 * np.sin(0.5 * t + phase[4]))
        neck = shoulders.mean(0)
        head = [INDEX[n] for n in ("nose", "left_eye", "right_eye", "left_ear", "right_ear")]
        c, s = np.cos(0.12 * np.sin(t + phase[6])), np.sin(0.12 * np.sin(t + phase[6]))
        p[head, :2] = (p[head, :2] - neck) @ np.array([[c, -s], [s, c]]).T + neck
        p[:, 0] += 0.35 * size * np.sin(0.5 * t + phase[7])
        p[:, 1] += 0.05 * size * np.sin(2 * t)
        out[i] = p
    return out.astype(np.float32)


def dancing_person_clip(
    photo_rgb: np.ndarray,
    mask: np.ndarray,
    pose: np.ndarray,
    n_frames: int = 60,
    size: tuple[int, int] = (640, 480),
    seed: int = 0,
    fps: float = 30.0,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The photo's person (mask float [h, w] 0..1, pose [17, 3] in the photo's pixels, e.g.
    BlazePose's) dancing over the photo's backdrop at `size`: [(frame uint8 RGB, pose in the frame)].
    Keypoints far outside the photo count as unseen."""
    import cv2

    ph, pw = photo_rgb.shape[:2]
    p = np.asarray(pose, np.float32).copy()
    # A keypoint just past the photo's edge (hips below a portrait's) still places the torso; one
    # far past it (knees, ankles) is a guess of something never seen.
    far = 0.1 * ph
    outside = (p[:, 0] < -far) | (p[:, 0] >= pw + far) | (p[:, 1] < -far) | (p[:, 1] >= ph + far)
    p[outside, 2] = 0.0
    width, height = size
    # Placed as cutout_backdrop places the photo (scaled to cover the frame, centred), the person
    # then shrunk about the frame's centre so the raised arms and the sway stay in the frame.
    k = max(width / pw, height / ph)
    cover = np.array([[k, 0.0, (width - pw * k) / 2], [0.0, k, (height - ph * k) / 2]])
    shrink = 0.7
    centre = np.array([width / 2, height * 0.55])
    place = np.vstack([cover, [0, 0, 1]])
    place = np.array([[shrink, 0, (1 - shrink) * centre[0]], [0, shrink, (1 - shrink) * centre[1]]]) @ place
    frame = cv2.warpAffine(photo_rgb, place, size, flags=cv2.INTER_AREA)
    person = cv2.warpAffine(np.asarray(mask, np.float32), place, size, flags=cv2.INTER_LINEAR)
    p[:, :2] = p[:, :2] @ place[:, :2].T + place[:, 2]
    warper = PartWarper([SourceView.build(frame, person, p)])
    backdrop = cutout_backdrop(photo_rgb, mask, size)
    out = []
    for target in dance_poses(p, n_frames, fps, seed):
        image, _missing = warper.render(target, backdrop)
        target = target.copy()
        target[target[:, 2] < SCORE_THRESHOLD, 2] = 0.0
        out.append((image, target))
    return out
