"""Keypoint conventions every stage shares.

A pose is a float32 array of shape [17, 3]: (x, y, score) per COCO-17 keypoint, x and y in
pixels of the frame the pose was estimated on, score in [0, 1]. A missing keypoint has score 0.
Backends with more points (BlazePose's 33 landmarks) carry them separately as ``extra``.
"""

from __future__ import annotations

import numpy as np

COCO17 = (
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)
NUM_KEYPOINTS = len(COCO17)
INDEX = {name: i for i, name in enumerate(COCO17)}

# Limbs of the stick figure, as (from, to) keypoint indices. The pose-map renderer gives each
# limb a fixed colour, so the order here is part of the contract between assembler and trainer.
SKELETON = (
    (0, 1),
    (0, 2),
    (1, 3),
    (2, 4),  # face
    (5, 6),
    (5, 11),
    (6, 12),
    (11, 12),  # torso
    (5, 7),
    (7, 9),  # left arm
    (6, 8),
    (8, 10),  # right arm
    (11, 13),
    (13, 15),  # left leg
    (12, 14),
    (14, 16),  # right leg
)

# Per-keypoint flags carried by SmoothedPose (a bit set per keypoint).
OBSERVED = 1
IMPUTED = 2
SMOOTHED = 4
OUTLIER = 8


def empty_keypoints() -> np.ndarray:
    """The [17, 3] pose of nobody: every keypoint at (0, 0) with score 0."""
    return np.zeros((NUM_KEYPOINTS, 3), np.float32)
