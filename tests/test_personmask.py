"""Person masks from a pose: BlazePose where the pose points, or a silhouette drawn from it."""

import cv2
import numpy as np
import pytest

from vision.personmask import PersonMasker, silhouette
from vision.pose.blazepose import Roi


def test_the_silhouette_covers_the_body_and_nothing_far_from_it():
    from trainer.pix2pix.synthetic import PERSON_A, random_poses

    pose = random_poses(1, (160, 120), seed=2)[0]
    mask = silhouette(pose, (160, 120))
    _frame, _plate, truth = PERSON_A.layers(pose, (160, 120), (160, 120))
    inter, union = ((mask > 0) & (truth > 0)).sum(), ((mask > 0) | (truth > 0)).sum()
    assert inter / union > 0.5
    assert silhouette(np.zeros((17, 3), np.float32), (160, 120)).sum() == 0


def test_blazepose_masks_the_person_a_movenet_pose_points_at(shared_dir):
    from vision.pose import load_estimator

    image = cv2.cvtColor(cv2.imread(str(shared_dir / "data/images/squat.png")), cv2.COLOR_BGR2RGB)
    pose = load_estimator("movenet", shared_dir / "models").estimate(image)[0].keypoints
    roi = Roi.from_keypoints(pose)
    assert roi is not None and roi.size > 0.5 * max(image.shape[:2])
    masker = PersonMasker("blazepose", shared_dir / "models")
    mask = masker.mask(image, pose)
    assert masker.name == "blazepose" and masker.fallbacks == 0 and mask.shape == image.shape[:2]
    person = mask > 0.5
    # Most keypoints lie on the mask, which is a person-sized share of the photo and agrees with the silhouette.
    ok = pose[:, 2] > 0.3
    on = person[
        pose[ok, 1].astype(int).clip(0, image.shape[0] - 1), pose[ok, 0].astype(int).clip(0, image.shape[1] - 1)
    ]
    assert on.mean() > 0.8
    assert 0.05 < person.mean() < 0.4
    sil = silhouette(pose, (image.shape[1], image.shape[0])) > 0
    assert (person & sil).sum() / (person | sil).sum() > 0.5


def test_a_missing_model_falls_back_to_the_silhouette_with_the_reason(tmp_path, monkeypatch):
    from vision import models
    from vision.pose import BackendUnavailable

    monkeypatch.setattr(models, "SHARED_MODELS", tmp_path / "nowhere")  # no development copy either
    masker = PersonMasker("auto", tmp_path)  # an empty models folder
    assert masker.name == "silhouette" and "BlazePose is unavailable" in masker.why
    assert "pose_landmark_lite.tflite" in masker.why and "booth models --install" in masker.why
    with pytest.raises(BackendUnavailable, match="pose_detection.tflite"):
        PersonMasker("blazepose", tmp_path)
    with pytest.raises(ValueError, match="unknown person mask source"):
        PersonMasker("bodypix")


def test_without_the_lite_landmark_model_masks_come_from_the_full_one(shared_dir, tmp_path, monkeypatch):
    """The lite model ships only in the npm package: a machine without npm still gets masks."""
    from vision import models

    monkeypatch.setattr(models, "SHARED_MODELS", tmp_path / "nowhere")
    for name in models.NEEDS["blazepose"]:  # detector and full landmark model: the wheel's files
        target = models.model_path(tmp_path / "models", name)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(models.model_path(shared_dir / "models", name))
    masker = PersonMasker("auto", tmp_path / "models")
    assert masker.name == "blazepose", masker.why
    image = cv2.cvtColor(cv2.imread(str(shared_dir / "data/images/squat.png")), cv2.COLOR_BGR2RGB)
    pose = masker._blazepose.estimate(image)[0].keypoints
    assert masker.mask(image, pose).mean() > 0.05  # a person-sized mask, not an empty one
