"""A synthetic person's COCO-17 pose: a 3-D stick figure turned about its vertical axis and
projected, so facings, raised arms and bent knees look as a pose estimator reports them (the
face's keypoints fade when it turns away). For tests and benchmarks of coverage and guidance."""

from __future__ import annotations

import numpy as np

from schemas.keypoints import COCO17

# Body coordinates in torso lengths: x the person's left, y down (0 at the hips), z their front.
_BODY = {
    "nose": (0.0, -1.55, 0.25),
    "left_eye": (0.08, -1.62, 0.2),
    "right_eye": (-0.08, -1.62, 0.2),
    "left_ear": (0.18, -1.58, 0.0),
    "right_ear": (-0.18, -1.58, 0.0),
    "left_shoulder": (0.4, -1.0, 0.0),
    "right_shoulder": (-0.4, -1.0, 0.0),
    "left_hip": (0.22, 0.0, 0.0),
    "right_hip": (-0.22, 0.0, 0.0),
    "left_knee": (0.25, 0.8, 0.0),
    "right_knee": (-0.25, 0.8, 0.0),
    "left_ankle": (0.25, 1.6, 0.0),
    "right_ankle": (-0.25, 1.6, 0.0),
}
_ARMS = {  # (elbow, wrist) of the left arm; the right mirrors it
    "down": ((0.45, -0.5, 0.0), (0.5, 0.05, 0.0)),
    "out": ((0.95, -1.0, 0.0), (1.5, -1.0, 0.0)),
    "up": ((0.5, -1.6, 0.0), (0.55, -2.2, 0.0)),
    "forward": ((0.42, -0.9, 0.55), (0.42, -0.9, 1.1)),
}
_FACE = ("nose", "left_eye", "right_eye", "left_ear", "right_ear")


def figure(
    turn_deg: float = 0.0,
    arms: str | tuple[str, str] = "down",
    crouch: float = 0.0,
    *,
    centre_x: float = 320.0,
    ground_y: float = 440.0,
    scale: float = 100.0,
    stance: float = 1.0,
) -> np.ndarray:
    """[17, 3] pose in pixels. turn_deg: 0 faces the camera, 180 shows the back, 90 faces the
    picture's right. arms: one of down/out/up/forward, or (left, right). crouch 0..1 lowers the
    hips by up to 0.5 torso lengths, knees forward. stance widens the feet."""
    left, right = (arms, arms) if isinstance(arms, str) else arms
    pts = dict(_BODY)
    for side, kind, sign in (("left", left, 1.0), ("right", right, -1.0)):
        elbow, wrist = _ARMS[kind]
        pts[f"{side}_elbow"] = (sign * elbow[0], elbow[1], elbow[2])
        pts[f"{side}_wrist"] = (sign * wrist[0], wrist[1], wrist[2])
    for side, sign in (("left", 1.0), ("right", -1.0)):
        pts[f"{side}_ankle"] = (sign * 0.25 * stance, 1.6, 0.0)
        pts[f"{side}_knee"] = (sign * 0.25 * stance, 0.8 + 0.1 * crouch, 0.45 * crouch)
    drop = 0.5 * crouch
    theta = np.deg2rad(turn_deg)
    out = np.zeros((len(COCO17), 3), np.float32)
    for i, name in enumerate(COCO17):
        x, y, z = pts[name]
        if "ankle" not in name and "knee" not in name:
            y += drop
        xs = x * np.cos(theta) + z * np.sin(theta)
        depth = -x * np.sin(theta) + z * np.cos(theta)  # towards the camera: positive
        score = 0.9
        if name in _FACE and (np.cos(theta) < -0.2 or depth < -0.1):
            score = 0.1  # the face turned away, or this ear/eye behind the head
        out[i] = (centre_x + scale * xs, ground_y + scale * (y - 1.6), score)
    return out
