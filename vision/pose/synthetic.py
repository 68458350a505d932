"""Synthetic clips with known motion, for testing pose estimation and tracking end to end.

A real photo is pasted onto a canvas with a smoothly changing similarity transform (scale,
rotation, translation), so the true position of every photo pixel in every frame is known:
keypoints found on the photo, mapped through the frame's affine, are where they must be found
in the frame.
"""

from __future__ import annotations

import cv2
import numpy as np


def apply_affine(affine_2x3: np.ndarray, points_xy: np.ndarray) -> np.ndarray:
    """Map points [N, 2] (x, y) through a 2x3 affine."""
    a = np.asarray(affine_2x3, np.float64)
    return np.asarray(points_xy, np.float64) @ a[:, :2].T + a[:, 2]


def moving_photo_clip(
    photo_rgb: np.ndarray,
    n_frames: int = 60,
    size: tuple[int, int] = (640, 480),
    seed: int = 0,
    max_rotation_deg: float = 4.0,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Frames of photo_rgb drifting, zooming and tilting across a canvas of size (width, height).

    Returns [(frame_rgb uint8 [H, W, 3], affine 2x3 float64 mapping photo pixels -> frame
    pixels)]. The motion is a sum of slow sinusoids with seeded phases: smooth from frame to
    frame, with the photo scaled between about 45% and 95% of the largest size that fits and
    its centre kept where the scaled photo stays (almost) inside the frame. The background is the
    photo's median border colour, so the paste edge is faint.
    """
    if photo_rgb.ndim != 3 or photo_rgb.shape[2] != 3 or photo_rgb.dtype != np.uint8:
        raise ValueError(f"photo must be uint8 RGB [H, W, 3], got {photo_rgb.dtype} {photo_rgb.shape}")
    if n_frames < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames}")
    width, height = size
    ph, pw = photo_rgb.shape[:2]
    rng = np.random.default_rng(seed)
    phases = rng.uniform(0, 2 * np.pi, size=4)
    border = np.concatenate([photo_rgb[0], photo_rgb[-1], photo_rgb[:, 0], photo_rgb[:, -1]])
    background = tuple(int(v) for v in np.median(border, axis=0))
    fit = min(width / pw, height / ph)
    t = np.linspace(0.0, 1.0, n_frames)
    clip = []
    for i in range(n_frames):
        scale = fit * (0.7 + 0.25 * np.sin(2 * np.pi * t[i] + phases[0]))
        angle = np.deg2rad(max_rotation_deg) * np.sin(2 * np.pi * t[i] + phases[1])
        # Free room for the photo's centre at this scale, so it stays in the frame.
        room_x = max(0.0, (width - scale * pw) / 2)
        room_y = max(0.0, (height - scale * ph) / 2)
        cx = width / 2 + 0.9 * room_x * np.sin(2 * np.pi * t[i] + phases[2])
        cy = height / 2 + 0.9 * room_y * np.sin(4 * np.pi * t[i] + phases[3])
        c, s = np.cos(angle) * scale, np.sin(angle) * scale
        linear = np.array([[c, -s], [s, c]])
        offset = np.array([cx, cy]) - linear @ np.array([pw / 2, ph / 2])
        affine = np.hstack([linear, offset[:, None]])
        frame = cv2.warpAffine(
            photo_rgb,
            affine,
            (width, height),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=background,
        )
        clip.append((frame, affine))
    return clip


def cutout_backdrop(photo_rgb: np.ndarray, mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The photo without its person, as a still backdrop of `size` (width, height): the person's
    pixels (mask above 0.5, grown a little) inpainted, the photo scaled to cover the canvas and
    cropped to its aspect, softened so the inpainting does not show."""
    hole = cv2.dilate((np.asarray(mask) > 0.5).astype(np.uint8), np.ones((15, 15), np.uint8))
    filled = cv2.inpaint(np.ascontiguousarray(photo_rgb), hole * 255, 9, cv2.INPAINT_TELEA)
    width, height = size
    ph, pw = filled.shape[:2]
    k = max(width / pw, height / ph)
    scaled = cv2.resize(filled, (max(width, round(pw * k)), max(height, round(ph * k))), interpolation=cv2.INTER_AREA)
    y0, x0 = (scaled.shape[0] - height) // 2, (scaled.shape[1] - width) // 2
    return cv2.GaussianBlur(scaled[y0 : y0 + height, x0 : x0 + width], (0, 0), 2.0)


def moving_person_clip(
    photo_rgb: np.ndarray,
    mask: np.ndarray,
    n_frames: int = 60,
    size: tuple[int, int] = (640, 480),
    seed: int = 0,
    backdrop: np.ndarray | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The person of a photo (mask: float [h, w] in 0..1, e.g. BlazePose's) moving as in
    moving_photo_clip, over a still backdrop (default: cutout_backdrop of the same photo), as a
    booth camera sees a visitor. Returns [(frame_rgb, affine photo -> frame)]."""
    mask = np.asarray(mask, np.float32)
    if mask.shape != photo_rgb.shape[:2]:
        raise ValueError(f"mask is {mask.shape} but the photo {photo_rgb.shape[:2]}")
    if backdrop is None:
        backdrop = cutout_backdrop(photo_rgb, mask, size)
    out = []
    for frame, affine in moving_photo_clip(photo_rgb, n_frames, size, seed):
        alpha = cv2.warpAffine(mask, affine, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)[..., None]
        composite = frame.astype(np.float32) * alpha + backdrop.astype(np.float32) * (1.0 - alpha)
        out.append((np.clip(composite.round(), 0, 255).astype(np.uint8), affine))
    return out
