"""Pose estimation backends behind one interface: ``load_estimator(backend, models_dir)``.

est = load_estimator("auto", models_dir, num_threads=2)
people = est.estimate(frame_rgb, key="cam0")   # list[Person], thread-safe
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from vision import models
from vision.pose.base import BackendUnavailable, Estimator, Person

BACKENDS = ("auto", "movenet", "blazepose", "posenet")

__all__ = ["BACKENDS", "BackendUnavailable", "Estimator", "Person", "load_estimator", "resolve_backend"]

log = logging.getLogger(__name__)
_said: set[str] = set()


def resolve_backend(backend: str, models_dir: Path | None = None, model: str = "full") -> tuple[str, Path, str]:
    """(backend, models folder, note) for a requested backend: "auto" is MoveNet, else BlazePose
    when MoveNet's model is missing (the note says so). model: BlazePose's landmark model when
    "blazepose" is asked for by name ("lite" needs its own file). Raises BackendUnavailable naming
    the missing files and how to install them."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown pose backend {backend!r}; choose one of {BACKENDS}")
    chosen = "movenet" if backend == "auto" else backend
    needs = "blazepose-lite" if backend == "blazepose" and model == "lite" else chosen
    try:
        return chosen, models.backend_dir(needs, models_dir), ""
    except models.ModelError as e:
        if backend != "auto":
            raise BackendUnavailable(str(e)) from e
        why = str(e)
    try:
        folder = models.backend_dir("blazepose", models_dir)
    except models.ModelError as e:
        raise BackendUnavailable(f"{why}; and BlazePose's: {e}") from e
    return "blazepose", folder, f"MoveNet's model is missing ({why}): pose comes from BlazePose"


def load_estimator(backend: str, models_dir: Path | None = None, num_threads: int = 1, **options: Any) -> Estimator:
    """Build a pose estimator.

    backend: "movenet" (one person; Edge TPU when its delegate loads, else CPU), "blazepose"
    (one person, CPU), "posenet" (several people; Edge TPU or CPU, decoded by Coral's op where its
    plugin loads, else in numpy), or "auto" (MoveNet, on the Edge TPU if available else the CPU;
    BlazePose where MoveNet's model is not installed, said once in the log).
    models_dir: folder laid out as vision.models describes, else the settings' models folder;
    either way ../shared/models is the fallback (vision.models.locate).
    num_threads: TFLite CPU threads per interpreter (one interpreter per calling thread).
    options: backend keyword options (device=, resize=, model=, track=, with_mask=, resolution=, ...).
    """
    requested = backend
    backend, models_dir, note = resolve_backend(backend, models_dir, options.get("model", "full"))
    if note:
        options = {k: v for k, v in options.items() if k in ("track",)}  # MoveNet's options do not apply
        if note not in _said:
            _said.add(note)
            log.warning("pose backend %r: %s", requested, note)
    if backend == "movenet":
        from vision.pose.movenet import MoveNetEstimator

        return MoveNetEstimator(models_dir, num_threads, **options)
    if backend == "blazepose":
        from vision.pose.blazepose import BlazePoseEstimator

        return BlazePoseEstimator(models_dir, num_threads, **options)
    from vision.pose.posenet import PoseNetEstimator

    return PoseNetEstimator(models_dir, num_threads, **options)
