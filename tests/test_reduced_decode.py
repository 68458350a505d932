"""Decoding JPEG frames at reduced size (DCT scaling) for the pose stage loses no pose accuracy.

MoveNet sees 192 pixels across the frame (or across its tracking crop), so the pose stage decodes
a JPEG only that large (schemas.images.decode_rgb, Estimator.input_scale). These tests hold the
reduced decode to the full one on the shared photos and clips. Distances are relative to the
person's height (nose to ankles, from the full decode) and taken per frame as the median over the
keypoints both decodes are confident of, as in test_pose_clip.

Two things are measured, because MoveNet's int8 output moves in steps of about 0.8 input pixels
(0.5-1 % of the height of a person filling the frame): ANY change of the input, even re-encoding
the frame at JPEG quality 88 instead of 90, moves keypoints by about 1.3 % of the height. So:
- against the truth (the moving-photo clips, where every keypoint's true place is known): the
  reduced decode's error is within 1 % of the height of the full decode's (measured: +0.1 %);
- against the full decode (photos, clips, vtest.avi): the reduced decode moves keypoints no more
  than that imperceptible re-encode does, give or take 1 % of the height (measured: 1.4 % against
  1.3 %).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from processors.estimate import PoseStage
from schemas import Frame, frame_key
from schemas.images import ImageError, decode_bgr, decode_rgb, reduction_for
from vision.pose import load_estimator
from vision.pose.synthetic import apply_affine, moving_photo_clip

from helpers import video_frames

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
CONFIDENT = 0.3
TOLERANCE = 0.01  # of the person's height


def _frame(bgr: np.ndarray, quality: int = 90, encoding: str = "jpeg") -> Frame:
    ok, data = cv2.imencode(".jpg" if encoding == "jpeg" else ".png", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    h, w = bgr.shape[:2]
    return Frame(
        session="s", camera="c", seq=0, capture_ns=0, wall_time=0.0, width=w, height=h, encoding=encoding,
        image=data.tobytes(),
    )  # fmt: skip


def _scene(width: int, height: int) -> np.ndarray:
    rng = np.random.default_rng(5)
    bgr = cv2.resize(rng.integers(0, 255, (height // 16, width // 16, 3), dtype=np.uint8), (width, height))
    cv2.circle(bgr, (width // 3, height // 2), height // 4, (20, 200, 240), -1)
    return bgr


# --- the decode itself -------------------------------------------------------------------------
def test_reduced_decode_is_the_full_image_scaled_in_rgb():
    frame = _frame(_scene(645, 483))
    full = cv2.cvtColor(decode_bgr(frame), cv2.COLOR_BGR2RGB)
    same, r = decode_rgb(frame)
    assert r == 1 and np.array_equal(same, full)  # RGB straight from the decoder: no colour copy
    for reduce, shape in ((2, (242, 323, 3)), (4, (121, 162, 3)), (8, (61, 81, 3))):
        small, r = decode_rgb(frame, reduce)
        assert r == reduce and small.shape == shape  # libjpeg's sizes: ceil(side / reduce)
        assert small[shape[0] // 2, shape[1] // 3, 0] > 200  # the disc is orange in RGB, not in BGR
    even = _frame(_scene(640, 480))
    full = decode_rgb(even)[0]
    for reduce in (2, 4, 8):
        small = decode_rgb(even, reduce)[0]
        area = cv2.resize(full, (640 // reduce, 480 // reduce), interpolation=cv2.INTER_AREA)
        # The DCT-domain reduction is the same picture as an area-averaged full decode.
        assert np.abs(small.astype(int) - area).mean() < 1.5
    png = _frame(_scene(64, 48), encoding="png")
    whole, r = decode_rgb(png, 4)
    assert r == 1 and whole.shape == (48, 64, 3)  # PNG has no DCT: always decoded whole
    with pytest.raises(ValueError, match="reduce must be one of"):
        decode_rgb(frame, 3)
    with pytest.raises(ImageError, match="image is 645x483 but the frame says 640x480"):
        decode_rgb(frame.model_copy(update={"width": 640, "height": 480}), 2)
    with pytest.raises(ImageError, match="undecodable jpeg"):
        decode_rgb(frame.model_copy(update={"image": frame.image[:200]}), 2)


def test_reduction_keeps_at_least_the_resolution_asked_for():
    assert [reduction_for(s) for s in (1.0, 0.8, 0.5, 0.3, 0.25, 0.2, 0.125, 0.01)] == [1, 1, 2, 2, 4, 4, 8, 8]
    with pytest.raises(ValueError):
        reduction_for(0)


# --- MoveNet on the shared photos and clips ----------------------------------------------------
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared folder absent: {SHARED}")


def _photo(name: str) -> np.ndarray:
    return cv2.imread(str(SHARED / "data" / "images" / f"{name}.png"))


def _median_distance(reference: np.ndarray, keypoints: np.ndarray) -> float | None:
    """Median keypoint distance over the height of the reference person, None without a person."""
    confident = reference[:, 2] >= CONFIDENT
    if confident.sum() < 8:
        return None
    both = confident & (keypoints[:, 2] >= CONFIDENT)
    height = np.ptp(reference[confident, 1])
    return float(np.median(np.linalg.norm(reference[both, :2] - keypoints[both, :2], axis=1)) / height)


@needs_shared
@pytest.mark.parametrize("size", [(640, 480), (1280, 720)])
def test_reduced_decode_is_as_accurate_as_the_full_decode_on_the_moving_photo(size):
    photo = cv2.cvtColor(_photo("squat"), cv2.COLOR_BGR2RGB)
    clip = moving_photo_clip(photo, n_frames=60, size=size, seed=0)
    errors: dict[bool, list[float]] = {}
    reduced_frames = []
    for reduced in (False, True):
        estimator = load_estimator("movenet")
        estimator.estimate(photo, key="photo")
        truth = estimator.estimate(photo, key="photo")[0].keypoints  # the tracked estimate on the photo
        height = np.ptp(truth[:, 1])
        errors[reduced] = []
        stage = PoseStage(estimator, reduced_decode=reduced)
        for seq, (rgb, affine) in enumerate(clip):
            frame = _frame(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)).model_copy(update={"seq": seq})
            if reduced:
                reduced_frames.append(estimator.input_scale("s/c", *size) <= 0.5)
            pose = stage(frame_key("s", "c"), frame.encode())
            kp = pose.persons[0].array()
            expected = apply_affine(affine, truth[:, :2])
            scale = np.sqrt(abs(np.linalg.det(affine[:, :2])))
            both = (truth[:, 2] > CONFIDENT) & (kp[:, 2] > CONFIDENT)
            errors[reduced].append(np.median(np.linalg.norm(kp[both, :2] - expected[both], axis=1)) / scale / height)
    assert sum(reduced_frames) >= 12, "the test must exercise the reduced decode"
    full, small = np.array(errors[False]), np.array(errors[True])
    assert small.max() < 0.15  # no frame lost the person (test_pose_clip's per-frame bound)
    mask = np.array(reduced_frames)
    assert np.median(small[mask]) <= np.median(full[mask]) + TOLERANCE
    assert np.median(small) <= np.median(full) + TOLERANCE


def _agreement(frames: list[Frame]) -> tuple[list[float], list[float]]:
    """Per frame decoded reduced: (the distance from the full decode's keypoints, the distance a
    re-encode at JPEG quality 88 makes). Every estimator looks at the same crop (the full
    decode's tracking), so the comparison is of the decode alone."""
    full, small, floor = (load_estimator("movenet") for _ in range(3))
    moved, noise = [], []
    for frame in frames:
        small._crops = dict(full._crops)
        floor._crops = dict(full._crops)
        reduce = reduction_for(small.input_scale("k", frame.width, frame.height))
        reference = full.estimate(decode_rgb(frame)[0], "k")
        if reduce == 1:
            continue
        image, reduce = decode_rgb(frame, reduce)
        got = small.estimate_scaled(image, "k", 1 / reduce)
        requality = _frame(decode_bgr(frame), 88)
        other = floor.estimate(decode_rgb(requality)[0], "k")
        if reference and got and other:
            d = _median_distance(reference[0].keypoints, got[0].keypoints)
            n = _median_distance(reference[0].keypoints, other[0].keypoints)
            if d is not None and n is not None:
                moved.append(d)
                noise.append(n)
    return moved, noise


@needs_shared
def test_reduced_decode_agrees_with_the_full_decode_on_the_shared_photos_and_clips():
    squat = _photo("squat")
    sources = {
        # a photo held still for three frames: the first whole, the next two in the tracking crop
        "squat.png": [_frame(squat)] * 3,
        "two_people_walking.png": [_frame(_photo("two_people_walking"))] * 3,
        "squat clip": [
            _frame(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            for rgb, _ in moving_photo_clip(cv2.cvtColor(squat, cv2.COLOR_BGR2RGB), 60, (1280, 720), seed=3)
        ],
        "vtest.avi": video_frames(SHARED, "s", "c", 0, 300),
    }
    for name, frames in sources.items():
        moved, noise = _agreement(frames)
        assert moved, f"{name}: no frame was decoded reduced"
        assert np.median(moved) <= np.median(noise) + TOLERANCE, (
            f"{name}: the reduced decode moves keypoints {np.median(moved):.1%} of the height, a re-encode "
            f"{np.median(noise):.1%}"
        )
