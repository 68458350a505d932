"""What every pose backend returns and promises."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np


class BackendUnavailable(RuntimeError):
    """A backend cannot run here (missing runtime, custom op or accelerator); the message says why."""


@dataclass
class Person:
    """One detected person.

    keypoints: float32 [17, 3] of (x_px, y_px, score) in COCO-17 order, in pixels of the input image.
    score: the person's confidence in [0, 1].
    extra: backend-specific extra points, e.g. BlazePose's 33 x (x_px, y_px, z_px, visibility).
    mask: float32 [H, W] person mask in 0..1 at the input image's size (BlazePose only).
    """

    keypoints: np.ndarray
    score: float
    extra: np.ndarray | None = None
    mask: np.ndarray | None = None


class Estimator(ABC):
    """A pose estimator. estimate() may be called from several threads at once.

    key names the camera stream a frame comes from; backends that track a person from frame to
    frame keep their state per key.
    """

    name: str
    device: str  # "edgetpu" or "cpu"

    @abstractmethod
    def estimate(self, image_rgb: np.ndarray, key: str = "") -> list[Person]:
        """Poses found in one RGB uint8 image [H, W, 3], most confident first."""

    def input_scale(self, key: str, width: int, height: int) -> float:
        """The least fraction (per side, <= 1) of a width x height frame's resolution that the next
        estimate on `key` loses nothing from: a caller may decode the frame that much smaller (a
        JPEG's DCT scaling) and pass it to estimate_scaled. 1.0 (the whole frame) unless a backend
        knows better."""
        return 1.0

    def estimate_scaled(self, image_rgb: np.ndarray, key: str = "", scale: float = 1.0) -> list[Person]:
        """estimate() of a frame given at `scale` of its size (image pixel i covers frame pixels
        [i / scale, (i + 1) / scale)); keypoints are in the frame's own pixels. Backends that
        never ask for less than the whole frame accept only scale 1."""
        if scale != 1.0:
            raise ValueError(f"{self.name} estimates whole frames only, got one at scale {scale}")
        return self.estimate(image_rgb, key)

    def reset(self, key: str | None = None) -> None:
        """Forget tracking state for one stream (or all); a no-op for stateless backends."""
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r} device={self.device!r}>"


def check_image(image_rgb: np.ndarray) -> np.ndarray:
    """Validate an input frame: a uint8 array [H, W, 3]. Returns it C-contiguous."""
    if not isinstance(image_rgb, np.ndarray):
        raise TypeError(f"image must be a numpy array, got {type(image_rgb).__name__}")
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
        raise ValueError(f"image must be RGB with shape [H, W, 3], got shape {image_rgb.shape}")
    if image_rgb.dtype != np.uint8:
        raise ValueError(f"image must be uint8, got dtype {image_rgb.dtype}")
    if image_rgb.shape[0] < 2 or image_rgb.shape[1] < 2:
        raise ValueError(f"image is too small: {image_rgb.shape[1]}x{image_rgb.shape[0]}")
    return np.ascontiguousarray(image_rgb)
