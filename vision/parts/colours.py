"""Body-part ids and their colours.

Part ids are BodyPix's 24 parts shifted by one so that 0 is the background:
``part_id = bodypix_part_index + 1``. "left" and "right" are the person's own sides (as in
COCO keypoints); "front" and "back" say which side of a limb or the torso faces the camera.

The palette is BodyPix's default "rainbow" part colouring (the colours its browser library
draws part masks with), so part masks captured from a browser can be mapped back to ids;
background is black.
"""

from __future__ import annotations

import colorsys

import numpy as np

PART_NAMES = (
    "left_face",
    "right_face",  # 1, 2
    "left_upper_arm_front",
    "left_upper_arm_back",  # 3, 4
    "right_upper_arm_front",
    "right_upper_arm_back",  # 5, 6
    "left_lower_arm_front",
    "left_lower_arm_back",  # 7, 8
    "right_lower_arm_front",
    "right_lower_arm_back",  # 9, 10
    "left_hand",
    "right_hand",  # 11, 12
    "torso_front",
    "torso_back",  # 13, 14
    "left_upper_leg_front",
    "left_upper_leg_back",  # 15, 16
    "right_upper_leg_front",
    "right_upper_leg_back",  # 17, 18
    "left_lower_leg_front",
    "left_lower_leg_back",  # 19, 20
    "right_lower_leg_front",
    "right_lower_leg_back",  # 21, 22
    "left_foot",
    "right_foot",  # 23, 24
)
NUM_PARTS = len(PART_NAMES)
NUM_CLASSES = NUM_PARTS + 1  # with the background
BACKGROUND = 0
PART_ID = {name: i + 1 for i, name in enumerate(PART_NAMES)}
FACE_PARTS = (PART_ID["left_face"], PART_ID["right_face"])

# RGB per class id: background, then the 24 parts in PART_NAMES order.
PALETTE = np.array(
    [
        (0, 0, 0),
        (110, 64, 170),
        (143, 61, 178),
        (178, 60, 178),
        (210, 62, 167),
        (238, 67, 149),
        (255, 78, 125),
        (255, 94, 99),
        (255, 115, 75),
        (255, 140, 56),
        (239, 167, 47),
        (217, 194, 49),
        (194, 219, 64),
        (175, 240, 91),
        (135, 245, 87),
        (96, 247, 96),
        (64, 243, 115),
        (40, 234, 141),
        (28, 219, 169),
        (26, 199, 194),
        (33, 176, 213),
        (47, 150, 224),
        (65, 125, 224),
        (84, 101, 214),
        (99, 81, 195),
    ],
    dtype=np.uint8,
)
PALETTE.setflags(write=False)
assert len(PALETTE) == NUM_CLASSES

# Brightness of each person's colours, by person index (cycling): the hue keeps saying which
# part, the brightness says whose. Kept well above black so every part stays distinct from the
# background.
PERSON_VALUES = (1.0, 0.6, 0.8, 0.45)


def person_palette(person: int, palette: np.ndarray = PALETTE) -> np.ndarray:
    """The palette for the person-th person (0-based): same hues, the person's brightness.

    Person 0 gets the palette itself. The background stays black.
    """
    if person < 0:
        raise ValueError(f"person index must be >= 0, got {person}")
    value = PERSON_VALUES[person % len(PERSON_VALUES)]
    if value == 1.0:
        return np.array(palette, dtype=np.uint8)
    out = np.array(palette, dtype=np.uint8)
    for i, rgb in enumerate(out[1:], start=1):
        h, s, v = colorsys.rgb_to_hsv(*(rgb / 255.0))
        out[i] = np.round(np.array(colorsys.hsv_to_rgb(h, s, v * value)) * 255)
    return out


def colourize(part_ids: np.ndarray, palette: np.ndarray = PALETTE) -> np.ndarray:
    """Part-id map [H, W] (0..24) -> RGB uint8 [H, W, 3]."""
    ids = np.asarray(part_ids)
    if ids.ndim != 2 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"part ids must be an integer [H, W] map, got {ids.dtype} {ids.shape}")
    if ids.size and (ids.min() < 0 or ids.max() >= len(palette)):
        raise ValueError(f"part ids must lie in 0..{len(palette) - 1}, got {ids.min()}..{ids.max()}")
    return np.asarray(palette, dtype=np.uint8)[ids]
