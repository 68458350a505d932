"""Person-centred crops: size fixed per session, a centre that follows the body, and the way back."""

import numpy as np
import pytest

from trainer.pix2pix.synthetic import random_poses
from vision.crop import (
    CropTrack,
    body_box,
    composite,
    crop_affine,
    crop_image,
    crop_side,
    person_box,
    pose_to_crop,
    uncrop,
    uncrop_rgba,
)


def _walk(n=30, size=(640, 360)):
    """A figure walking left to right, growing as it comes nearer."""
    base = random_poses(1, (200, 200), seed=4)[0]
    poses = []
    for t in range(n):
        p = base.copy()
        k = 0.8 + 0.4 * t / n
        p[:, :2] = p[:, :2] * k + [100 + 12 * t, 60]
        poses.append(p)
    return np.stack(poses)


def test_one_side_per_session_and_a_centre_that_follows_the_body():
    poses = _walk()
    track = CropTrack.fit(poses, 64)
    boxes = [body_box(p) for p in poses]
    extents = [max(b[2] - b[0], b[3] - b[1]) for b in boxes]
    assert max(extents) * 1.0 < track.side < max(extents) * 1.3  # the 90% quantile plus a margin
    centres = np.array([(b[:2] + b[2:]) / 2 for b in boxes])
    assert np.abs(track.centres - centres)[2:-2].max() < 3.0  # smoothed, yet on the body
    # Every keypoint lands inside the crop, the body roughly centred.
    for t, p in enumerate(poses):
        q = pose_to_crop(p, track.affine(t))
        assert (q[:, :2] > 0).all() and (q[:, :2] < 64).all()
    # Following other poses keeps the session's side.
    assert track.follow(poses[::-1]).side == track.side


def test_gaps_are_bridged_and_a_pose_less_session_is_refused():
    poses = _walk(10)
    poses[4:7, :, 2] = 0.0  # nobody seen for three frames
    track = CropTrack.fit(poses, 32)
    assert np.isfinite(track.centres).all()
    assert track.centres[3, 0] < track.centres[5, 0] < track.centres[7, 0]
    with pytest.raises(ValueError, match="enough confident keypoints"):
        crop_side(np.zeros((5, 17, 3), np.float32))


def test_crop_and_uncrop_are_inverse_and_composite_puts_the_person_on_the_plate():
    rng = np.random.default_rng(0)
    frame = np.kron(rng.integers(0, 256, (18, 32, 3), dtype=np.uint8), np.ones((20, 20, 1), np.uint8))
    for side, out in ((150, 256), (400, 128), (64, 64)):  # enlarged, shrunk, one to one
        a = crop_affine((300, 170), side, out)
        back = uncrop(crop_image(frame, a, out), a, (640, 360))
        inside = uncrop(np.ones((out, out), np.float32), a, (640, 360)) > 0.999
        assert abs(inside.sum() - min(side, 360) * side) < 4 * side
        assert np.abs(back[inside].astype(float) - frame[inside]).mean() < (16 if side > out else 4)
    plate = np.zeros((360, 640, 3), np.uint8)
    a = crop_affine((100, 100), 50, 50)
    rgb, alpha = uncrop_rgba(np.full((50, 50, 3), 200.0), np.ones((50, 50)), a, (640, 360))
    out = composite(plate, rgb, alpha)
    assert out.shape == (360, 640, 3) and out[100, 100, 0] == 200 and out[10, 600, 0] == 0
    assert out[76:124, 76:124].min() == 200


def test_person_box_is_clipped_to_the_frame():
    pose = _walk(1)[0]
    x0, y0, x1, y1 = person_box(pose, (640, 360))
    b = body_box(pose)
    assert x0 <= b[0] and y0 <= max(0, b[1]) and x1 >= b[2] and 0 <= x0 < x1 <= 640 and 0 <= y0 < y1 <= 360
    assert person_box(np.zeros((17, 3), np.float32), (640, 360)) is None
