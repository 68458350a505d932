"""The numpy BodyPix/PoseNet decoder on synthetic network outputs with a known answer."""

import numpy as np
import pytest

from vision.parts import decode
from vision.parts.decode import POSE_TREE, NetOutputs

STRIDE = 16
GRID = 33
# An upright person, (y, x) in blocks relative to a reference point; the person's left at +x.
TEMPLATE = np.array(
    [
        (2.0, 0.0),
        (1.6, 0.4),
        (1.6, -0.4),
        (1.8, 0.9),
        (1.8, -0.9),
        (4.0, 1.6),
        (4.0, -1.6),
        (7.0, 2.0),
        (7.0, -2.0),
        (10.0, 2.2),
        (10.0, -2.2),
        (11.0, 1.0),
        (11.0, -1.0),
        (16.0, 1.1),
        (16.0, -1.1),
        (21.0, 1.2),
        (21.0, -1.2),
    ]
)


def person_at(y: float, x: float) -> np.ndarray:
    return TEMPLATE + (y, x)


def synthetic_outputs(people: list[np.ndarray]) -> NetOutputs:
    """Network outputs consistent with the given people ([17, 2] (y, x) in blocks each)."""
    kp = np.stack(people)  # [P, 17, 2]
    gy, gx = np.mgrid[0:GRID, 0:GRID].astype(np.float64)
    block = np.stack([gy, gx], axis=-1)[:, :, None, None, :]  # [h, w, 1, 1, 2]
    diff = kp[None, None] - block  # [h, w, P, 17, 2]: from each block to each keypoint
    d2 = (diff**2).sum(-1)  # [h, w, P, 17]
    heat = (4.0 - d2 / (2 * 0.8**2)).max(axis=2)
    near = d2.argmin(axis=2)  # per block and keypoint: the nearest person
    pick = np.take_along_axis(diff, near[:, :, None, :, None], axis=2)[:, :, 0]  # [h, w, 17, 2]
    short = np.concatenate([pick[..., 0], pick[..., 1]], axis=-1) * STRIDE
    mid = np.zeros((GRID, GRID, 4 * len(POSE_TREE)))
    for e, (a, b) in enumerate(POSE_TREE):
        for src, dst, yc, xc in ((a, b, e, 16 + e), (b, a, 32 + e, 48 + e)):
            p = near[:, :, src]  # the person whose source keypoint is nearest
            target = kp[p, dst]  # [h, w, 2]
            mid[..., yc] = (target[..., 0] - gy) * STRIDE
            mid[..., xc] = (target[..., 1] - gx) * STRIDE
    owner = d2.min(axis=3).argmin(axis=2)  # the person with the nearest keypoint
    own = kp[owner]  # [h, w, 17, 2]
    long = np.concatenate([own[..., 0] - gy[..., None], own[..., 1] - gx[..., None]], axis=-1) * STRIDE
    return NetOutputs(
        heat.astype(np.float32),
        short.astype(np.float32),
        mid.astype(np.float32),
        long.astype(np.float32),
        np.zeros((GRID, GRID), np.float32),
        np.zeros((GRID, GRID, 24), np.float32),
        STRIDE,
        (512, 512),
    )


def test_two_people_are_decoded_exactly():
    a, b = person_at(3.0, 9.0), person_at(6.5, 23.3)
    poses = decode.decode_multiple_poses(synthetic_outputs([a, b]), score_threshold=0.2, nms_radius=10)
    assert len(poses) == 2
    found = sorted((p.yx for p in poses), key=lambda yx: yx[0, 1])
    for got, want in zip(found, (a, b)):
        np.testing.assert_allclose(got, want * STRIDE, atol=0.05)
    for p in poses:
        assert p.scores.min() > 0.9 and 0.9 < p.score <= 1.0


def test_max_detections_and_threshold_limit_the_poses():
    out = synthetic_outputs([person_at(3.0, 9.0), person_at(6.5, 23.3)])
    assert len(decode.decode_multiple_poses(out, max_detections=1)) == 1
    assert decode.decode_multiple_poses(out, score_threshold=0.999) == []
    with pytest.raises(ValueError, match="max_detections"):
        decode.decode_multiple_poses(out, max_detections=0)


def test_single_pose_takes_each_heatmap_maximum():
    person = person_at(4.2, 15.7)
    pose = decode.decode_single_pose(synthetic_outputs([person]))
    np.testing.assert_allclose(pose.yx, person * STRIDE, atol=1e-3)


def test_instance_costs_give_every_block_to_its_own_person():
    a, b = person_at(3.0, 9.0), person_at(6.5, 23.3)
    out = synthetic_outputs([a, b])
    poses = decode.decode_multiple_poses(out)
    costs = decode.instance_costs(out, poses)
    assert costs.shape == (GRID, GRID, 2)
    # Long offsets point every block at its owner's keypoints, so its cost there is ~0.
    kp = np.stack([p.yx / STRIDE for p in poses])
    gy, gx = np.mgrid[0:GRID, 0:GRID]
    d2 = ((kp[None, None] - np.stack([gy, gx], -1)[:, :, None, None]) ** 2).sum(-1)
    owner = d2.min(axis=3).argmin(axis=2)
    assert (costs.argmin(axis=2) == owner).all()
    assert np.take_along_axis(costs, owner[..., None], 2).max() < 1.0


def test_dequantize_uses_scale_and_zero_point():
    q = np.array([0, 128, 255], np.uint8)
    np.testing.assert_allclose(decode.dequantize(q, (0.5, 128)), [-64.0, 0.0, 63.5])
    f = np.array([1.5], np.float32)
    np.testing.assert_array_equal(decode.dequantize(f, (0.0, 0)), f)  # float outputs pass through
    with pytest.raises(ValueError, match="scale"):
        decode.dequantize(q, (0.0, 0))


def test_outputs_of_the_wrong_shape_are_named():
    good = synthetic_outputs([person_at(3.0, 9.0)])
    with pytest.raises(ValueError, match="mid_offsets must have shape"):
        NetOutputs(
            good.heatmaps,
            good.short_offsets,
            good.mid_offsets[..., :32],
            good.long_offsets,
            good.segments,
            good.part_heatmaps,
            STRIDE,
            (512, 512),
        )


def test_block_to_image_maps_block_centres_to_input_pixels():
    # A field equal to its block x coordinate, resampled: image pixel u sits at block
    # (u + 0.5) * in_w / (w * stride). cv2 places samples to 1/32 of a block (half an input pixel).
    field = np.tile(np.arange(GRID, dtype=np.float32), (GRID, 1))
    many = np.repeat(field[..., None], 6, axis=2)  # more channels than one cv2 call takes
    up = decode.block_to_image(many, STRIDE, (512, 512), (640, 480))
    assert up.shape == (480, 640, 6)
    u = np.arange(640)
    np.testing.assert_allclose(
        up[100, :, 5], np.clip((u + 0.5) * 512 / (640 * STRIDE), 0, GRID - 1), atol=1 / 32 + 1e-4
    )
    part = decode.block_to_image(many, STRIDE, (512, 512), (640, 480), region=(100, 50, 300, 120))
    np.testing.assert_array_equal(part, up[50:120, 100:300])
