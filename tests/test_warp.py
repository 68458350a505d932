"""The part warper (vision.warp): a person seen once, moved into other poses without training."""

from __future__ import annotations

import numpy as np
import pytest

from schemas.keypoints import INDEX
from trainer.pix2pix.evaluate import image_metrics
from trainer.pix2pix.synthetic import PERSON_A, TURNED, random_poses
from vision.crop import person_box
from vision.warp import (
    BACK_ORDER,
    FRONT_ORDER,
    LIMBS,
    PARTS,
    PartWarper,
    SourceView,
    draw_order,
    part_transforms,
    pose_distance,
    segment_parts,
    select_views,
)

SIZE = (320, 240)


def scene(pose: np.ndarray):
    """(frame, plate, exact person mask) of the synthetic person in `pose`."""
    return PERSON_A.layers(pose, SIZE, SIZE)


def apply(a: np.ndarray, xy: np.ndarray) -> np.ndarray:
    return xy @ a[:, :2].T + a[:, 2]


def similarity(pose: np.ndarray, angle: float, scale: float, shift) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    out = pose.copy()
    out[:, :2] = pose[:, :2] @ (scale * np.array([[c, -s], [s, c]])).T + shift
    return out


def test_a_pose_moved_as_a_whole_moves_every_part_alike():
    source = random_poses(1, SIZE, seed=1)[0]
    target = similarity(source, 0.3, 1.2, (15.0, -10.0))
    transforms = part_transforms(source, target)
    assert set(transforms) == set(PARTS)
    whole = np.array([[1.2 * np.cos(0.3), -1.2 * np.sin(0.3)], [1.2 * np.sin(0.3), 1.2 * np.cos(0.3)]])
    for name, a in transforms.items():
        assert np.allclose(a[:, :2], whole, atol=1e-6), name
        assert np.allclose(apply(a, source[:, :2]), target[:, :2], atol=1e-4), name


def test_each_limb_lands_on_its_target_bone():
    source, target = random_poses(2, SIZE, seed=4)
    transforms = part_transforms(source, target)
    for name, (a, b, _) in LIMBS.items():
        moved = apply(transforms[name], source[[a, b], :2])
        assert np.allclose(moved[0], target[a, :2], atol=1e-4), name  # hangs from its joint
        direction = (moved[1] - moved[0]) / np.linalg.norm(moved[1] - moved[0])
        want = (target[b, :2] - target[a, :2]) / np.linalg.norm(target[b, :2] - target[a, :2])
        assert direction @ want > 0.9999, name


def test_the_person_mask_is_split_into_parts_along_the_skeleton():
    pose = random_poses(1, SIZE, seed=2)[0]
    _frame, _plate, mask = scene(pose)
    labels = segment_parts(pose, mask)
    assert ((labels >= 0) == (mask > 0.5)).mean() > 0.99  # every person pixel has a part
    for k, name in enumerate(PARTS):
        assert (labels == k).sum() > 10, name
    wrist = np.round(pose[INDEX["left_wrist"], :2] - 0.5).astype(int)
    assert PARTS[labels[wrist[1], wrist[0]]] in ("left forearm", "left upper arm")
    hip_mid = np.round(pose[[INDEX["left_shoulder"], INDEX["right_hip"]], :2].mean(0) - 0.5).astype(int)
    assert PARTS[labels[hip_mid[1], hip_mid[0]]] == "torso"


def test_warped_person_matches_the_real_one_in_new_poses():
    poses = random_poses(7, SIZE, seed=3)
    frame, plate, mask = scene(poses[0])
    warper = PartWarper([SourceView.build(frame, mask, poses[0])])
    gains = []
    for pose in poses[1:]:
        real = scene(pose)[0]
        out, missing = warper.render(pose, plate)
        assert missing == []
        x0, y0, x1, y1 = person_box(pose, SIZE)
        warped_ssim, warped_psnr = image_metrics(real[y0:y1, x0:x1], out[y0:y1, x0:x1])
        plate_ssim, plate_psnr = image_metrics(real[y0:y1, x0:x1], plate[y0:y1, x0:x1])
        # Against the empty plate (the person left out) inside the person's box.
        assert warped_psnr > plate_psnr + 4 and warped_ssim > max(0.84, plate_ssim), (warped_psnr, plate_psnr)
        gains.append(warped_psnr - plate_psnr)
    assert np.mean(gains) > 6


def test_its_own_pose_gives_the_source_frame_back():
    pose = random_poses(1, SIZE, seed=6)[0]
    frame, plate, mask = scene(pose)
    out, _ = PartWarper([SourceView.build(frame, mask, pose)]).render(pose, plate)
    assert image_metrics(frame, out)[1] > 35


def test_a_visitor_never_seen_whole_gets_what_was_seen_and_the_rest_named():
    full = random_poses(2, SIZE, seed=8)
    frame, plate, mask = scene(full[0])
    upper = full[0].copy()
    legs = [INDEX[f"{s}_{j}"] for s in ("left", "right") for j in ("hip", "knee", "ankle")]
    upper[legs, 2] = 0.0  # the legs were never found: only the upper body is a source
    view = SourceView.build(frame, mask * (np.arange(SIZE[1]) < upper[5:7, 1].mean() + 40)[:, None], upper)
    assert "torso" in view.parts and not {"left thigh", "right shin"} & set(view.parts)
    out, missing = PartWarper([view]).render(full[1], plate)
    assert sorted(missing) == sorted(["left thigh", "left shin", "right thigh", "right shin"])
    assert out.shape == plate.shape and (out != plate).any()  # the upper body is drawn
    # Named before the dance is drawn: the parts it shows that no view has, none where it hides them.
    legless = full.copy()
    legless[:, legs, 2] = 0.0
    assert sorted(PartWarper([view]).missing_parts(full)) == sorted(missing)
    assert PartWarper([view]).missing_parts(legless) == []

    nobody = np.zeros_like(full[0])  # no keypoint at all: nothing to draw, nothing raised
    out, missing = PartWarper([SourceView.build(frame, mask, nobody)]).render(full[1], plate)
    assert (out == plate).all() and set(missing) == set(PARTS)


def test_the_arms_go_behind_the_body_when_it_faces_away():
    front = random_poses(1, SIZE, seed=9)[0]
    assert draw_order(front) == FRONT_ORDER
    assert draw_order(front[TURNED]) == BACK_ORDER


def test_the_best_views_are_whole_confident_and_apart():
    poses = random_poses(30, SIZE, seed=10)
    areas = np.full(30, 1000.0)
    poses[:, :, 2] = 0.6
    poses[12, :, 2] = 0.95  # most confident ...
    poses[13, :, 2] = 0.95  # ... and its neighbour
    poses[20, :, 2] = 0.95
    areas[20] = 300.0  # but hidden in part
    poses[5, :, 2] = 0.9
    chosen = select_views(poses, areas, SIZE, k=2, spacing=5)
    assert chosen[0] in (12, 13) and 20 not in chosen and len(chosen) == 2
    assert abs(chosen[0] - chosen[1]) >= 5
    poses[25] = poses[25][TURNED]  # the visitor turned round once: that back view is kept
    poses[25, :, 2] = 0.5
    assert 25 in select_views(poses, areas, SIZE, k=2, spacing=5)
    assert select_views(np.zeros((4, 17, 3)), np.ones(4), SIZE) == []


def test_bad_shapes_are_named():
    pose = random_poses(1, SIZE, seed=1)[0]
    with pytest.raises(ValueError, match="pose must be"):
        part_transforms(pose[:10], pose)
    frame, _plate, mask = scene(pose)
    with pytest.raises(ValueError, match="mask"):
        SourceView.build(frame, mask[:10], pose)
    with pytest.raises(ValueError, match="at least one source view"):
        PartWarper([])


def test_pose_distance_ignores_where_and_how_large():
    a, b = random_poses(2, SIZE, seed=12)
    assert pose_distance(a, similarity(a, 0.0, 1.7, (30.0, 5.0))) < 1e-6
    assert pose_distance(a, b) > 0.05
    nobody = a.copy()
    nobody[:, 2] = 0
    assert pose_distance(a, nobody) == float("inf")
