"""Dance fidelity: limb error in the hip-shoulder frame, facing from keypoints, the judge on real
photos with an estimator other than the one that drew the poses, and bad input."""

from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from schemas.keypoints import INDEX
from trainer.fidelity import (
    DanceJudge,
    facing_class,
    facing_warnings,
    figures,
    in_view,
    independent_backend,
    limb_error,
    real_floor,
    torso_aligned,
)


def standing(front: bool = True, face: bool = True) -> np.ndarray:
    """A person standing in a 200 px tall frame: facing the camera (their left on the image's
    right) or, mirrored, showing their back."""
    xy = {
        "nose": (100, 30),
        "left_eye": (104, 26),
        "right_eye": (96, 26),
        "left_ear": (110, 28),
        "right_ear": (90, 28),
        "left_shoulder": (120, 60),
        "right_shoulder": (80, 60),
        "left_elbow": (128, 90),
        "right_elbow": (72, 90),
        "left_wrist": (132, 118),
        "right_wrist": (68, 118),
        "left_hip": (112, 120),
        "right_hip": (88, 120),
        "left_knee": (113, 155),
        "right_knee": (87, 155),
        "left_ankle": (114, 190),
        "right_ankle": (86, 190),
    }
    pose = np.zeros((17, 3), np.float32)
    for name, (x, y) in xy.items():
        pose[INDEX[name]] = (x if front else 200 - x, y, 0.9)
    if not face:
        pose[[INDEX["nose"], INDEX["left_eye"], INDEX["right_eye"]], 2] = 0.05
    return pose


def moved(pose: np.ndarray, angle: float, scale: float, shift) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    out = pose.copy()
    out[:, :2] = pose[:, :2] @ np.array([[c, s], [-s, c]]) * scale + np.asarray(shift)
    return out


def test_limb_error_forgives_placement_and_size_and_counts_shape_in_torso_lengths():
    pose = standing()
    assert limb_error(pose, moved(pose, 0.3, 1.7, (40, -25))) == pytest.approx(0.0, abs=1e-6)
    aligned = torso_aligned(pose)
    assert aligned.shape == (12, 2) and aligned[[6, 7], 1] == pytest.approx([0, 0])  # hips at the origin
    # The left wrist half a torso length (torso: 60 px) away: half a length over one of 12 keypoints.
    bent = pose.copy()
    bent[INDEX["left_wrist"], 0] += 30
    assert limb_error(pose, bent) == pytest.approx(0.5 / 12, rel=1e-4)
    # A keypoint one of them lacks is left out, not counted as right.
    bent[INDEX["left_wrist"], 2] = 0.0
    assert limb_error(pose, bent) == pytest.approx(0.0, abs=1e-6)
    no_torso = pose.copy()
    no_torso[INDEX["left_hip"], 2] = 0.0
    assert np.isnan(limb_error(pose, no_torso)) and torso_aligned(no_torso) is None


def test_facing_from_shoulder_order_and_the_face():
    assert facing_class(standing()) == "front"
    assert facing_class(standing(front=False, face=False)) == "back"
    # Left and right swapped as estimators do on a back view, but no face: a back.
    assert facing_class(standing(front=True, face=False)) == "back"
    side = standing()
    side[[INDEX["left_shoulder"], INDEX["right_shoulder"]], 0] = (102, 98)
    assert facing_class(side) == "profile"
    empty = standing()
    empty[:, 2] = 0.0
    assert facing_class(empty) is None


def test_the_judge_is_another_estimator_than_the_one_that_drew_the_poses():
    assert independent_backend("movenet") == "blazepose"
    assert independent_backend(["movenet-lightning-cpu"]) == "blazepose"
    assert independent_backend("blazepose") == "movenet"
    assert independent_backend(None) == "blazepose"


def test_figures_on_what_is_there_with_warnings():
    asked = np.stack([standing(), standing(), standing(front=False, face=False), np.zeros((17, 3), np.float32)])
    found = [moved(standing(), 0.1, 1.2, (5, 5)), None, standing(), standing()]
    out, warnings = figures(asked, found, "blazepose")
    assert out["dance_judged"] == 4 and out["dance_person_found"] == 0.75
    assert out["dance_compared"] == 2  # nobody in one frame, the asked pose of another unreadable
    assert out["dance_limb_error"] > 0  # the back rendered as a front: its limbs swap sides
    # Of the three asked facings that can be read: one rendered right, one nobody, one the wrong way.
    assert out["dance_facing_agreement"] == pytest.approx(1 / 3)
    # By the asked facing: the front rendered a little off, the back rendered as a front (worse).
    assert 0 < out["dance_limb_error_front"] < out["dance_limb_error_back"]
    assert "dance_limb_error_profile" not in out  # the dance asks for no profile
    assert np.mean([out["dance_limb_error_front"], out["dance_limb_error_back"]]) == pytest.approx(
        out["dance_limb_error"]
    )
    assert any("no readable torso" in w for w in warnings) and any("found nobody in 1 of 4" in w for w in warnings)
    nobody, warnings = figures(asked[:2], [None, None], "blazepose")
    assert nobody["dance_person_found"] == 0 and np.isnan(nobody["dance_limb_error"])
    assert any("no frame could be compared" in w for w in warnings)


def test_what_the_rendered_frame_cannot_show_is_not_judged():
    # A portrait cut at the waist (the demo's clip): the asked hips (y 120) lie below a 100 px
    # tall frame, so any estimator reading the frame must put them at its edge. Compared, the
    # torso shrinks by a third and every keypoint is misplaced by the crop, not by the body.
    asked = standing()
    found = standing()
    found[[INDEX["left_hip"], INDEX["right_hip"]], 1] = 98
    found[[INDEX[n] for n in ("left_knee", "right_knee", "left_ankle", "right_ankle")], 2] = 0.0
    assert limb_error(asked, found) > 0.2  # what the judge scored before it knew the frame's edge
    out, warnings = figures(asked[None], [found], "movenet", size=(200, 100))
    assert np.isnan(out["dance_limb_error"]) and out["dance_compared"] == 0 and out["dance_person_found"] == 1
    assert any("1 of 1 judged dance poses have their torso outside the rendered frame" in w for w in warnings)
    assert out["dance_facing_agreement"] == 1.0  # the facing is still read from what is there
    # A wrist raised past the top edge is not judged; the rest of the body is.
    raised = standing()
    raised[INDEX["left_wrist"], 1] = -20
    read = raised.copy()
    read[INDEX["left_wrist"], 1] = 2  # the estimator's guess, inside the picture
    wrist = INDEX["left_wrist"]
    assert in_view(raised, (200, 200))[wrist, 2] == 0 and in_view(raised, None)[wrist, 2] > 0
    assert limb_error(raised, read) > 0.02
    out, warnings = figures(raised[None], [read], "movenet", size=(200, 200))
    assert out["dance_limb_error"] == pytest.approx(0.0, abs=1e-6) and out["dance_compared"] == 1
    assert not any("outside the rendered frame" in w for w in warnings)


def test_a_session_with_one_facing_is_warned_about():
    session = np.stack([standing()] * 5)
    dance = np.stack([standing()] * 3 + [standing(front=False, face=False)])
    (warning,) = facing_warnings(session, dance)
    assert "facing front only" in warning and "25%" in warning and "back" in warning
    assert facing_warnings(np.concatenate([session, dance]), dance) == []


def test_blazepose_judges_a_real_photo_against_movenets_pose(shared_dir):
    shared = shared_dir
    from vision.pose import load_estimator

    image = cv2.cvtColor(cv2.imread(str(shared / "data" / "images" / "squat.png")), cv2.COLOR_BGR2RGB)
    asked = load_estimator("movenet", shared / "models").estimate(image)[0].keypoints
    blank = np.full_like(image, 128)
    # Three "rendered" frames: the real person twice, then nobody.
    judge = DanceJudge(np.stack([asked] * 3), "movenet", shared / "models", frames=3)
    kept = list(judge.watch([(image, image), (image, image), (blank, blank)]))
    assert len(kept) == 3 and sorted(judge.kept) == [0, 1, 2]
    result = judge.judge()
    f = result.figures
    assert judge.backend == "blazepose"
    assert f["dance_person_found"] == pytest.approx(2 / 3)
    assert f["dance_limb_error"] < 0.15, f  # two estimators agree on a real, clear body
    assert f["dance_facing_agreement"] == pytest.approx(2 / 3)  # the blank frame shows no facing
    assert any("found nobody in 1 of 3" in w for w in result.warnings)
    assert result.picture is not None and result.picture.ndim == 3 and result.picture.shape[0] >= 240
    # Far from the asked pose: the figure says so.
    wrong = asked.copy()
    torso = abs(asked[INDEX["left_hip"], 1] - asked[INDEX["left_shoulder"], 1])
    wrong[[INDEX[n] for n in ("left_wrist", "right_wrist", "left_ankle", "right_ankle")], 0] += torso
    judge = DanceJudge(wrong[None], "movenet", shared / "models", frames=1)
    list(judge.watch([(image, image)]))
    assert judge.judge().figures["dance_limb_error"] > f["dance_limb_error"] + 0.2


def test_the_judges_floor_is_its_score_on_the_real_frames_and_never_its_own_drawing(shared_dir):
    shared = shared_dir
    from vision.pose import load_estimator

    image = cv2.cvtColor(cv2.imread(str(shared / "data" / "images" / "squat.png")), cv2.COLOR_BGR2RGB)
    drawn = load_estimator("movenet", shared / "models").estimate(image)[0].keypoints
    blank = np.full_like(image, 128)
    poses = np.stack([drawn] * 3)
    floor, warnings = real_floor([image, image, blank], poses, "blazepose", shared / "models", drawn_by=["movenet"])
    assert warnings == [] and set(floor) == {"dance_limb_floor", "dance_limb_floor_p90", "dance_facing_floor"}
    # What the real body scores, as DanceJudge scores a rendered one (the blank frame: nobody).
    judge = DanceJudge(poses, "movenet", shared / "models", frames=3)
    list(judge.watch([(image, image), (image, image), (blank, blank)]))
    judged = judge.judge().figures
    assert floor["dance_limb_floor"] == pytest.approx(judged["dance_limb_error"])
    assert 0 < floor["dance_limb_floor"] < 0.15  # two estimators on a clear body agree closely
    assert floor["dance_facing_floor"] == pytest.approx(judged["dance_facing_agreement"])
    # The judge reading poses it drew itself would agree with itself: no floor, said so.
    floor, warnings = real_floor([image], poses[:1], "movenet", shared / "models", drawn_by=["movenet-lightning"])
    assert floor == {} and "drawn by movenet, the judge itself" in warnings[0]
    assert real_floor([], poses[:0], "blazepose")[0] == {}


def test_a_session_judges_with_the_processs_estimators_and_one_that_cannot_load_is_said(shared_dir):
    from trainer.estimators import Estimators
    from trainer.fidelity import SessionJudge, judge_estimator

    image = cv2.cvtColor(cv2.imread(str(shared_dir / "data" / "images" / "squat.png")), cv2.COLOR_BGR2RGB)
    estimators = Estimators.load(shared_dir / "models")
    # Made once for the process: the same estimators every session's judge uses.
    assert estimators.judge("blazepose") is judge_estimator("blazepose", shared_dir / "models")
    assert not isinstance(estimators.held_out, Exception)
    assert isinstance(estimators.judge("openpose"), ValueError)
    asked = estimators.judge("movenet").estimate(image)[0].keypoints
    poses = np.stack([asked] * 3)

    def verdict(estimators):
        session = SessionJudge([image] * 3, poses, estimators, drawn_by=["movenet"])
        judge = session.watcher(SimpleNamespace(poses=poses, ref=SimpleNamespace(meta={"backend": "movenet"})))
        list(judge.watch([(image, image)] * 3))
        return session.verdict(judge)

    judged = verdict(estimators)
    assert 0 < judged.figures["dance_limb_error"] < 0.15 and "dance_limb_floor" in judged.figures
    # The judge could not be made when the trainer started: no figures, the reason among the warnings.
    broken = Estimators({"blazepose": OSError("no model file"), "movenet": estimators.judge("movenet")}, None)
    missing = verdict(broken)
    assert not any(k.startswith("dance_limb") for k in missing.figures)
    assert "dance fidelity not measured: blazepose cannot load (no model file)" in missing.warnings
    assert any(w.startswith("no judge floor: OSError: no model file") for w in missing.warnings)
