"""PoseNet needs the PosenetDecoderOp custom op: a clear error where it is missing."""

import csv
from pathlib import Path

import numpy as np
import pytest

from vision.pose import BackendUnavailable, load_estimator
from vision.pose.posenet import decode_outputs

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
MODELS = SHARED / "models"
REFERENCE = MODELS / "coral" / "posenet_mobilenet_v1_075_481_641_16_quant_decoder_reference.csv"

needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared folder absent: {SHARED}")


@needs_shared
def test_missing_decoder_library_is_reported(tmp_path):
    with pytest.raises(BackendUnavailable, match="PosenetDecoderOp custom op not available") as e:
        load_estimator("posenet", MODELS, decoder_lib=str(tmp_path / "posenet_decoder.so"))
    assert "posenet_decoder.so" in str(e.value)


@needs_shared
def test_runtime_without_the_op_is_reported():
    # No plugin at all: the plain runtime fails to prepare the graph's last node.
    with pytest.raises(BackendUnavailable, match="PosenetDecoderOp custom op not available") as e:
        load_estimator("posenet", MODELS, decoder_lib="", device="cpu")
    assert "unresolved custom op" in str(e.value)


def test_bad_resolution_is_rejected():
    with pytest.raises(ValueError, match="resolution"):
        load_estimator("posenet", MODELS, resolution="224_224")


@needs_shared
def test_decoder_outputs_map_to_image_pixels():
    # Build decoder outputs the way the op reports them (y, x in model-input pixels) from Coral's
    # reference, whose coordinates are fractions of the input; decoding must give the same
    # fractions of the image.
    with open(REFERENCE) as f:
        rows = list(csv.DictReader(f))
    n = len(rows) // 17
    frac = np.array([[float(r["keypoint_x"]), float(r["keypoint_y"])] for r in rows]).reshape(n, 17, 2)
    kp_scores = np.array([float(r["keypoint_score"]) for r in rows], np.float32).reshape(1, n, 17)
    pose_scores = np.array([float(rows[i * 17]["pose_score"]) for i in range(n)], np.float32)[None]
    in_w, in_h = 641, 481
    yx = np.stack([frac[..., 1] * in_h, frac[..., 0] * in_w], axis=-1)[None].astype(np.float32)
    people = decode_outputs(
        yx, kp_scores, pose_scores, np.array([n], np.float32), (in_w, in_h), (640, 480), min_pose_score=0.2
    )
    assert [p.score for p in people] == sorted(pose_scores[0].tolist(), reverse=True)
    for person, expected in zip(people, frac):
        np.testing.assert_allclose(person.keypoints[:, :2] / [640, 480], expected, atol=1e-5)
    assert (
        decode_outputs(
            yx, kp_scores, pose_scores, np.array([n], np.float32), (in_w, in_h), (640, 480), min_pose_score=0.8
        )[0].score
        > 0.8
    )
    assert (
        len(
            decode_outputs(
                yx, kp_scores, pose_scores, np.array([n], np.float32), (in_w, in_h), (640, 480), min_pose_score=0.8
            )
        )
        == 1
    )
