"""MoveNet Lightning (single person), int8, on the Edge TPU or the CPU."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vision import models
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
        self.choice = tflite.choose_model(
            models.model_path(models_dir, CPU_MODEL),
            models.model_path(models_dir, EDGETPU_MODEL),
            device=device,
            delegate_loader=delegate_loader,
        )
        self.device = self.choice.device
        self._runners = tflite.PerThread(lambda: tflite.Runner(tflite.make_interpreter(self.choice, num_threads)))
        self._runners.get()  # fail now, not on the first frame, if the model cannot load
        self._lock = threading.Lock()
        self._crops: dict[str, _Crop] = {}

    def reset(self, key: str | None = None) -> None:
        with self._lock:
            if key is None:
                self._crops.clear()
            else:
                self._crops.pop(key, None)

    def estimate(self, image_rgb: np.ndarray, key: str = "") -> list[Person]:
        image = check_image(image_rgb)
        with self._lock:
            crop = self._crops.get(key) if self.track else None
        if crop is None:
            tensor, fit = fit_image(image, INPUT_SIZE, INPUT_SIZE, self.resize)
        else:
            tensor, fit = crop_square(image, crop.cx, crop.cy, crop.side, INPUT_SIZE)
        (out,) = self._runners.get()(tensor[None])
        yxs = out.reshape(17, 3)
        x, y = fit.to_image(yxs[:, 1] * INPUT_SIZE, yxs[:, 0] * INPUT_SIZE)
        keypoints = np.stack([x, y, yxs[:, 2]], axis=1).astype(np.float32)
        score = float(keypoints[:, 2].mean())
        if self.track:
            self._update_crop(key, keypoints, image.shape)
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
