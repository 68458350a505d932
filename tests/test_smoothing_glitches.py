"""Glitch detection: injected jumps and stretched limbs are found, clean motion is left alone."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest

from schemas.keypoints import INDEX, SKELETON
from vision.smoothing import SmoothingParams, detect_glitches, render_report
from vision.smoothing.glitches import LIMB_NAMES, blame_limbs, limb_lengths
from vision.smoothing.synthetic import corrupt, stick_figure

ONLY_LIMBS = SmoothingParams(jump_threshold=1e9)  # isolates the limb-length test


def test_injected_jumps_are_found_without_flagging_clean_motion():
    truth, times = stick_figure(300, seed=7)
    c = corrupt(truth, seed=7, jitter_px=3.0, drop_fraction=0.0, outlier_rate=0.01)
    outlier, rows = detect_glitches(c.poses, times)
    assert c.outliers.sum() > 30
    assert (outlier & c.outliers).sum() >= 0.95 * c.outliers.sum()
    assert (outlier & ~c.outliers).sum() <= 0.002 * outlier.size
    assert {r.kind for r in rows} <= {"jump", "limb_length"}
    assert all(r.magnitude > 0.45 for r in rows if r.kind == "jump")


def test_clean_fast_dance_has_no_glitches():
    truth, times = stick_figure(300, seed=8)
    c = corrupt(truth, seed=8, jitter_px=2.0, drop_fraction=0.2, mean_drop_frames=3.0, outlier_rate=0.0)
    outlier, rows = detect_glitches(c.poses, times)
    assert outlier.sum() <= 0.001 * outlier.size, rows[:5]


@pytest.mark.parametrize(
    "joint,limbs",
    [
        ("left_wrist", {"left_elbow-left_wrist"}),
        ("left_elbow", {"left_shoulder-left_elbow", "left_elbow-left_wrist"}),
    ],
)
def test_a_stretched_limb_blames_the_misplaced_joint(joint, limbs):
    truth, times = stick_figure(90, seed=9)
    poses = truth.copy()
    k = INDEX[joint]
    # Push the joint straight away from its skeleton neighbours: every limb at it gets longer.
    neighbours = [b if a == k else a for a, b in SKELETON if k in (a, b)]
    away = poses[50, k, :2] - poses[50, neighbours, :2].mean(axis=0)
    poses[50, k, :2] += 120.0 * away / np.linalg.norm(away)
    outlier, rows = detect_glitches(poses, times, ONLY_LIMBS)
    assert np.flatnonzero(outlier.any(axis=1)).tolist() == [50]
    assert np.flatnonzero(outlier[50]).tolist() == [k]
    assert {r.part for r in rows} == limbs
    assert all(r.kind == "limb_length" and r.replaced == joint and r.magnitude > 1.6 for r in rows)


def test_blame_goes_to_the_endpoint_with_the_larger_share_of_bad_limbs():
    truth, _ = stick_figure(1, seed=1)
    lengths = limb_lengths(truth[0, :, :2], np.ones(17, bool))
    bad = np.zeros(len(SKELETON), bool)
    bad[SKELETON.index((7, 9))] = True  # forearm only: the wrist, whose only limb it is
    assert np.flatnonzero(blame_limbs(bad, lengths)).tolist() == [INDEX["left_wrist"]]


def test_report_renders_as_text_and_as_csv_that_parses_back():
    truth, times = stick_figure(90, seed=9)
    poses = truth.copy()
    poses[30, INDEX["right_ankle"], :2] += [0.0, 120.0]
    _, rows = detect_glitches(poses, times)
    assert any(r.frame == 30 and r.part == "right_ankle" and r.kind == "jump" for r in rows)
    parsed = list(csv.DictReader(io.StringIO(render_report(rows, "csv"))))
    assert len(parsed) == len(rows)
    assert parsed[0].keys() == {"frame", "time", "part", "kind", "magnitude", "replaced"}
    assert int(parsed[0]["frame"]) == rows[0].frame and parsed[0]["part"] == rows[0].part
    text = render_report(rows, "text")
    assert text.splitlines()[0].split()[:3] == ["frame", "time", "part"]
    assert "right_ankle" in text and len(text.splitlines()) == len(rows) + 1
    assert render_report([], "text") == "no glitches\n"
    with pytest.raises(ValueError, match="format"):
        render_report(rows, "html")


def test_limb_names_follow_the_skeleton():
    assert len(LIMB_NAMES) == len(SKELETON) and LIMB_NAMES[SKELETON.index((7, 9))] == "left_elbow-left_wrist"
