"""The background plate: what a camera sees without the person.

    plate = estimate_plate(frames, masks)     # frames uint8 [H, W, 3], masks float [H, W] (1 = person)

Each pixel's plate colour is the median of that pixel over the frames in which it lies outside the
person (the mask above 0.5, grown by `dilate_px` so the mask's soft edge and the person's contact
shadow stay out). A pixel the person covered in every frame (a visitor who never left one spot)
has no sample: it is filled by inpainting from its surroundings, and `Plate.filled` says how much
of the frame that was; `coverage` holds, per pixel, the share of frames that saw it free.

The median needs only a few free looks per pixel, so at most `max_frames` frames, spread evenly
over the sequence, are used; rows are processed in blocks to bound memory.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

DEFAULT_MAX_FRAMES = 60
MASK_THRESHOLD = 0.5


@dataclass(frozen=True)
class Plate:
    image: np.ndarray  # uint8 [H, W, 3]
    coverage: np.ndarray  # float32 [H, W]: share of the frames used in which the pixel was free
    frames: int  # frames the median was taken over

    @property
    def size(self) -> tuple[int, int]:
        return int(self.image.shape[1]), int(self.image.shape[0])

    @property
    def filled(self) -> float:
        """Share of the pixels never seen free (inpainted)."""
        return float((self.coverage <= 0).mean())


def default_dilation(size: tuple[int, int]) -> int:
    """Mask growth in pixels: 1.5% of the frame's larger side (10 px at 640x480)."""
    return max(2, round(0.015 * max(size)))


def spread(n: int, k: int) -> np.ndarray:
    """Up to k indices spread evenly over range(n), first and last included."""
    return np.unique(np.linspace(0, n - 1, min(k, n)).round().astype(int)) if n else np.zeros(0, int)


def estimate_plate(
    frames: Sequence[np.ndarray] | np.ndarray,
    masks: Sequence[np.ndarray] | np.ndarray,
    *,
    dilate_px: int | None = None,
    max_frames: int = DEFAULT_MAX_FRAMES,
    rows_per_block: int = 48,
) -> Plate:
    """The plate of frames (uint8 [H, W, 3], one size) whose person masks (float or bool [H, W],
    1 = person; or uint8, 255 = person) are given; see the module docstring."""
    if len(frames) == 0 or len(frames) != len(masks):
        raise ValueError(f"need one mask per frame and at least one frame, got {len(frames)} and {len(masks)}")
    picks = spread(len(frames), max_frames)
    stack = np.stack([np.asarray(frames[i]) for i in picks])
    if stack.dtype != np.uint8 or stack.ndim != 4 or stack.shape[3] != 3:
        raise ValueError(f"frames must be uint8 [H, W, 3] of one size, got {stack.dtype} {stack.shape[1:]}")
    n, h, w, _ = stack.shape
    grow = default_dilation((w, h)) if dilate_px is None else int(dilate_px)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1)) if grow > 0 else None
    free = np.empty((n, h, w), bool)
    for j, i in enumerate(picks):
        m = np.asarray(masks[i])
        if m.shape != (h, w):
            raise ValueError(f"mask {i} is {m.shape[::-1]} but the frames are {(w, h)}")
        person = np.asarray(m > (MASK_THRESHOLD * 255 if m.dtype == np.uint8 else MASK_THRESHOLD), np.uint8)
        if kernel is not None:
            person = np.asarray(cv2.dilate(person, kernel), np.uint8)
        free[j] = person == 0
    coverage = free.mean(axis=0).astype(np.float32)
    plate = np.empty((h, w, 3), np.uint8)
    for y0 in range(0, h, rows_per_block):
        y1 = min(h, y0 + rows_per_block)
        block = np.where(free[:, y0:y1, :, None], stack[:, y0:y1].astype(np.float32), np.nan)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: filled below
            med = np.nanmedian(block, axis=0)
        plate[y0:y1] = np.clip(np.round(np.nan_to_num(med)), 0, 255).astype(np.uint8)
    holes = coverage <= 0
    if holes.all():
        # Nothing was ever free: the plain median is all there is.
        plate = np.asarray(np.median(stack, axis=0).round(), np.uint8)
    elif holes.any():
        plate = np.asarray(cv2.inpaint(plate, holes.astype(np.uint8) * 255, 5, cv2.INPAINT_TELEA), np.uint8)
    return Plate(plate, coverage, n)


def median_image(frames: Sequence[np.ndarray] | np.ndarray, max_frames: int = DEFAULT_MAX_FRAMES) -> np.ndarray:
    """Per-pixel median of up to max_frames frames spread over the sequence (an empty scene's
    frames differ only by noise: the median removes it)."""
    picks = spread(len(frames), max_frames)
    if not len(picks):
        raise ValueError("no frames")
    return np.asarray(np.median(np.stack([np.asarray(frames[i]) for i in picks]), axis=0).round(), np.uint8)
