"""Every dancer of a multi-person reference: followed with the identity tracker, the `people`
most present kept, numbered left to right as they stand in their first frames (the order
trainer.people matches them to visitors in), each smoothed like a one-dancer reference.

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
    from trainer.people import mean_x
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
    kept = sorted(counts, key=lambda i: (-counts[i], i))[:people]

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
