"""How good is a trained generator: reconstruction quality and pose consistency.

* SSIM and PSNR (scikit-image) between held-out target frames and the generator's frames for
  their pose maps.
* On frames at the camera's resolution (`video_quality`): SSIM/PSNR over the whole frame and
  inside the person's box (body_box of the real frame's pose, grown by 10% of its height, clipped
  to the frame: where the generator's work is, whatever the backdrop's share of the picture), and
  flicker: the mean frame-to-frame change of the generated video inside the person's box over
  the real video's (1 = as lively as the real one; well above 1 = flicker; below 1 = too still,
  e.g. a blurred average person). Motion error (`motion_error`), measured in the same boxes, is
  the change the real video does not have: flicker alone cannot tell shimmer from motion (a
  blurred video that shimmers can change as much from frame to frame as the real one).
* Pose consistency: estimate the pose on each generated frame with any `estimate(image) ->
  [17, 3]` callable and measure how far the keypoints land from the pose that was rendered,
  normalized by the body's size (the diagonal of the input pose's bounding box), over keypoints
  confident in both. 0.05 means keypoints are off by 5% of the body's extent on average.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from schemas.keypoints import NUM_KEYPOINTS
from trainer.pix2pix.data import PairSource
from trainer.pix2pix.inference import generate
from vision.crop import person_box
from vision.posemap import Letterbox, render_pose_map

PoseEstimator = Callable[[np.ndarray], np.ndarray]
MAX_PSNR = 100.0


def image_metrics(real: np.ndarray, fake: np.ndarray) -> tuple[float, float]:
    """(SSIM, PSNR in dB) of two uint8 RGB images of one shape (at least 3 pixels a side)."""
    if real.shape != fake.shape or real.dtype != np.uint8 or fake.dtype != np.uint8:
        raise ValueError(
            f"need two uint8 images of one shape, got {real.dtype} {real.shape} and {fake.dtype} {fake.shape}"
        )
    win = min(7, (min(real.shape[:2]) - 1) // 2 * 2 + 1)  # SSIM's window must fit a small box
    if win < 3:
        raise ValueError(f"images of {real.shape[1]}x{real.shape[0]} are too small for SSIM")
    ssim = structural_similarity(real, fake, channel_axis=2, data_range=255, win_size=win)
    if np.array_equal(real, fake):
        return float(ssim), MAX_PSNR  # PSNR is infinite; a finite cap keeps means usable
    psnr = peak_signal_noise_ratio(real, fake, data_range=255)
    return float(ssim), float(min(psnr, MAX_PSNR))


def reconstruction_metrics(generator, pairs: PairSource, batch_size: int = 8) -> dict[str, float]:
    """Mean SSIM and PSNR over (pose map, real frame) pairs: {"ssim", "psnr", "n"}."""
    n = len(pairs)
    if n == 0:
        raise ValueError("no pairs to evaluate")
    maps = np.stack([np.asarray(pairs[i][0]) for i in range(n)])
    reals = np.stack([np.asarray(pairs[i][1]) for i in range(n)])
    fakes = generate(generator, maps, batch_size=batch_size)
    scores = np.array([image_metrics(r, f) for r, f in zip(reals, fakes)])
    return {"ssim": float(scores[:, 0].mean()), "psnr": float(scores[:, 1].mean()), "n": n}


def body_size(pose: np.ndarray, score_threshold: float) -> float:
    """Diagonal of the bounding box of the confident keypoints (0 if fewer than two)."""
    ok = pose[:, 2] >= score_threshold
    if ok.sum() < 2:
        return 0.0
    xy = pose[ok, :2]
    return float(np.hypot(*(xy.max(0) - xy.min(0))))


def keypoint_error(reference: np.ndarray, estimated: np.ndarray, score_threshold: float) -> np.ndarray:
    """Per keypoint distance / body size, NaN where either pose is not confident."""
    ref, est = np.asarray(reference, np.float32), np.asarray(estimated, np.float32)
    if ref.shape != (NUM_KEYPOINTS, 3) or est.shape != (NUM_KEYPOINTS, 3):
        raise ValueError(f"poses must be ({NUM_KEYPOINTS}, 3), got {ref.shape} and {est.shape}")
    size = body_size(ref, score_threshold)
    ok = (ref[:, 2] >= score_threshold) & (est[:, 2] >= score_threshold)
    err = np.full(NUM_KEYPOINTS, np.nan, np.float32)
    if size > 0:
        err[ok] = np.linalg.norm(est[ok, :2] - ref[ok, :2], axis=1) / size
    return err


def pose_consistency(
    generator,
    poses: np.ndarray,
    src_size: int | tuple[int, int],
    estimate: PoseEstimator,
    *,
    score_threshold: float = 0.3,
    batch_size: int = 8,
) -> dict:
    """Render each pose [T, 17, 3] (in pixels of a src_size image) to a pose map, generate a frame,
    estimate its pose and compare, in the generated frame's pixels.

    Returns {"mean_error", "per_keypoint" [17] (NaN = never compared), "frames" (frames with at
    least one comparison), "keypoints" (comparisons)}.
    """
    poses = np.asarray(poses, np.float32)
    if poses.ndim != 3 or poses.shape[1:] != (NUM_KEYPOINTS, 3):
        raise ValueError(f"poses must be (T, {NUM_KEYPOINTS}, 3), got {poses.shape}")
    size = generator.size
    box = Letterbox.fit(src_size, size)
    maps = np.stack([render_pose_map(p, src_size, size) for p in poses])
    frames = generate(generator, maps, batch_size=batch_size)
    errors = np.stack(
        [keypoint_error(box.pose_to_output(p), estimate(f), score_threshold) for p, f in zip(poses, frames)]
    )
    seen = np.isfinite(errors)
    if not seen.any():
        return {"mean_error": float("nan"), "per_keypoint": np.full(NUM_KEYPOINTS, np.nan), "frames": 0, "keypoints": 0}
    with np.errstate(invalid="ignore"):
        per_kp = np.where(seen.any(0), np.nansum(errors, 0) / np.maximum(seen.sum(0), 1), np.nan)
    return {
        "mean_error": float(np.nanmean(errors)),
        "per_keypoint": per_kp,
        "frames": int(seen.any(1).sum()),
        "keypoints": int(seen.sum()),
    }


def _pair_boxes(boxes: list, n: int):
    """(t, (x0, y0, x1, y1)) for each pair of consecutive frames t, t + 1 (of n) that both have a
    person box: the union of the two boxes, where a frame-to-frame change is measured."""
    for t in range(n - 1):
        b0, b1 = boxes[t], boxes[t + 1]
        if b0 is not None and b1 is not None:
            yield t, (min(b0[0], b1[0]), min(b0[1], b1[1]), max(b0[2], b1[2]), max(b0[3], b1[3]))


def flicker(reals: np.ndarray, fakes: np.ndarray, boxes: list) -> float:
    """Mean |fake[t+1] - fake[t]| over mean |real[t+1] - real[t]|, each inside the union of the two
    frames' person boxes (None boxes skip the pair); NaN with fewer than two frames."""
    num = den = 0.0
    pairs = 0
    for t, (x0, y0, x1, y1) in _pair_boxes(boxes, len(reals)):
        g = np.abs(fakes[t + 1, y0:y1, x0:x1].astype(np.float32) - fakes[t, y0:y1, x0:x1])
        r = np.abs(reals[t + 1, y0:y1, x0:x1].astype(np.float32) - reals[t, y0:y1, x0:x1])
        num, den, pairs = num + float(g.mean()), den + float(r.mean()), pairs + 1
    return num / den if pairs and den > 0 else float("nan")


def motion_error(reals: np.ndarray, fakes: np.ndarray, boxes: list) -> float:
    """Mean |(fake[t+1] - fake[t]) - (real[t+1] - real[t])| over mean |real[t+1] - real[t]|, each
    inside the union of the two frames' person boxes (None boxes skip the pair): the generated
    video's change from frame to frame that the real video does not have (shimmer, wobble, lag),
    relative to the real change; NaN with fewer than two boxed frames."""
    num = den = 0.0
    for t, (x0, y0, x1, y1) in _pair_boxes(boxes, len(reals)):
        r = reals[t + 1, y0:y1, x0:x1].astype(np.float32) - reals[t, y0:y1, x0:x1]
        g = fakes[t + 1, y0:y1, x0:x1].astype(np.float32) - fakes[t, y0:y1, x0:x1]
        num, den = num + float(np.abs(g - r).mean()), den + float(np.abs(r).mean())
    return num / den if den > 0 else float("nan")


def frame_quality(reals: np.ndarray, fakes: np.ndarray, boxes: list) -> dict[str, float]:
    """Whole-frame and person-box SSIM/PSNR (means over frames) of generated frames against the
    real ones, all uint8 [T, H, W, 3] at the camera's resolution; boxes: the real frames' person
    boxes (vision.crop.person_box). Frames without a box count in the whole-frame figures only."""
    reals, fakes = _video_pair(reals, fakes)
    whole = np.array([image_metrics(r, f) for r, f in zip(reals, fakes)])
    inbox = [
        image_metrics(r[b[1] : b[3], b[0] : b[2]], f[b[1] : b[3], b[0] : b[2]])
        for r, f, b in zip(reals, fakes, boxes)
        if b is not None and min(b[2] - b[0], b[3] - b[1]) >= 3
    ]
    box = np.array(inbox) if inbox else np.full((1, 2), np.nan)
    return {
        "ssim": float(whole[:, 0].mean()),
        "psnr": float(whole[:, 1].mean()),
        "box_ssim": float(box[:, 0].mean()),
        "box_psnr": float(box[:, 1].mean()),
        "frames": len(reals),
        "box_frames": len(inbox),
    }


def frame_boxes(frames: np.ndarray, poses: np.ndarray) -> list:
    """The person's box (vision.crop.person_box) of each pose [T, 17, 3] in its frame [T, H, W, 3]:
    where every figure of this module looks for the person."""
    h, w = np.shape(frames)[1:3]
    return [person_box(p, (w, h)) for p in poses]


def video_quality(
    reals: np.ndarray, fakes: np.ndarray, poses: np.ndarray, boxes: list | None = None
) -> dict[str, float]:
    """frame_quality and flicker of generated frames against the real ones; poses [T, 17, 3] are
    the real frames' (they place the person boxes, frame_boxes; `boxes`: those boxes where the
    caller has them already)."""
    reals, fakes = _video_pair(reals, fakes)
    boxes = boxes if boxes is not None else frame_boxes(reals, poses)
    return {**frame_quality(reals, fakes, boxes), "flicker": flicker(reals, fakes, boxes)}


def _video_pair(reals: np.ndarray, fakes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    reals, fakes = np.asarray(reals), np.asarray(fakes)
    if reals.shape != fakes.shape or reals.ndim != 4 or len(reals) == 0:
        raise ValueError(
            f"need real and generated frames [T, H, W, 3] of one shape, got {reals.shape} and {fakes.shape}"
        )
    return reals, fakes


def frames_pose_error(
    fakes: np.ndarray, poses: np.ndarray, estimate: PoseEstimator, *, score_threshold: float = 0.3
) -> float:
    """Mean normalized keypoint error (keypoint_error) of the poses estimated on generated frames
    against the poses they were generated for, both in the frames' pixels; NaN if nothing compared."""
    errors = np.stack([keypoint_error(p, estimate(f), score_threshold) for p, f in zip(poses, fakes)])
    return float(np.nanmean(errors)) if np.isfinite(errors).any() else float("nan")
