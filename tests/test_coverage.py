"""Coverage of a reference dance by a visitor's poses (trainer.coverage), on synthetic figures."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.coverage import COVERED_RMS, LiveCoverage, facing, match, ranges, relevance_weights
from trainer.figure import figure

from helpers import dance_poses


def test_facings_from_keypoints():
    assert [facing(figure(t)) for t in (0, 30, 180, 150, 90, -90)] == [
        "front",
        "front",
        "back",
        "back",
        "right",
        "left",
    ]
    no_shoulders = figure(0)
    no_shoulders[[5, 6], 2] = 0.0
    assert facing(no_shoulders) is None


def test_threshold_keeps_noise_in_and_a_changed_limb_out():
    rng = np.random.default_rng(0)
    dance = figure(0, "down")[None]
    # the visitor stands elsewhere, smaller; the estimator jitters 0.05 torso lengths a keypoint
    jitter = [figure(0, "down", centre_x=200, scale=60) for _ in range(10)]
    for p in jitter:
        p[:, :2] += rng.normal(0, 0.05 * 60, (17, 2))
    assert match(dance, np.stack(jitter)).share == 1.0
    for other in (figure(0, ("down", "out")), figure(0, "up"), figure(180, "down")):
        m = match(dance, np.stack([other, other]))
        assert m.share == 0.0 and m.dance_distance[0] > COVERED_RMS


def test_a_walk_about_covers_little_and_following_covers_all():
    dance = dance_poses(24)
    walking = np.stack([figure(t, "down", centre_x=100 + 5 * i) for i, t in enumerate([0, 90, -90] * 10)])
    walked = match(dance, walking)
    assert 0.0 < walked.share < 0.3
    followed = match(dance, np.concatenate([walking, dance_poses(24)]))
    assert followed.share == 1.0
    assert walked.uncovered_frames() and not followed.uncovered_frames()
    assert ranges([3, 4, 5, 9]) == [[3, 5], [9, 9]]


def test_a_dance_pose_the_estimator_missed_is_unmeasured_not_uncovered():
    dance = dance_poses(12)
    dance[5, :12, 2] = 0.05  # the estimator lost most of frame 5
    m = match(dance, dance_poses(12))
    assert not m.measurable[5] and m.share == 1.0 and 5 not in m.uncovered_frames()


def test_live_meter_per_camera_prompts_and_who_is_in_the_picture():
    live = LiveCoverage(dance_poses(24))
    r = live.report(now=0.0)
    assert r["coverage"] == 0.0 and r["prompts"] == ["step into the picture"]
    assert r["dance_facings"] == ["front", "back", "right"]
    for i in range(10):
        live.add("cam0", figure(0, "down"), wall_time=float(i), others=1 if i == 3 else 0)
        live.add("cam1", None, wall_time=float(i))  # nobody in cam1's picture
    r = live.report(now=10.0)
    assert 0.0 < r["coverage"] < 0.5
    assert r["cameras"]["cam0"]["facings"] == ["front"] and r["cameras"]["cam0"]["frames_with_others"] == 1
    assert r["cameras"]["cam1"]["person_seen_s_ago"] is None and r["cameras"]["cam1"]["frames"] == 10
    assert "turn round" in r["prompts"] or "arms up" in r["prompts"]
    for i, p in enumerate(dance_poses(24)):
        live.add("cam1", p, wall_time=10.0 + i)
    r = live.report(now=35.0)
    assert r["coverage"] == 1.0 and r["prompts"] == []
    assert r["cameras"]["cam1"]["coverage"] == 1.0 and r["cameras"]["cam0"]["coverage"] < 0.5
    assert r["facings"] == ["front", "back", "right"]


def test_relevance_weights_favour_dance_poses_and_starve_none():
    w = relevance_weights(np.array([0.0, COVERED_RMS, 2.0, np.inf]))
    assert w[0] == pytest.approx(4.0) and w[0] > w[1] > w[2] >= 1.0 and w[3] == 1.0


def test_training_frames_near_the_dance_are_drawn_oftener_and_the_unseen_dance_is_named():
    from trainer.coverage import Repeated, training_relevance, uncovered_words

    dance = dance_poses(24)  # front arms down/out/up, a profile, the back with arms down and up
    front = [figure(0, arms) for arms in ("down", "out", "up")] * 4
    wander = [figure(t, "forward") for t in (45, -45, 120)] * 2
    poses = np.stack(front + wander)
    cameras = np.array(["cam0"] * len(poses))
    idx = np.arange(len(poses))
    counts, summary = training_relevance(dance, poses, cameras, idx)
    assert counts[: len(front)].min() >= 3 and counts[len(front) :].max() <= 2 and counts.min() == 1
    assert 0.0 < summary["share"] < 1.0 and summary["uncovered_frames"] > 0
    assert summary["uncovered"][0][0] >= 12  # the profile and the back were never shown
    words = uncovered_words(summary, np.arange(24) / 12.0)
    assert words.startswith(f"the visitor never showed {summary['uncovered_frames']} of the dance's 24 poses (1.")
    repeated = Repeated(["a", "b", "c"], np.array([1, 3, 2]))
    assert list(repeated) == ["a", "b", "b", "b", "c", "c"]
    with pytest.raises(ValueError, match="one count >= 1"):
        Repeated(["a"], np.array([0]))


def test_one_status_line_per_session_from_recording_to_final():
    from console.state import status_line

    training = {"phase": "training", "fraction": 0.42, "eta_s": 185.0}
    closed = {"state": "closed", "dataset": "ready"}
    rendition = {"versions": [{"version": 1, "final": False}]}
    steps = [
        ({"state": "start", "coverage": {"coverage": 0.5}}, None, None, "recording: 12 frames, dance covered 50%"),
        ({"state": "end"}, None, None, "assembling the recording"),
        (closed, None, None, "dataset ready, waiting for the trainer"),
        (closed, training, rendition, "first video ready, training 42%, about 3 min left"),
        ({"state": "closed", "dataset": "ready"}, None, {"versions": [{"final": True}]}, "final video ready"),
        ({"state": "closed", "failure": "training failed: no GPU"}, None, None, "failed: training failed: no GPU"),
    ]
    for control, t, r, expected in steps:
        assert status_line(control, {"frames": 12}, t, r) == expected
