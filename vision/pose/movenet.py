"""MoveNet Lightning (single person), int8, on the Edge TPU or the CPU."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vision.pose import tflite
from vision.pose.base import Estimator, Person, check_image
from vision.pose.imaging import crop_square, fit_image

CPU_MODEL = "movenet_single_pose_lightning_ptq.tflite"
EDGETPU_MODEL = "movenet_single_pose_lightning_ptq_edgetpu.tflite"
INPUT_SIZE = 192
# Tracking crop: keypoints above this score define the person's extent ...
TRACK_MIN_SCORE = 0.25
TRACK_MIN_KEYPOINTS = 8
# ... and the crop is this many times the larger side of their bounding box, leaving room for
# limbs that were missed or move before the next frame.
TRACK_MARGIN = 1.6


@dataclass(frozen=True)
class _Crop:
    cx: float
    cy: float
    side: float


class MoveNetEstimator(Estimator):
    """MoveNet Lightning: one person per frame, COCO-17 keypoints.

    resize: how a whole frame becomes the 192x192 input. "letterbox" keeps the aspect ratio;
    "stretch" squashes the frame, as Coral's own tests and examples do.
    track: per stream key, crop the next frame around the person found in this one, so the
    person fills the small input (the whole frame is used again when the person is lost).
    min_pose_score: frames whose mean keypoint score is below this return no person.
    """

    name = "movenet"

    def __init__(
        self,
        models_dir: Path,
        num_threads: int = 1,
        *,
        device: str = "auto",
        resize: str = "letterbox",
        track: bool = True,
        min_pose_score: float = 0.15,
        delegate_loader: tflite.DelegateLoader | None = None,
    ):
        fit_image(np.zeros((2, 2, 3), np.uint8), 2, 2, resize)  # validate the mode early
        self.resize = resize
        self.track = track
        self.min_pose_score = float(min_pose_score)
        self.choice = tflite.pick_model(
            models_dir, CPU_MODEL, EDGETPU_MODEL, device=device, delegate_loader=delegate_loader
        )
        self.device = self.choice.device
        self._runners = tflite.runners(self.choice, num_threads)
        self._runners.get()  # fail now, not on the first frame, if the model cannot load
        self._lock = threading.Lock()
        self._crops: dict[str, _Crop] = {}

    def reset(self, key: str | None = None) -> None:
        with self._lock:
            if key is None:
                self._crops.clear()
            else:
                self._crops.pop(key, None)

    def input_scale(self, key: str, width: int, height: int) -> float:
        """The model sees 192 pixels across the whole frame (or the tracking crop): a frame
        decoded down to that loses nothing the model would have used."""
        with self._lock:
            crop = self._crops.get(key) if self.track else None
        if crop is not None:
            return min(1.0, INPUT_SIZE / crop.side)
        fits = (INPUT_SIZE / width, INPUT_SIZE / height)
        return min(1.0, min(fits) if self.resize == "letterbox" else max(fits))

    def estimate(self, image_rgb: np.ndarray, key: str = "") -> list[Person]:
        return self.estimate_scaled(image_rgb, key, 1.0)

    def estimate_scaled(self, image_rgb: np.ndarray, key: str = "", scale: float = 1.0) -> list[Person]:
        image = check_image(image_rgb)
        if not 0 < scale <= 1:
            raise ValueError(f"scale must be in (0, 1], got {scale}")
        with self._lock:
            crop = self._crops.get(key) if self.track else None
        # Tracking crops are kept in the frame's own pixels, whatever size each frame comes at.
        if crop is None:
            tensor, fit = fit_image(image, INPUT_SIZE, INPUT_SIZE, self.resize)
        else:
            tensor, fit = crop_square(image, crop.cx * scale, crop.cy * scale, crop.side * scale, INPUT_SIZE)
        (out,) = self._runners.get()(tensor[None])
        yxs = out.reshape(17, 3)
        x, y = fit.to_image(yxs[:, 1] * INPUT_SIZE, yxs[:, 0] * INPUT_SIZE)
        keypoints = np.stack([x / scale, y / scale, yxs[:, 2]], axis=1).astype(np.float32)
        score = float(keypoints[:, 2].mean())
        if self.track:
            frame_shape = (image.shape[0] / scale, image.shape[1] / scale)
            self._update_crop(key, keypoints, frame_shape)
        if score < self.min_pose_score:
            return []
        return [Person(keypoints=keypoints, score=score)]

    def _update_crop(self, key: str, keypoints: np.ndarray, shape: tuple) -> None:
        confident = keypoints[keypoints[:, 2] >= TRACK_MIN_SCORE, :2]
        if len(confident) < TRACK_MIN_KEYPOINTS:
            self.reset(key)  # lost: look at the whole frame next time
            return
        lo, hi = confident.min(axis=0), confident.max(axis=0)
        # Never smaller than a tenth of the frame (a few keypoints bunched together would
        # otherwise zoom in on a fragment), never much larger than the frame itself.
        side = float(np.clip(TRACK_MARGIN * (hi - lo).max(), 0.1 * max(shape[:2]), 1.2 * max(shape[:2])))
        centre = (lo + hi) / 2
        with self._lock:
            self._crops[key] = _Crop(float(centre[0]), float(centre[1]), side)
