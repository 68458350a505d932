"""PoseNet multi-person: Coral's decoder op where its plugin loads, else the same decoding in numpy."""

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from vision.pose import BackendUnavailable, load_estimator
from vision.pose.posenet import decode_outputs

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
MODELS = SHARED / "models"
REFERENCE = MODELS / "coral" / "posenet_mobilenet_v1_075_481_641_16_quant_decoder_reference.csv"

needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared folder absent: {SHARED}")


IMAGE = SHARED / "data" / "images" / "two_people_walking.png"
# Tolerances against Coral's reference (its decoder op on its CPU build of the model).
# Measured here: at most 1.9 px, 0.045 keypoint score, 0.003 pose score.
KEYPOINT_PX = 3.0
KEYPOINT_SCORE = 0.1
POSE_SCORE = 0.03


def reference(size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Coral's poses in image pixels [N, 17, 3] and their scores [N] (the CSV's coordinates are
    fractions of the stretched input, so fractions of the image too)."""
    with open(REFERENCE) as f:
        rows = list(csv.DictReader(f))
    w, h = size
    kps = np.array(
        [[float(r["keypoint_x"]) * w, float(r["keypoint_y"]) * h, float(r["keypoint_score"])] for r in rows]
    ).reshape(-1, 17, 3)
    return kps, np.array([float(rows[i * 17]["pose_score"]) for i in range(len(kps))])


@pytest.fixture(scope="module")
def cpu_posenet(tmp_path_factory):
    return load_estimator("posenet", MODELS, decoder_lib="", device="cpu", cache_dir=tmp_path_factory.mktemp("m"))


@needs_shared
def test_cpu_decodes_several_people_like_corals_op(cpu_posenet):
    assert cpu_posenet.device == "cpu" and cpu_posenet.decoder == "numpy"
    image = cv2.cvtColor(cv2.imread(str(IMAGE)), cv2.COLOR_BGR2RGB)
    people = cpu_posenet.estimate(image, key="cam")
    expected, scores = reference((image.shape[1], image.shape[0]))
    assert len(people) == len(expected) == 2
    for person, want, score in zip(people, expected, scores):
        assert abs(person.score - score) <= POSE_SCORE
        np.testing.assert_allclose(person.keypoints[:, :2], want[:, :2], atol=KEYPOINT_PX)
        np.testing.assert_allclose(person.keypoints[:, 2], want[:, 2], atol=KEYPOINT_SCORE)
    # A smaller copy of the same picture: the same people, in its pixels.
    small = cpu_posenet.estimate(cv2.resize(image, (320, 240), interpolation=cv2.INTER_AREA))
    assert len(small) == 2
    np.testing.assert_allclose(small[0].keypoints[:, :2] * 2, people[0].keypoints[:, :2], atol=4 * KEYPOINT_PX)


@needs_shared
def test_nobody_in_an_empty_frame_and_the_pose_score_floor_applies(cpu_posenet, tmp_path):
    assert cpu_posenet.estimate(np.full((480, 640, 3), 128, np.uint8)) == []
    image = cv2.cvtColor(cv2.imread(str(IMAGE)), cv2.COLOR_BGR2RGB)
    strict = load_estimator("posenet", MODELS, decoder_lib="", device="cpu", cache_dir=tmp_path, min_pose_score=0.85)
    assert [round(p.score, 2) for p in strict.estimate(image)] == [0.91]


@needs_shared
def test_missing_decoder_library_falls_back_to_numpy_decoding(tmp_path):
    missing = str(tmp_path / "posenet_decoder.so")
    est = load_estimator("posenet", MODELS, decoder_lib=missing, device="cpu", cache_dir=tmp_path)
    assert est.decoder == "numpy"
    assert "PosenetDecoderOp custom op not available" in est.decoder_reason and missing in est.decoder_reason
    # The edited model is cached beside, never in place of, the shared one.
    assert est.choice.model_path.parent == tmp_path and "nodecoder" in est.choice.model_path.name


@needs_shared
def test_edge_tpu_without_its_delegate_is_refused_when_required(tmp_path):
    def no_device():
        raise ValueError("Failed to load delegate from libedgetpu.so.1")

    with pytest.raises(BackendUnavailable, match="Edge TPU requested but not usable"):
        load_estimator("posenet", MODELS, device="edgetpu", delegate_loader=no_device, cache_dir=tmp_path)


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


@needs_shared
def test_decoder_plugin_path_keeps_the_whole_graph_or_falls_back_with_the_reason(tmp_path, monkeypatch):
    """The plugin is tried on the whole graph once: where the runtime refuses its op the graph is
    cut and decoded in numpy; where it loads, that interpreter is the building thread's runner."""
    import dataclasses

    from vision.parts import surgery
    from vision.pose import tflite

    real, built = tflite.make_interpreter, []

    def interpreter(choice, num_threads=1, extra_delegates=()):
        built.append((choice.model_path, extra_delegates))
        if extra_delegates == ("refused",):
            raise RuntimeError("Encountered unresolved custom op: PosenetDecoderOp.\nNode number 31 failed")
        if extra_delegates == ("loads",):  # stands in for Coral's op: a graph this runtime can run
            choice = dataclasses.replace(choice, model_path=surgery.stripped_model(choice.model_path, tmp_path)[0])
        return real(choice, num_threads)

    monkeypatch.setattr(tflite, "make_interpreter", interpreter)
    whole = MODELS / "coral" / "posenet_mobilenet_v1_075_481_641_16_quant_decoder.tflite"

    refused = load_estimator(
        "posenet", MODELS, decoder_lib="x.so", decoder_loader=lambda lib: "refused", cache_dir=tmp_path, device="cpu"
    )
    assert (
        refused.decoder == "numpy"
        and "PosenetDecoderOp custom op not available in this TFLite runtime" in refused.decoder_reason
    )
    assert [extra for _, extra in built] == [("refused",), ()]
    assert built[0][0] == whole and refused.choice.model_path == built[1][0] != whole
    assert refused.input_size == (641, 481)

    built.clear()
    loads = load_estimator(
        "posenet", MODELS, decoder_lib="x.so", decoder_loader=lambda lib: "loads", cache_dir=tmp_path, device="cpu"
    )
    assert loads.decoder == "decoder-op" and "'x.so' loaded" in loads.decoder_reason
    assert loads.choice.model_path == whole
    loads._runners.get()
    assert built == [(whole, ("loads",))]  # built once, for the check and this thread's frames
