"""Every dancer of a multi-person reference: followed with the identity tracker, the `people`
who dance kept (dancer_scores: large, moving and central over the whole clip, not merely present
or leftmost: a street clip has passers-by at its edges), numbered left to right as they stand in
their first frames (the order trainer.group matches them to visitors in), each smoothed like a
one-dancer reference.

Stored beside poses.npz as ``dancers.npz``: poses [T, D, 17, 3] float32 (source pixels), flags
[T, D, 17] uint8. poses.npz holds dancer 0, so everything that reads one dancer keeps working.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from schemas.keypoints import NUM_KEYPOINTS
from vision.tracking import PoseTracker

log = logging.getLogger(__name__)

DANCERS_FILE = "dancers.npz"
FIRST_FRAMES = 30  # frames of each dancer whose mean x orders them left to right
SCORE_THRESHOLD = 0.3  # keypoints at least this confident measure a track's size and motion
MIN_KEYPOINTS = 5  # a detection with fewer confident keypoints measures nothing


def _track_stats(poses: np.ndarray, times: np.ndarray, size: tuple[int, int], frames: int) -> dict:
    """One track's figures over the clip: presence (share of frames), height (median body height
    over the frame's height), motion (median speed of the keypoints about the body's centre, in
    body heights a second: limbs that move, not a walker carried across), offcentre (median
    distance of the body's centre from the frame's centre, 0 centre .. 1 corner)."""
    w, h = size
    heights, centres, shapes, ts = [], [], [], []
    for pose, t in zip(poses, times):
        ok = np.isfinite(pose).all(axis=1) & (pose[:, 2] >= SCORE_THRESHOLD)
        if ok.sum() < MIN_KEYPOINTS:
            continue
        ys = pose[ok, 1]
        height = max(float(ys.max() - ys.min()), 1.0)
        centre = pose[ok, :2].mean(axis=0)
        heights.append(height)
        centres.append(centre)
        rel = np.where(ok[:, None], (pose[:, :2] - centre) / height, np.nan)
        shapes.append(rel)
        ts.append(t)
    if not heights:
        return {"presence": 0.0, "height": 0.0, "motion": 0.0, "offcentre": 1.0, "score": 0.0}
    speeds = []
    for a, b, ta, tb in zip(shapes, shapes[1:], ts, ts[1:]):
        step = np.linalg.norm(b - a, axis=1)
        step = step[np.isfinite(step)]
        if len(step) and tb > ta:
            speeds.append(float(np.median(step)) / (tb - ta))
    c = np.asarray(centres)
    off = np.hypot((c[:, 0] - w / 2) / (w / 2), (c[:, 1] - h / 2) / (h / 2)) / np.sqrt(2)
    stats = {
        "presence": len(heights) / max(frames, 1),
        "height": float(np.median(heights)) / h,
        "motion": float(np.median(speeds)) if speeds else 0.0,
        "offcentre": float(np.median(off)),
    }
    stats["score"] = dancer_score(stats)
    return stats


def dancer_score(stats: dict) -> float:
    """How much a track looks like a dancer of the clip: the share of the clip it is seen in,
    times its size, times its motion (a dancer's limbs move; a bystander's do not: capped, so a
    jittery small detection does not win on noise), times its centrality (a dancer is framed;
    passers-by cross the edges). Each factor is one term, so a zero in any of them is not a dancer."""
    motion = 0.25 + min(stats["motion"], 1.0)
    centrality = 1.0 - 0.75 * min(stats["offcentre"], 1.0)
    return float(stats["presence"] * stats["height"] * motion * centrality)


def dancer_scores(tracks: dict[int, list[tuple[np.ndarray, float]]], size: tuple[int, int], frames: int) -> dict:
    """Track id -> its _track_stats (with "score") for every track of a clip."""
    out = {}
    for i, seen in tracks.items():
        poses = np.asarray([p for p, _ in seen], np.float32)
        times = np.asarray([t for _, t in seen], np.float64)
        out[i] = _track_stats(poses, times, size, frames)
    return out


def track_dancers(
    path: str | Path,
    estimator,
    people: int,
    key: str = "reference",
    progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, tuple[int, int], dict]:
    """(raw [T, D, 17, 3], times [T], (width, height), what was found) of a video's dancers.

    Frames without a dancer hold score 0 for them. D = min(people, tracks found); a clear error
    when nobody is found at all."""
    from dataset.people import mean_x
    from trainer.references.video import read_frames

    if people < 1:
        raise ValueError(f"a reference has at least one dancer, got people={people}")
    tracker = PoseTracker()
    frames: list[dict[int, np.ndarray]] = []
    times, size = [], None
    for rgb, t in read_frames(path):
        size = size or (rgb.shape[1], rgb.shape[0])
        found = estimator.estimate(rgb, key=key)
        poses = np.asarray([p.keypoints for p in found], np.float32).reshape(-1, NUM_KEYPOINTS, 3)
        ids = tracker.update(poses, t).tracks
        frames.append({i: pose for i, pose in zip(ids, poses) if i is not None})
        times.append(t)
        if progress:
            progress(1)
    if not frames:
        raise ValueError(f"{path} has no decodable frames")
    counts: dict[int, int] = {}
    for f in frames:
        for i in f:
            counts[i] = counts.get(i, 0) + 1
    if not counts:
        raise ValueError(f"{path}: nobody was found to dance")
    tracks = {i: [(f[i], t) for f, t in zip(frames, times) if i in f] for i in counts}
    scores = dancer_scores(tracks, size, len(frames))
    kept = sorted(counts, key=lambda i: (-scores[i]["score"], i))[:people]

    def start_x(i: int) -> float:
        xs = [mean_x(f[i]) for f in frames if i in f][:FIRST_FRAMES]
        xs = [x for x in xs if np.isfinite(x)]
        return float(np.mean(xs)) if xs else float("inf")

    kept.sort(key=lambda i: (start_x(i), i))
    raw = np.zeros((len(frames), len(kept), NUM_KEYPOINTS, 3), np.float32)
    for t, f in enumerate(frames):
        for d, i in enumerate(kept):
            if i in f:
                raw[t, d] = f[i]
    info = {
        "dancers": len(kept),
        "asked": people,
        "tracks_found": len(counts),
        "frames_per_dancer": [counts[i] for i in kept],
        "chosen_by": "presence x height x motion x centrality over the clip",
        "scores": [{k: round(v, 4) for k, v in scores[i].items()} for i in kept],
        "best_left_out": None
        if len(counts) <= len(kept)
        else round(max(scores[i]["score"] for i in counts if i not in kept), 4),
    }
    if len(kept) < people:
        log.warning("%s: %d dancers asked for, %d found", path, people, len(kept))
    return raw, np.asarray(times, np.float64), size, info  # type: ignore[return-value]


def smooth_dancers(raw: np.ndarray, times: np.ndarray, smooth) -> tuple[np.ndarray, np.ndarray]:
    """Each dancer smoothed alone by smooth(raw [T, 17, 3], times) -> trainer.references Smoothed."""
    out = [smooth(raw[:, d], times) for d in range(raw.shape[1])]
    return np.stack([s.poses for s in out], axis=1), np.stack([s.flags for s in out], axis=1)


def dancers_npz(poses: np.ndarray, flags: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, poses=poses.astype(np.float32), flags=flags.astype(np.uint8))
    return buf.getvalue()


def read_dancers(data: bytes) -> np.ndarray:
    """The poses [T, D, 17, 3] of a dancers.npz."""
    with np.load(io.BytesIO(data)) as npz:
        poses = np.asarray(npz["poses"], np.float32)
    if poses.ndim != 4 or poses.shape[2:] != (NUM_KEYPOINTS, 3):
        raise ValueError(f"{DANCERS_FILE} holds poses of shape {poses.shape}, not [T, D, {NUM_KEYPOINTS}, 3]")
    return poses
