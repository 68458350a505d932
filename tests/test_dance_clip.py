"""The demo's dancing clip (vision.dance_clip): a photo's person whose limbs move."""

from __future__ import annotations

import numpy as np

from schemas.keypoints import INDEX
from trainer.pix2pix.synthetic import PERSON_A, random_poses
from vision.dance_clip import dance_poses, dancing_person_clip


def test_the_dance_moves_the_limbs_not_just_the_body():
    pose = random_poses(1, (320, 240), seed=2)[0]
    poses = dance_poses(pose, 90, seed=1)
    wrist = poses[:, INDEX["left_wrist"], :2] - poses[:, INDEX["left_shoulder"], :2]
    forearm = np.linalg.norm(pose[INDEX["left_wrist"], :2] - pose[INDEX["left_shoulder"], :2])
    assert np.ptp(wrist, axis=0).max() > 0.8 * forearm  # the arm swings, relative to the shoulder
    upper = np.linalg.norm(poses[:, INDEX["left_elbow"], :2] - poses[:, INDEX["left_shoulder"], :2], axis=1)
    assert np.allclose(upper, upper[0], rtol=1e-4)  # bones keep their length
    assert np.allclose(poses[:, :, 2], pose[:, 2])  # scores kept
    steps = np.linalg.norm(np.diff(poses[:, :, :2], axis=0), axis=2).max()
    assert steps < 0.2 * forearm  # smooth from frame to frame


def test_a_photo_becomes_a_clip_of_its_person_dancing():
    size = (320, 240)
    pose = random_poses(1, size, seed=3)[0]
    photo, _plate, mask = PERSON_A.layers(pose, size, size)
    clip = dancing_person_clip(photo, mask, pose, n_frames=30, size=(256, 144), seed=1)
    assert len(clip) == 30 and all(f.shape == (144, 256, 3) and f.dtype == np.uint8 for f, _ in clip)
    frames = np.stack([f for f, _ in clip]).astype(np.float32)
    moving = np.abs(np.diff(frames, axis=0)).max(axis=3) > 30
    assert moving.any(axis=0).mean() > 0.02  # pixels change: the person moves
    # The person is drawn where the returned poses say: the shirt at the torso's centre.
    for frame, at in clip[::7]:
        centre = at[[INDEX["left_shoulder"], INDEX["right_hip"]], :2].mean(0)
        x, y = np.round(centre - 0.5).astype(int)
        assert np.abs(frame[y, x].astype(int) - PERSON_A.shirt).max() < 40, (frame[y, x], PERSON_A.shirt)


def test_keypoints_far_past_the_photo_are_unseen():
    size = (320, 240)
    pose = random_poses(1, size, seed=4)[0]
    photo, _plate, mask = PERSON_A.layers(pose, size, size)
    cut = pose.copy()
    cut[INDEX["left_ankle"], 1] = 400.0  # far below the photo's edge
    (_, first), *_ = dancing_person_clip(photo, mask, cut, n_frames=2, size=(256, 144), seed=1)
    assert first[INDEX["left_ankle"], 2] == 0 and first[INDEX["right_ankle"], 2] > 0
