"""BlazePose (MediaPipe's pose models) on the CPU: detector + landmark model + per-stream tracking.

Pipeline, per frame and per stream key:
1. If the stream has a region of interest (ROI) from the previous frame, run the landmark model
   on it directly (tracking). Otherwise, or if the landmark model's presence score is below
   ``min_presence``, run the person detector (SSD with generated anchors), keep the best box after
   non-maximum suppression, and derive the ROI from its hip-centre and full-body-scale keypoints.
2. The ROI is a rotated square, cropped to 256x256; the model returns 39 points (33 landmarks +
   6 auxiliary), a presence score and a person-mask logit map, all mapped back to image pixels.
3. The next frame's ROI comes from the auxiliary alignment points (33: hip centre, 34: scale).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from vision.pose import tflite
from vision.pose.base import Estimator, Person, check_image
from vision.pose.imaging import letterbox

DETECTOR_MODEL = "pose_detection.tflite"
LANDMARK_MODELS = {"full": "pose_landmark_full.tflite", "lite": "pose_landmark_lite.tflite"}
DETECTOR_SIZE = 224
LANDMARK_SIZE = 256
NUM_LANDMARKS = 33
NUM_POINTS = 39  # 33 landmarks + 6 auxiliary points
ANCHOR_STRIDES = (8, 16, 32, 32, 32)
ANCHORS_PER_LAYER = 2
# BlazePose landmark index for each COCO-17 keypoint.
COCO_FROM_BLAZEPOSE = (0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28)
ROI_SCALE = 1.25  # margin around the body circle, as in MediaPipe's pose graphs
NMS_IOU = 0.3


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -50.0, 50.0)))


def ssd_anchors(
    input_size: int = DETECTOR_SIZE, strides=ANCHOR_STRIDES, per_layer: int = ANCHORS_PER_LAYER
) -> np.ndarray:
    """Anchor centres [N, 2] (x, y) normalised to the input, in the detector's output order.

    Consecutive layers with the same stride share one feature map, so their anchors are
    interleaved per location. All anchors have unit size (fixed anchor size), so only the
    centres matter.
    """
    groups: list[tuple[int, int]] = []
    for stride in strides:
        if groups and groups[-1][0] == stride:
            groups[-1] = (stride, groups[-1][1] + per_layer)
        else:
            groups.append((stride, per_layer))
    out = []
    for stride, count in groups:
        side = math.ceil(input_size / stride)
        ys, xs = np.mgrid[0:side, 0:side]
        centres = np.stack([(xs + 0.5) / side, (ys + 0.5) / side], axis=-1).reshape(-1, 1, 2)
        out.append(np.repeat(centres, count, axis=1).reshape(-1, 2))
    return np.concatenate(out).astype(np.float32)


@dataclass(frozen=True)
class Detection:
    score: float
    box: np.ndarray  # (x0, y0, x1, y1) in image pixels
    keypoints: np.ndarray  # [4, 2] image pixels: hip centre, body scale point, shoulder centre, upper-body scale point


@dataclass(frozen=True)
class Roi:
    """A rotated square region: centre and side in image pixels, rotation in radians (clockwise)."""

    cx: float
    cy: float
    size: float
    rotation: float

    @classmethod
    def from_alignment(cls, centre: np.ndarray, scale_point: np.ndarray) -> Roi:
        """The square that holds the body circle (centre -> scale point), upright along that vector."""
        dx, dy = float(scale_point[0] - centre[0]), float(scale_point[1] - centre[1])
        size = 2.0 * math.hypot(dx, dy) * ROI_SCALE
        rotation = math.pi / 2 - math.atan2(-dy, dx)
        rotation = (rotation + math.pi) % (2 * math.pi) - math.pi
        return cls(float(centre[0]), float(centre[1]), size, rotation)

    @classmethod
    def from_keypoints(cls, keypoints: np.ndarray, score_threshold: float = 0.2) -> Roi | None:
        """The region BlazePose would track for a COCO-17 pose from any estimator, or None when
        fewer than four keypoints are confident: centred on the hips (else on the keypoints' box),
        upright along hips -> shoulders, its circle reaching the farthest keypoint plus a head's
        worth (the nose is not the top of the head)."""
        kp = np.asarray(keypoints, np.float64)
        ok = np.isfinite(kp).all(axis=1) & (kp[:, 2] >= score_threshold)
        if ok.sum() < 4:
            return None
        xy = kp[ok, :2]
        hips, shoulders = [11, 12], [5, 6]
        centre = kp[hips, :2].mean(0) if ok[hips].all() else (xy.min(0) + xy.max(0)) / 2
        up = np.array([0.0, -1.0])
        if ok[hips].all() and ok[shoulders].all():
            v = kp[shoulders, :2].mean(0) - kp[hips, :2].mean(0)
            if np.hypot(*v) > 1e-6:
                up = v / np.hypot(*v)
        extent = float(np.hypot(*(xy.max(0) - xy.min(0))))
        radius = float(np.max(np.hypot(*(xy - centre).T))) + 0.08 * extent
        return cls.from_alignment(centre, centre + radius * up)

    def crop_to_image(self, crop_size: int = LANDMARK_SIZE) -> np.ndarray:
        """2x3 affine from crop pixels to image pixels."""
        k = self.size / crop_size
        c, s = math.cos(self.rotation), math.sin(self.rotation)
        a = np.array([[c, -s], [s, c]]) * k
        t = np.array([self.cx, self.cy]) - a @ np.array([crop_size / 2, crop_size / 2])
        return np.hstack([a, t[:, None]])


@dataclass
class _Landmarks:
    presence: float
    points: np.ndarray  # [39, 5]: x_px, y_px, z_px, visibility logit, presence logit
    mask: np.ndarray | None  # [H, W] in 0..1


class BlazePoseEstimator(Estimator):
    """BlazePose, single person, with per-key tracking and an optional person mask.

    model: "full" or "lite" landmark model. track: reuse the previous frame's landmarks to place
    the next crop (False runs the detector on every frame). with_mask: compute Person.mask.
    """

    name = "blazepose"

    def __init__(
        self,
        models_dir: Path,
        num_threads: int = 1,
        *,
        model: str = "full",
        track: bool = True,
        with_mask: bool = True,
        min_detection_score: float = 0.5,
        min_presence: float = 0.5,
    ):
        if model not in LANDMARK_MODELS:
            raise ValueError(f"BlazePose model must be one of {sorted(LANDMARK_MODELS)}, got {model!r}")
        self.device = tflite.CPU  # float32 graphs: there is no Edge TPU build of them
        self.track = track
        self.with_mask = with_mask
        self.min_detection_score = float(min_detection_score)
        self.min_presence = float(min_presence)
        self.anchors = ssd_anchors()
        det = tflite.pick_model(models_dir, DETECTOR_MODEL, device=tflite.CPU)
        lm = tflite.pick_model(models_dir, LANDMARK_MODELS[model], device=tflite.CPU)
        self._detectors = tflite.runners(det, num_threads)
        self._landmarkers = tflite.runners(lm, num_threads)
        n_out = self._detectors.get().outputs[0]["shape"][1]
        if n_out != len(self.anchors):
            raise ValueError(
                f"{det.model_path.name} has {n_out} boxes but {len(self.anchors)} anchors "
                "were generated: not the BlazePose detector this code expects"
            )
        self._landmarkers.get()
        self._lock = threading.Lock()
        self._rois: dict[str, Roi] = {}
        self.detector_runs = 0  # how often the detector ran (tracking keeps this low)

    def reset(self, key: str | None = None) -> None:
        with self._lock:
            if key is None:
                self._rois.clear()
            else:
                self._rois.pop(key, None)

    def detect(self, image_rgb: np.ndarray) -> list[Detection]:
        """Person detections in image pixels, best first, after non-maximum suppression."""
        image = check_image(image_rgb)
        with self._lock:
            self.detector_runs += 1
        tensor, fit = letterbox(image, DETECTOR_SIZE, DETECTOR_SIZE)
        x = tensor.astype(np.float32) / 127.5 - 1.0
        outs = self._detectors.get()(x[None])
        raw = next(o for o in outs if o.shape[-1] == 12)[0]
        scores = sigmoid(next(o for o in outs if o.shape[-1] == 1)[0, :, 0])
        keep = np.flatnonzero(scores >= self.min_detection_score)
        if keep.size == 0:
            return []
        raw, scores = raw[keep], scores[keep]
        # Offsets are in input pixels relative to the anchor centre; anchors have unit size.
        anchor_px = self.anchors[keep] * DETECTOR_SIZE
        cx, cy = fit.to_image(raw[:, 0] + anchor_px[:, 0], raw[:, 1] + anchor_px[:, 1])
        w, h = raw[:, 2] / fit.scale_x, raw[:, 3] / fit.scale_y
        kx, ky = fit.to_image(raw[:, 4::2] + anchor_px[:, :1], raw[:, 5::2] + anchor_px[:, 1:])
        boxes_xywh = np.stack([cx - w / 2, cy - h / 2, w, h], axis=1)
        order = cv2.dnn.NMSBoxes(boxes_xywh.tolist(), scores.tolist(), self.min_detection_score, NMS_IOU)
        order = sorted(np.asarray(order).reshape(-1).tolist(), key=lambda i: -scores[i])
        return [
            Detection(
                float(scores[i]),
                np.array([cx[i] - w[i] / 2, cy[i] - h[i] / 2, cx[i] + w[i] / 2, cy[i] + h[i] / 2]),
                np.stack([kx[i], ky[i]], axis=1),
            )
            for i in order
        ]

    def _landmarks(self, image: np.ndarray, roi: Roi) -> _Landmarks:
        crop_to_image = roi.crop_to_image()
        crop = cv2.warpAffine(
            image,
            cv2.invertAffineTransform(crop_to_image),
            (LANDMARK_SIZE, LANDMARK_SIZE),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=0,
        )
        outs = self._landmarkers.get()(crop.astype(np.float32)[None] / 255.0)
        raw = next(o for o in outs if o.shape == (1, NUM_POINTS * 5)).reshape(NUM_POINTS, 5)
        presence = float(next(o for o in outs if o.shape == (1, 1))[0, 0])
        points = raw.astype(np.float64).copy()
        points[:, :2] = raw[:, :2] @ crop_to_image[:, :2].T + crop_to_image[:, 2]
        points[:, 2] = raw[:, 2] * roi.size / LANDMARK_SIZE
        mask = None
        if self.with_mask:
            logits = next(o for o in outs if o.ndim == 4 and o.shape[1:3] == (LANDMARK_SIZE, LANDMARK_SIZE))
            mask = cv2.warpAffine(
                sigmoid(logits[0, :, :, 0]).astype(np.float32),
                crop_to_image,
                (image.shape[1], image.shape[0]),
                flags=cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_CONSTANT,
                borderValue=0,
            )
        return _Landmarks(presence, points, mask)

    def estimate_at(self, image_rgb: np.ndarray, roi: Roi) -> Person | None:
        """The person in a given region (e.g. Roi.from_keypoints of another estimator's pose), with
        its mask when with_mask; None when the landmark model finds nobody there. No tracking state
        is read or changed."""
        result = self._landmarks(check_image(image_rgb), roi)
        return self._person(result) if result.presence >= self.min_presence else None

    def estimate(self, image_rgb: np.ndarray, key: str = "") -> list[Person]:
        image = check_image(image_rgb)
        with self._lock:
            roi = self._rois.get(key) if self.track else None
        result = self._landmarks(image, roi) if roi is not None else None
        if result is None or result.presence < self.min_presence:
            detections = self.detect(image)
            result = None
            if detections:
                best = detections[0]
                result = self._landmarks(image, Roi.from_alignment(best.keypoints[0], best.keypoints[1]))
            if result is None or result.presence < self.min_presence:
                self.reset(key)
                return []
        if self.track:
            with self._lock:
                self._rois[key] = Roi.from_alignment(result.points[33, :2], result.points[34, :2])
        return [self._person(result)]

    @staticmethod
    def _person(result: _Landmarks) -> Person:
        visibility = sigmoid(result.points[:NUM_LANDMARKS, 3])
        extra = np.column_stack([result.points[:NUM_LANDMARKS, :3], visibility]).astype(np.float32)
        coco = extra[list(COCO_FROM_BLAZEPOSE)][:, [0, 1, 3]]
        return Person(
            keypoints=np.ascontiguousarray(coco, dtype=np.float32), score=result.presence, extra=extra, mask=result.mask
        )
