"""Image-to-model-input geometry shared by the backends."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Fit:
    """How an image was placed into a model input: input = image * scale + offset, per axis."""

    scale_x: float
    scale_y: float
    offset_x: float
    offset_y: float

    def to_image(self, x_in: np.ndarray, y_in: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Model-input pixel coordinates -> original image pixel coordinates."""
        return (x_in - self.offset_x) / self.scale_x, (y_in - self.offset_y) / self.scale_y


def _resize(image: np.ndarray, w: int, h: int) -> np.ndarray:
    # INTER_AREA when shrinking avoids aliasing; linear when enlarging.
    shrinking = w < image.shape[1] or h < image.shape[0]
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def letterbox(image: np.ndarray, width: int, height: int) -> tuple[np.ndarray, Fit]:
    """Resize keeping the aspect ratio, centred on a black canvas of width x height."""
    h, w = image.shape[:2]
    s = min(width / w, height / h)
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    ox, oy = (width - nw) // 2, (height - nh) // 2
    canvas = np.zeros((height, width, 3), image.dtype)
    canvas[oy : oy + nh, ox : ox + nw] = _resize(image, nw, nh)
    return canvas, Fit(nw / w, nh / h, ox, oy)


def stretch(image: np.ndarray, width: int, height: int) -> tuple[np.ndarray, Fit]:
    """Resize to width x height ignoring the aspect ratio."""
    h, w = image.shape[:2]
    return _resize(image, width, height), Fit(width / w, height / h, 0.0, 0.0)


def fit_image(image: np.ndarray, width: int, height: int, mode: str) -> tuple[np.ndarray, Fit]:
    if mode == "letterbox":
        return letterbox(image, width, height)
    if mode == "stretch":
        return stretch(image, width, height)
    raise ValueError(f"resize mode must be 'letterbox' or 'stretch', got {mode!r}")


def crop_square(image: np.ndarray, cx: float, cy: float, side: float, out_size: int) -> tuple[np.ndarray, Fit]:
    """The square of the given side centred on (cx, cy), zero-padded where it leaves the image,
    resized to out_size x out_size."""
    h, w = image.shape[:2]
    n = max(2, round(side))
    x0, y0 = round(cx - n / 2), round(cy - n / 2)
    region = np.zeros((n, n, 3), image.dtype)
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x0 + n, w), min(y0 + n, h)
    if sx1 > sx0 and sy1 > sy0:
        region[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = image[sy0:sy1, sx0:sx1]
    s = out_size / n
    return _resize(region, out_size, out_size), Fit(s, s, -x0 * s, -y0 * s)
