"""Person-centred crops: one crop size per session, a square that follows the body, and the way back
onto the camera's frame.

    track = CropTrack.fit(poses, out_size=256)       # poses [T, 17, 3] in the camera's pixels
    a = track.affine(t)                              # 2x3: camera pixels -> crop pixels
    crop = crop_image(frame, a, 256)                 # what the generator learns from
    pose_in_crop = pose_to_crop(pose, a)             # draw the pose map here
    rgb, alpha = uncrop_rgba(gen_rgb, gen_alpha, a, (W, H))
    out = composite(plate, rgb, alpha)               # the person on the background, W x H

Size: the body's extent (the larger side of its box, with the head's top and the feet added to the
keypoints) at a high quantile over the session, times a margin; fixed for the whole session, so
the person's size in the crop still tells how near the camera they stand, and a crouch does not
zoom in. Centre: the body box's centre per frame, gaps (no confident keypoints) interpolated, then
smoothed over time with a centred Gaussian: the whole sequence is known both when training and
when rendering a reference dance, so the smoothing needs no look-ahead limit.

Coordinates are vision.posemap's continuous pixel coordinates (pixel centres at +0.5); the
affines handed to OpenCV are shifted accordingly. A crop may reach past the frame's edges (a
person at the border, a large person): frames and plates continue their edge pixels there,
masks and mattes are 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter1d

from schemas.keypoints import NUM_KEYPOINTS

DEFAULT_MARGIN = 1.2
DEFAULT_QUANTILE = 0.9
DEFAULT_SIGMA = 2.0  # frames
HEAD_ALLOWANCE = 0.12  # keypoints stop at the eyes and the ankles: this much of the height is added above
FEET_ALLOWANCE = 0.05  # ... and this much below
SIDE_ALLOWANCE = 0.08
MIN_KEYPOINTS = 4
SCORE_THRESHOLD = 0.3


def body_box(pose: np.ndarray, score_threshold: float = SCORE_THRESHOLD) -> np.ndarray | None:
    """(x0, y0, x1, y1) of the whole body from its keypoints, or None with fewer than four
    confident ones."""
    kp = np.asarray(pose, np.float32)
    if kp.shape != (NUM_KEYPOINTS, 3):
        raise ValueError(f"pose must be [{NUM_KEYPOINTS}, 3], got {kp.shape}")
    ok = np.isfinite(kp).all(axis=1) & (kp[:, 2] >= score_threshold)
    if ok.sum() < MIN_KEYPOINTS:
        return None
    lo, hi = kp[ok, :2].min(0), kp[ok, :2].max(0)
    h = max(float(hi[1] - lo[1]), float(hi[0] - lo[0]) * 0.5, 1.0)
    return np.array(
        [
            lo[0] - SIDE_ALLOWANCE * h,
            lo[1] - HEAD_ALLOWANCE * h,
            hi[0] + SIDE_ALLOWANCE * h,
            hi[1] + FEET_ALLOWANCE * h,
        ],
        np.float32,
    )


def person_box(pose: np.ndarray, frame_size: tuple[int, int], margin: float = 0.1) -> tuple[int, int, int, int] | None:
    """Integer (x0, y0, x1, y1) of body_box grown by `margin` of its height on each side and
    clipped to the frame (W, H); None when the pose is too sparse or the box lies outside."""
    b = body_box(pose)
    if b is None:
        return None
    m = margin * float(b[3] - b[1])
    w, h = frame_size
    x0, y0 = int(max(0, np.floor(b[0] - m))), int(max(0, np.floor(b[1] - m)))
    x1, y1 = int(min(w, np.ceil(b[2] + m))), int(min(h, np.ceil(b[3] + m)))
    return (x0, y0, x1, y1) if x1 - x0 >= 2 and y1 - y0 >= 2 else None


def smooth_centres(xy: np.ndarray, sigma: float = DEFAULT_SIGMA) -> np.ndarray:
    """[T, 2] centres with NaN gaps filled by linear interpolation, then a centred Gaussian over
    time (sigma in frames); ValueError when no frame has a centre."""
    xy = np.asarray(xy, np.float64).copy()
    t = np.arange(len(xy))
    for c in range(xy.shape[1]):
        ok = np.isfinite(xy[:, c])
        if not ok.any():
            raise ValueError("no frame has enough confident keypoints to place the crop")
        xy[:, c] = np.interp(t, t[ok], xy[ok, c])
        if sigma > 0 and len(xy) > 1:
            xy[:, c] = gaussian_filter1d(xy[:, c], sigma, mode="nearest")
    return xy


def body_centres(poses: np.ndarray) -> np.ndarray:
    """[T, 2] body box centres, NaN where a frame has no box."""
    out = np.full((len(poses), 2), np.nan)
    for i, p in enumerate(poses):
        b = body_box(p)
        if b is not None:
            out[i] = (b[:2] + b[2:]) / 2
    return out


def crop_side(poses: np.ndarray, *, margin: float = DEFAULT_MARGIN, quantile: float = DEFAULT_QUANTILE) -> float:
    """The session's crop side in camera pixels (see the module docstring); ValueError when no
    frame has enough confident keypoints."""
    extents = [max(b[2] - b[0], b[3] - b[1]) for b in map(body_box, poses) if b is not None]
    if not extents:
        raise ValueError("no frame has enough confident keypoints to size the crop")
    return float(margin * np.quantile(extents, quantile))


@dataclass(frozen=True)
class CropTrack:
    side: float  # crop side in camera pixels, one per session
    centres: np.ndarray  # [T, 2] crop centres in camera pixels
    out_size: int  # crop side in generator pixels

    @classmethod
    def fit(
        cls, poses: np.ndarray, out_size: int, *, side: float | None = None, sigma: float = DEFAULT_SIGMA
    ) -> CropTrack:
        """A track following `poses`; its side from them unless given (e.g. the training frames')."""
        poses = np.asarray(poses, np.float32)
        return cls(
            float(side if side is not None else crop_side(poses)),
            smooth_centres(body_centres(poses), sigma),
            int(out_size),
        )

    def follow(self, poses: np.ndarray, sigma: float = DEFAULT_SIGMA) -> CropTrack:
        """The same crop size following other poses (a reference dance normalized to the visitor)."""
        return CropTrack.fit(poses, self.out_size, side=self.side, sigma=sigma)

    def __len__(self) -> int:
        return len(self.centres)

    @property
    def scale(self) -> float:
        """Crop pixels per camera pixel."""
        return self.out_size / self.side

    def affine(self, t: int) -> np.ndarray:
        return crop_affine(self.centres[t], self.side, self.out_size)


def crop_affine(centre, side: float, out_size: int) -> np.ndarray:
    """2x3 affine from camera pixels to crop pixels: the square of `side` around `centre` onto
    [0, out_size]^2."""
    k = out_size / float(side)
    cx, cy = float(centre[0]), float(centre[1])
    return np.array([[k, 0.0, out_size / 2 - k * cx], [0.0, k, out_size / 2 - k * cy]])


def _for_cv2(a: np.ndarray) -> np.ndarray:
    """Our affine (pixel centres at +0.5) as cv2 expects it (pixel centres at integers)."""
    b = np.array(a, np.float64)
    b[:, 2] += a[:, :2].sum(axis=1) * 0.5 - 0.5
    return b


def _shrunk(image: np.ndarray, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """When the affine shrinks (k < 1), the image pre-shrunk with area averaging (warpAffine has
    no area filter: sampling alone would alias) and the affine from the smaller image."""
    k = float(a[0, 0])
    if k >= 1:
        return image, a
    h, w = image.shape[:2]
    sw, sh = max(1, round(w * k)), max(1, round(h * k))
    small = cv2.resize(image, (sw, sh), interpolation=cv2.INTER_AREA)
    up = np.array([[w / sw, 0.0, 0.0], [0.0, h / sh, 0.0], [0.0, 0.0, 1.0]])
    return small, a @ up


def crop_image(image: np.ndarray, a: np.ndarray, out_size: int, *, edge: bool = True) -> np.ndarray:
    """The out_size x out_size crop of an image (uint8 or float, [H, W] or [H, W, C]) under a;
    outside the image its edge pixels continue (edge) or it is 0."""
    src, b = _shrunk(np.ascontiguousarray(image), a)
    border = cv2.BORDER_REPLICATE if edge else cv2.BORDER_CONSTANT
    return cv2.warpAffine(src, _for_cv2(b), (out_size, out_size), flags=cv2.INTER_LINEAR, borderMode=border)


def pose_to_crop(pose: np.ndarray, a: np.ndarray) -> np.ndarray:
    """A [17, 3] pose in camera pixels -> crop pixels (scores kept)."""
    out = np.array(pose, np.float32, copy=True)
    out[..., :2] = out[..., :2] @ a[:, :2].T.astype(np.float32) + a[:, 2].astype(np.float32)
    return out


def uncrop(image: np.ndarray, a: np.ndarray, frame_size: tuple[int, int]) -> np.ndarray:
    """A crop-space image (square, float or uint8) back in camera pixels (frame_size = (W, H));
    0 outside the crop."""
    image = np.ascontiguousarray(image)
    a = np.asarray(a, np.float64)
    size = image.shape[1]
    if a[0, 0] > 1:  # the crop is finer than the frame: shrink it with area averaging first
        n = max(1, round(size / a[0, 0]))
        image = cv2.resize(image, (n, n), interpolation=cv2.INTER_AREA)
        a = a * (n / size)  # camera pixels -> pixels of the shrunk crop
    return cv2.warpAffine(
        image,
        _for_cv2(a),
        frame_size,
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )


def uncrop_rgba(
    rgb: np.ndarray, alpha: np.ndarray, a: np.ndarray, frame_size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """(rgb float32 [H, W, 3], alpha float32 [H, W] in 0..1) in camera pixels."""
    return uncrop(np.asarray(rgb, np.float32), a, frame_size), np.clip(
        uncrop(np.asarray(alpha, np.float32), a, frame_size), 0.0, 1.0
    )


def composite(plate: np.ndarray, rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """plate * (1 - alpha) + rgb * alpha as uint8, at the plate's size."""
    al = np.asarray(alpha, np.float32)[..., None]
    out = np.asarray(plate, np.float32) * (1.0 - al) + np.asarray(rgb, np.float32) * al
    return np.clip(np.round(out), 0, 255).astype(np.uint8)
