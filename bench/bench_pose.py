"""Pose estimation speed: ms per frame for each backend at 1 and 2 TFLite threads.

    .venv/bin/python -m bench.bench_pose [--quick] [--models DIR]

Frames alternate between the two shared photos and a moving-photo clip, each source on its own
stream key (so tracking backends track). Every configuration runs in this one process, on the
same frames, and the table gives each one's p50 relative to MoveNet at 1 thread.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import cv2
import numpy as np

from vision import models
from vision.pose import load_estimator
from vision.pose.synthetic import moving_photo_clip

CONFIGS = (
    ("movenet", {}),
    ("blazepose", {}),
    ("blazepose", {"with_mask": False}),
    ("blazepose", {"model": "lite"}),
    ("blazepose", {"track": False}),
)


def load_frames(shared: Path, n_clip: int) -> list[tuple[str, np.ndarray]]:
    photos = {
        name: cv2.cvtColor(cv2.imread(str(shared / "data" / "images" / f"{name}.png")), cv2.COLOR_BGR2RGB)
        for name in ("squat", "two_people_walking")
    }
    clip = [f for f, _ in moving_photo_clip(photos["squat"], n_frames=n_clip)]
    frames = []
    for i, frame in enumerate(clip):
        frames.append(("clip", frame))
        frames.append(("squat" if i % 2 else "two_people_walking", photos["squat" if i % 2 else "two_people_walking"]))
    return frames


def measure(
    backend: str, options: dict, threads: int, models_dir: Path, frames: list[tuple[str, np.ndarray]], warmup: int
) -> tuple[str, np.ndarray, str]:
    estimator = load_estimator(backend, models_dir, num_threads=threads, **options)
    for key, frame in frames[:warmup]:
        estimator.estimate(frame, key=key)
    estimator.reset()
    times = []
    for key, frame in frames:
        start = time.perf_counter()
        estimator.estimate(frame, key=key)
        times.append((time.perf_counter() - start) * 1000)
    label = backend + "".join(f" {k}={v}" for k, v in options.items())
    return label, np.array(times), estimator.device


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few frames: finishes in seconds")
    parser.add_argument("--models", type=Path, default=None, help="models folder (default: found)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    models_dir = args.models or models.find_models_dir()
    if models_dir is None:
        raise SystemExit("no models folder found: pass --models or run vision.models.find_or_install")
    shared = models.SHARED_MODELS.parent
    frames = load_frames(shared, n_clip=8 if args.quick else 60)
    warmup = 3 if args.quick else 10

    rows = []
    for backend, options in CONFIGS:
        for threads in (1, 2):
            label, times, device = measure(backend, options, threads, models_dir, frames, warmup)
            rows.append((label, threads, device, times))
    base = np.percentile(rows[0][3], 50)
    print(f"{len(frames)} frames per configuration (clip + shared photos), {warmup} warm-up")
    print(f"{'backend':36s} {'threads':>7s} {'device':>7s} {'p50 ms':>8s} {'p95 ms':>8s} {'x movenet@1':>12s}")
    for label, threads, device, times in rows:
        p50, p95 = np.percentile(times, [50, 95])
        print(f"{label:36s} {threads:7d} {device:>7s} {p50:8.2f} {p95:8.2f} {p50 / base:12.2f}")


if __name__ == "__main__":
    main()
