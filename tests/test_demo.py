"""`booth demo` end to end: the README's main command, with a short budget."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import cv2

from trainer.rendition import count_frames


def demo(tmp_path, *args: str) -> str:
    env = {**os.environ, "BOOTH_STATE_DIR": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "booth.cli",
            "demo",
            "--frames",
            "60",
            "--resolution",
            "64",
            "--base-budget",
            "6",
            *args,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_demo_runs_a_whole_session_warm_started_and_a_second_run_reuses_the_base(tmp_path):
    out = demo(tmp_path, "--budget", "15")
    assert "Your videos:" in out and "rendition.mp4  (the fine-tuned video, final" in out
    assert "http://" not in out  # no link: the stack has stopped (--keep-stack keeps one alive)
    results = next((tmp_path / "demo" / "results").iterdir())
    assert count_frames(results / "rendition.mp4") == 90  # one frame per reference pose
    # The one-shot video came first, from the visitor's own pixels, as long as the dance.
    assert count_frames(results / "oneshot.mp4") == 90
    assert "version 1 of the video (one-shot" in out  # announced as it reached the visitor
    metrics = json.loads((results / "metrics.json").read_text())
    assert metrics["samples"] >= 10 and metrics["steps"] >= 1 and 0 < metrics["ssim"] <= 1
    # Person-centred, judged inside the person's box too, and the video at the 16:9 camera's size.
    assert metrics["framing"] == "person" and 0 < metrics["box_ssim"] <= 1
    assert (metrics["width"], metrics["height"]) == (640, 360)
    assert "person box" in out and "640x360" in out
    assert cv2.imread(str(results / "plate.png")).shape == (360, 640, 3)
    assert cv2.imread(str(results / "samples.png")) is not None
    # Judged on the dance it shows, by another estimator than the one that drew it, the one-shot too.
    assert metrics["dance_judged"] == 24 and 0 <= metrics["dance_person_found"] <= 1
    assert "dance fidelity: one-shot" in out and "dance fidelity: final" in out
    assert cv2.imread(str(results / "dance.png")).shape[0] >= 4 * 240
    # The default generator reads the visitor's own pixels warped to each pose (their face with
    # them: no face residual, which is the pose-map generator's).
    assert metrics["conditioning"] == "warp" and metrics["face"] is False and metrics["temporal"] is False
    # The live mirror for a few seconds on the visitor's own poses: the skeleton (no generator of
    # the dancer was trained), its frames kept and its figures printed.
    assert "mirror.mp4  (the live mirror" in out and "of the skeleton" in out
    assert count_frames(results / "mirror.mp4") >= 10
    assert "mirror rate / render delay p50, p95" in out
    # Everything the demo started is stopped again.
    assert not (tmp_path / "demo" / "stack.json").exists()

    # Warm-started from the base it built, which it keeps for the next run; each version shown.
    assert metrics["warm_start"] is True and metrics["base_model"] == "base v0001"
    # Version 1 is the one-shot video; the fine-tuned one follows it.
    assert "built person-facing-64-warp" in out and "version 2 of the video (final)" in out
    assert "warm vs scratch after" in out
    cached = sorted(p.suffix for p in (tmp_path / "demo" / "base-cache").iterdir())
    assert cached == [".json", ".pt"]

    again = demo(tmp_path, "--budget", "5")
    assert "reused person-facing-64-warp" in again and "building a base model" not in again
    metrics = json.loads((sorted((tmp_path / "demo" / "results").iterdir())[-1] / "metrics.json").read_text())
    assert metrics["warm_start"] is True
