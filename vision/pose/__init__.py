"""Pose estimation backends behind one interface: ``load_estimator(backend, models_dir)``.

est = load_estimator("auto", models_dir, num_threads=2)
people = est.estimate(frame_rgb, key="cam0")   # list[Person], thread-safe
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vision import models
from vision.pose.base import BackendUnavailable, Estimator, Person

BACKENDS = ("auto", "movenet", "blazepose", "posenet")

__all__ = ["BACKENDS", "BackendUnavailable", "Estimator", "Person", "load_estimator"]


def load_estimator(backend: str, models_dir: Path | None = None, num_threads: int = 1, **options: Any) -> Estimator:
    """Build a pose estimator.

    backend: "movenet" (one person; Edge TPU when its delegate loads, else CPU), "blazepose"
    (one person, CPU), "posenet" (several people; Edge TPU or CPU, decoded by Coral's op where its
    plugin loads, else in numpy), or "auto" (MoveNet, on the Edge TPU if available else the CPU).
    models_dir: folder laid out as vision.models describes; None uses the first complete one
    of the known places (../shared/models beside the repository).
    num_threads: TFLite CPU threads per interpreter (one interpreter per calling thread).
    options: backend keyword options (device=, resize=, model=, track=, with_mask=, resolution=, ...).
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown pose backend {backend!r}; choose one of {BACKENDS}")
    if models_dir is None:
        models_dir = models.find_models_dir()
        if models_dir is None:
            raise BackendUnavailable("no models folder found: run vision.models.find_or_install")
    if backend in ("auto", "movenet"):
        from vision.pose.movenet import MoveNetEstimator

        return MoveNetEstimator(models_dir, num_threads, **options)
    if backend == "blazepose":
        from vision.pose.blazepose import BlazePoseEstimator

        return BlazePoseEstimator(models_dir, num_threads, **options)
    from vision.pose.posenet import PoseNetEstimator

    return PoseNetEstimator(models_dir, num_threads, **options)
