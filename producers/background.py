"""`booth background capture`: the empty booth, once per camera, as the background plate that later
sessions are composited onto (trainer.plates uses it when its size matches the session's frames).

A few seconds of the camera with nobody in front of it; the per-pixel median of those frames
(vision.plate.median_image) removes sensor noise and anything that passes briefly. Frames are
fitted to `--size` exactly as `booth camera` fits them (producers.camera.fit_size), so the plate
has the size the session's frames will have. Stored as schemas.layout.background_key(camera)
(a PNG, and a JSON beside it saying when and from what).
"""

from __future__ import annotations

import json
import time

import cv2
import numpy as np

from infra.objectstore import ObjectStore
from infra.settings import Settings
from producers.camera import DEFAULT_SIZE, check_size, fit_size
from producers.sources import SourceError, open_source
from schemas import layout, validate_id
from vision.plate import median_image


def capture_background(
    settings: Settings,
    camera: str,
    source,
    *,
    frames: int = 30,
    size: tuple[int, int] = DEFAULT_SIZE,
    skip: int = 5,
    store: ObjectStore | None = None,
) -> dict:
    """Read `frames` frames (after dropping `skip`, while exposure settles) from a source that
    open_source takes, store their median as the camera's background; returns its description.

    Raises InvalidId, SourceError (the source cannot be opened or gives too few frames) or
    ValueError (bad options)."""
    validate_id(camera, "camera id")
    check_size(size)
    if frames < 1 or skip < 0:
        raise ValueError(f"frames must be >= 1 and skip >= 0, got {frames} and {skip}")
    images: list[np.ndarray] = []
    with open_source(source, size=size) as src:
        for k, frame in enumerate(src):
            if k < skip:
                continue
            bgr = frame.image
            target = fit_size((bgr.shape[1], bgr.shape[0]), size)
            if target != (bgr.shape[1], bgr.shape[0]):
                bgr = cv2.resize(bgr, target, interpolation=cv2.INTER_AREA)
            images.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            if len(images) >= frames:
                break
        description = src.description
    if not images:
        raise SourceError(f"{description} gave no frames after skipping {skip}")
    if len({im.shape for im in images}) > 1:
        raise SourceError(f"{description} changed its frame size while capturing")
    plate = median_image(images, max_frames=len(images))
    ok, png = cv2.imencode(".png", cv2.cvtColor(plate, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError("PNG encoding of the background failed")
    about = {
        "camera": camera,
        "width": int(plate.shape[1]),
        "height": int(plate.shape[0]),
        "frames": len(images),
        "source": description,
        "wall_time": time.time(),
    }
    store = store or ObjectStore(settings)
    store.put(layout.background_key(camera), png.tobytes(), "image/png")
    store.put(layout.background_key(camera, "json"), json.dumps(about, sort_keys=True).encode(), "application/json")
    return about


def list_backgrounds(settings: Settings, store: ObjectStore | None = None) -> list[dict]:
    """The stored backgrounds' descriptions, by camera."""
    store = store or ObjectStore(settings)
    out = []
    for key in sorted(store.list(layout.BACKGROUNDS_PREFIX)):
        if key.endswith(".json"):
            data = store.get(key)
            if data is not None:
                out.append(json.loads(data))
    return out


def delete_background(settings: Settings, camera: str, store: ObjectStore | None = None) -> bool:
    """Remove a camera's background (sessions then estimate their own); whether there was one."""
    store = store or ObjectStore(settings)
    existed = store.exists(layout.background_key(camera))
    store.delete(layout.background_key(camera))
    store.delete(layout.background_key(camera, "json"))
    return existed
