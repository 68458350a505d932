"""Several people: identity switches on real footage, and multi-person fps against single-person MoveNet.

    .venv/bin/python -m bench.bench_multiperson [--quick]

One run, side by side, on the same JPEG frames of the shared vtest.avi (768x576, 10 fps, several
pedestrians crossing): each row is what one worker does per frame (decode, estimate, keep at most
pose_max_people, track, impute and smooth every track; processors.app's stages), timed as a loop
in this process, one TFLite thread.

- MoveNet, single person: today's default, the baseline of the ratios.
- PoseNet 481x641 and 353x481, several people, decoded in numpy (no Coral decoder op here).
- The same PoseNet detections with ids by rank (strongest = 1, ...) instead of the tracker: what
  identities look like without tracking.

Identity switches are counted against bench/data/vtest_identities.json: two people known by their
red jackets, with where they are in every frame PoseNet sees them clearly (checked by eye; see the
file's "about"). At each such point the followed person is the tracked person whose keypoint centre
is nearest, within 0.3 of their height (none: "missed"). A switch is a change of their track id
from their previous point, when that point is at most 2 s (20 frames) earlier: walking out of view
and back later is not a switch the tracker is asked to avoid. Switches per 100 frames = 100 x
switches / the frames in which a followed person was seen. --quick uses the first 200 frames.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import cv2
import numpy as np

from infra.settings import REPO_ROOT, Settings
from processors.app import SmoothStage, TrackStage, tracking_params
from processors.estimate import PoseStage
from schemas import Frame, PoseEstimate, frame_key
from vision import models
from vision.pose import load_estimator
from vision.smoothing import SmoothingParams

TRUTH = Path(__file__).resolve().parent / "data" / "vtest_identities.json"
VIDEO = models.SHARED_MODELS.parent / "data" / "videos" / "vtest.avi"
MAX_GAP_FRAMES = 20  # 2 s at 10 fps
MATCH_RADIUS = 0.3  # of the person's height


def video_frames(n: int | None) -> list[Frame]:
    cap = cv2.VideoCapture(str(VIDEO))
    out: list[Frame] = []
    while n is None or len(out) < n:
        ok, bgr = cap.read()
        if not ok:
            break
        jpg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
        seq = len(out)
        h, w = bgr.shape[:2]
        out.append(
            Frame(
                session="bench",
                camera="cam0",
                seq=seq,
                capture_ns=seq * 100_000_000,
                wall_time=time.time(),
                width=w,
                height=h,
                image=jpg,
            )  # fmt: skip
        )
    cap.release()
    if not out:
        raise SystemExit(f"cannot read {VIDEO}")
    return out


def centre(keypoints: np.ndarray) -> np.ndarray:
    seen = keypoints[keypoints[:, 2] >= 0.3, :2]
    return np.median(seen, axis=0) if len(seen) else np.array([np.nan, np.nan])


def identity_switches(truth: dict, estimates: dict[int, PoseEstimate], ids=None) -> tuple[int, int, int]:
    """(switches, points seen, points missed) over the frames in `estimates`; `ids(estimate)` gives
    each person's id (default: their track)."""
    ids = ids or (lambda est: [p.track for p in est.persons])
    switches = seen = missed = 0
    for person in truth["people"]:
        last_frame, last_id = None, None
        for frame, x, y, height in person["points"]:
            if frame not in estimates:
                continue
            if last_frame is not None and frame - last_frame > MAX_GAP_FRAMES:
                last_id = None
            est = estimates[frame]
            centres = np.array([centre(p.array()) for p in est.persons]).reshape(-1, 2)
            d = np.hypot(centres[:, 0] - x, centres[:, 1] - y) if len(centres) else np.array([])
            if not len(d) or not np.isfinite(d).any() or np.nanmin(d) > MATCH_RADIUS * height:
                missed += 1
                continue
            track = ids(est)[int(np.nanargmin(d))]
            if track is None:
                missed += 1
                continue
            seen += 1
            switches += last_id is not None and track != last_id
            last_frame, last_id = frame, track
    return switches, seen, missed


def run(estimator, frames: list[Frame], settings: Settings) -> tuple[float, dict[int, PoseEstimate], int]:
    """Frames/s of the per-frame work, the tracked estimates by seq, and the tracks started."""
    pose = PoseStage(estimator, settings.pose_max_people)
    track, smooth = TrackStage(tracking_params(settings, SmoothingParams())), SmoothStage(SmoothingParams())
    key = frame_key("bench", "cam0")
    for f in frames[:5]:  # warm-up: interpreters, caches
        pose(key, f.encode())
    track_state = smooth_state = None
    out: dict[int, PoseEstimate] = {}
    encoded = [f.encode() for f in frames]
    t0 = time.perf_counter()
    for f, raw in zip(frames, encoded):
        state, tracked = track(track_state, pose(key, raw))
        track_state = state if state is not None else track_state
        smooth_state, _ = smooth(smooth_state, tracked)
        out[f.seq] = tracked
    rate = len(frames) / (time.perf_counter() - t0)
    started = len({p.track for e in out.values() for p in e.persons if p.track is not None})
    return rate, out, started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the first 200 frames")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    models_dir = models.find_models_dir()
    if models_dir is None:
        raise SystemExit("no models folder found: run `booth models --install`")
    frames = video_frames(200 if args.quick else None)
    truth = json.loads(TRUTH.read_text())
    settings = Settings()
    cache = REPO_ROOT / ".booth" / "models"
    configs = [
        ("MoveNet, one person", load_estimator("movenet", models_dir)),
        ("PoseNet 481x641", load_estimator("posenet", models_dir, cache_dir=cache, resolution="481_641")),
        ("PoseNet 353x481", load_estimator("posenet", models_dir, cache_dir=cache, resolution="353_481")),
    ]
    rows = []
    for label, est in configs:
        rate, estimates, tracks = run(est, frames, settings)
        people = np.mean([len(e.persons) for e in estimates.values()])
        switches = identity_switches(truth, estimates) if est.name == "posenet" else None
        rows.append((label, est.device, rate, people, tracks, switches))
        if label == "PoseNet 481x641":
            by_rank = identity_switches(truth, estimates, ids=lambda e: list(range(1, len(e.persons) + 1)))
            rows.append((label + ", ids by rank", est.device, None, people, None, by_rank))

    from rich.console import Console
    from rich.table import Table

    base = rows[0][2]
    title = (
        f"several people: vtest.avi, {len(frames)} frames of 768x576 JPEG, pose_max_people {settings.pose_max_people}"
    )
    t = Table(title=title)
    columns = ("pipeline", "device", "frames/s", "x MoveNet", "people/frame", "tracks", "id switches", "per 100 frames")
    for col in (*columns, "followed / missed"):
        t.add_column(col)
    for label, device, rate, people, tracks, sw in rows:
        t.add_row(
            label,
            device,
            "-" if rate is None else f"{rate:.1f}",
            "-" if rate is None else f"{rate / base:.2f}",
            f"{people:.1f}",
            "-" if tracks is None else str(tracks),
            "-" if sw is None else str(sw[0]),
            "-" if sw is None or not sw[1] else f"{100 * sw[0] / sw[1]:.1f}",
            "-" if sw is None else f"{sw[1]} / {sw[2]}",
        )
    t.caption = (
        "frames/s: decode + estimate + track + smooth per frame, one TFLite thread; id switches: against "
        "bench/data/vtest_identities.json (two people known by their red jackets), per 100 frames in which "
        "they were followed"
    )
    Console(width=170).print(t)


if __name__ == "__main__":
    main()
