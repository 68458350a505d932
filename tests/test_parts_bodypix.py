"""BodyPix on the CPU (decoder op cut off, decoded in numpy) against Coral's reference output."""

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from vision import models
from vision.parts import PART_ID, load_segmenter
from vision.parts.bodypix import BodyPixSegmenter, _from_decoder_op
from vision.parts.decode import instance_costs
from vision.pose import BackendUnavailable

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
MODELS = SHARED / "models"
REFERENCE = MODELS / "coral" / "bodypix_mobilenet_v1_075_512_512_16_quant_decoder_reference.csv"
IMAGE = SHARED / "data" / "images" / "two_people_walking.png"

# Tolerances against Coral's reference (its own decoder op on its CPU build of the model).
# Measured here: at most 2.0 px, 0.064 keypoint score, 0.01 pose score.
KEYPOINT_PX = 3.0
KEYPOINT_SCORE = 0.1
POSE_SCORE = 0.03

pytestmark = pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared folder absent: {SHARED}")


def load_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def reference(size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Coral's poses in image pixels [N, 17, 3] and pose scores [N].

    The CSV's keypoint_x / keypoint_y are fractions of the network input (512 x 512), which is
    the image stretched: times the image's width / height they are image pixels.
    """
    with open(REFERENCE) as f:
        rows = list(csv.DictReader(f))
    w, h = size
    kps = np.array(
        [[float(r["keypoint_x"]) * w, float(r["keypoint_y"]) * h, float(r["keypoint_score"])] for r in rows]
    ).reshape(-1, 17, 3)
    scores = np.array([float(rows[i * 17]["pose_score"]) for i in range(len(kps))])
    return kps, scores


@pytest.fixture(scope="module")
def segmenter(tmp_path_factory):
    return BodyPixSegmenter(MODELS, 1, device="cpu", cache_dir=tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def result(segmenter):
    return segmenter.segment(load_rgb(IMAGE))


def test_poses_match_corals_reference(result):
    expected, expected_scores = reference((640, 480))
    assert len(result.persons) == len(expected) == 2
    for person, want, want_score in zip(result.persons, expected, expected_scores):
        assert abs(person.score - want_score) < POSE_SCORE
        distance = np.hypot(*(person.keypoints[:, :2] - want[:, :2]).T)
        assert distance.max() < KEYPOINT_PX, distance
        assert np.abs(person.keypoints[:, 2] - want[:, 2]).max() < KEYPOINT_SCORE


def test_each_person_gets_their_own_body(result):
    assert result.part_ids.shape == result.person_ids.shape == (480, 640)
    part = result.part_ids > 0
    assert 0.05 < part.mean() < 0.3
    assert ((result.person_ids > 0) == part).all()  # two poses: every part pixel has an owner
    shares = np.bincount(result.person_ids[part], minlength=3)[1:] / part.sum()
    assert shares.min() > 0.3, shares
    for k, person in enumerate(result.persons):
        mine = result.person_ids == k + 1
        x0, y0 = person.keypoints[:, :2].min(axis=0)
        x1, y1 = person.keypoints[:, :2].max(axis=0)
        mx, my = 0.25 * (x1 - x0), 0.15 * (y1 - y0)  # arms, hair and feet reach past keypoints
        ys, xs = np.nonzero(mine)
        inside = (xs >= x0 - mx) & (xs <= x1 + mx) & (ys >= y0 - my) & (ys <= y1 + my)
        assert inside.mean() > 0.95, (k, inside.mean())
        # The face sits around the nose, the torso between shoulders and hips.
        parts = result.person_parts(k)
        face = np.isin(parts, [PART_ID["left_face"], PART_ID["right_face"]])
        fy, fx = np.nonzero(face)
        shoulders = abs(person.keypoints[5, 0] - person.keypoints[6, 0])
        nose_to_face = np.hypot(fx.mean() - person.keypoints[0, 0], fy.mean() - person.keypoints[0, 1])
        assert nose_to_face < 0.6 * shoulders  # the head's centre, not the nose tip
        assert fy.mean() < person.keypoints[[5, 6], 1].min()  # above the shoulders
        ty, tx = np.nonzero(parts == PART_ID["torso_front"])
        top, bottom = person.keypoints[[5, 6], 1].mean(), person.keypoints[[11, 12], 1].mean()
        assert top - 10 < ty.mean() < bottom + 10
        # Left parts (the person's left) lie towards the left keypoints.
        left = np.isin(parts, [PART_ID[n] for n in PART_ID if n.startswith("left_") and "face" not in n])
        right = np.isin(parts, [PART_ID[n] for n in PART_ID if n.startswith("right_") and "face" not in n])
        left_x = person.keypoints[[5, 7, 9, 11, 13, 15], 0].mean()
        right_x = person.keypoints[[6, 8, 10, 12, 14, 16], 0].mean()
        assert np.sign(np.nonzero(left)[1].mean() - np.nonzero(right)[1].mean()) == np.sign(left_x - right_x)


def test_single_person_mode_on_one_person(segmenter, tmp_path):
    image = load_rgb(IMAGE)[:, :312]  # the man alone
    single = BodyPixSegmenter(MODELS, 1, device="cpu", cache_dir=tmp_path, multi_person=False)
    result = single.segment(image)
    assert len(result.persons) == 1 and result.part_ids.shape == (480, 312)
    want = reference((640, 480))[0][0]
    confident = want[:, 2] > 0.5
    distance = np.hypot(*(result.persons[0].keypoints[confident, :2] - want[confident, :2]).T)
    assert np.median(distance) < 6, distance
    assert ((result.person_ids == 1) == (result.part_ids > 0)).all()


def test_decoder_op_outputs_give_the_same_people(segmenter, result):
    # What the Edge TPU path gets from Coral's op (poses in input pixels, 33 x 33 instance masks)
    # is assembled into the same maps as the numpy path.
    net = segmenter.net_outputs(load_rgb(IMAGE))
    from vision.parts.decode import decode_multiple_poses

    poses = decode_multiple_poses(net)
    n, slots = len(poses), 20
    yx = np.zeros((slots, 17, 2), np.float32)
    kp_scores = np.zeros((slots, 17), np.float32)
    pose_scores = np.zeros(slots, np.float32)
    masks = np.zeros((slots, 33, 33), np.float32)
    owner = instance_costs(net, poses).argmin(axis=2)
    for i, p in enumerate(poses):
        yx[i], kp_scores[i], pose_scores[i] = p.yx, p.scores, p.score
        masks[i] = owner == i
    got_poses, owner_scores = _from_decoder_op([yx, kp_scores, pose_scores, np.float32(n), masks])
    assert len(got_poses) == n and owner_scores.shape == (33, 33, n)
    via_op = segmenter._assemble(net.segments, net.part_heatmaps, got_poses, owner_scores, (640, 480))
    np.testing.assert_array_equal(via_op.part_ids, result.part_ids)
    part = result.part_ids > 0
    assert (via_op.person_ids[part] == result.person_ids[part]).mean() > 0.97
    for a, b in zip(via_op.persons, result.persons):
        np.testing.assert_allclose(a.keypoints, b.keypoints, atol=1e-3)


def test_device_choice_falls_back_to_the_cpu(tmp_path):
    def no_tpu():
        raise OSError("libedgetpu.so.1: cannot open shared object file")

    seg = BodyPixSegmenter(MODELS, 1, device="auto", cache_dir=tmp_path, delegate_loader=no_tpu)
    assert seg.device == "cpu" and seg.decoder == "numpy"
    assert seg.choice.model_path.parent == tmp_path  # the decoder-less twin, cached there
    with pytest.raises(BackendUnavailable, match="Edge TPU requested"):
        BodyPixSegmenter(MODELS, 1, device="edgetpu", cache_dir=tmp_path, delegate_loader=no_tpu)


def test_auto_falls_back_to_pose_derived_parts(tmp_path, monkeypatch):
    # A models folder with BlazePose but no BodyPix, and no development copy to fall back on.
    monkeypatch.setattr(models, "SHARED_MODELS", tmp_path / "nowhere")
    (tmp_path / "blazepose").symlink_to(MODELS / "blazepose")
    (tmp_path / "coral").mkdir()
    seg = load_segmenter("auto", tmp_path, device="cpu", cache_dir=tmp_path / "cache")
    assert seg.name == "pose"
    with pytest.raises(BackendUnavailable, match="model file not found.*bodypix_mobilenet"):
        load_segmenter("bodypix", tmp_path, device="cpu", cache_dir=tmp_path / "cache")
    with pytest.raises(ValueError, match="unknown part segmenter"):
        load_segmenter("densepose", tmp_path)


def test_bad_images_are_rejected(segmenter):
    with pytest.raises(ValueError, match="uint8"):
        segmenter.segment(np.zeros((64, 64, 3), np.float32))


def test_segment_command_writes_part_maps(tmp_path):
    from click.testing import CliRunner

    from tools.parts import parts

    result = CliRunner().invoke(
        parts, ["segment", str(IMAGE), "--out", str(tmp_path), "--backend", "bodypix", "--device", "cpu"]
    )
    assert result.exit_code == 0, result.output
    assert "2 person(s)" in result.output
    ids = cv2.imread(str(tmp_path / "two_people_walking.ids.png"), cv2.IMREAD_UNCHANGED)
    coloured = cv2.imread(str(tmp_path / "two_people_walking.parts.png"))
    assert ids.shape == (480, 640) and ids.max() <= 24 and (ids > 0).mean() > 0.05
    assert ((coloured.sum(axis=2) > 0) == (ids > 0)).all()
