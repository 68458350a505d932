"""Background plates per camera per session, and the person masks they are estimated with.

A camera's plate comes from, in order:
1. the booth's empty background for that camera (`booth background capture`, stored at
   schemas.layout.background_key), when one is stored at the size of the session's frames;
2. the session's own training frames: the per-pixel median where the person is absent
   (vision.plate), with person masks from BlazePose run where the pose is, or drawn from the pose
   when BlazePose is unavailable (vision.personmask).
Held-out frames never contribute, so evaluation stays on pixels the model never saw. The plate
used is stored with the session's dataset (layout.plate_key), with a description beside it.

Bad input never stops a session here: a person who never leaves a spot leaves a hole in the plate
(filled by inpainting), a person cut off by the frame's edge still yields a plate; each such case
is reported in `warnings`, which the trainer shows in its progress and keeps in metrics.json.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

import cv2
import numpy as np

from infra.objectstore import ObjectStore
from schemas import layout
from trainer.training_set import TrainingSet
from vision.personmask import PersonMasker
from vision.plate import Plate, estimate_plate

log = logging.getLogger(__name__)

FILLED_WARNING = 0.01  # warn when more of the frame than this was never seen free


@dataclass
class CameraPlate:
    camera: str
    plate: Plate
    source: str  # "background" (the booth's, captured empty) or "session" (estimated)
    info: dict = field(default_factory=dict)


class PersonMasks:
    """The person masks of a session's samples (index -> uint8, 255 = person: a quarter of float32's
    memory), made on demand by one masker (vision.personmask, loaded at the first mask) and kept:
    the one-shot video asks for a dozen, the framing for the rest, and BlazePose loads once.
    `of(i)` gives sample i's mask."""

    def __init__(self, data: TrainingSet, kind: str = "auto", models_dir=None):
        self.data, self.kind, self.models_dir = data, kind, models_dir
        self.made: dict[int, np.ndarray] = {}
        self._masker: PersonMasker | None = None

    @property
    def masker(self) -> PersonMasker:
        if self._masker is None:
            self._masker = PersonMasker(self.kind, self.models_dir)
        return self._masker

    def of(self, i: int) -> np.ndarray:
        """Sample i's mask, made now if it was not yet."""
        i = int(i)
        if i not in self.made:
            self.made[i] = np.round(self.masker.mask(self.data.frames[i], self.data.poses[i]) * 255).astype(np.uint8)
        return self.made[i]


def png(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError("PNG encoding of a plate failed")
    return buf.tobytes()


def decode_png(data: bytes) -> np.ndarray | None:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return None if image is None else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def stored_background(store: ObjectStore, camera: str, size: tuple[int, int]) -> tuple[np.ndarray | None, str]:
    """(the booth's background of a camera, "") or (None, why not) when none fits frames of `size`."""
    data = store.get(layout.background_key(camera))
    if data is None:
        return None, ""
    image = decode_png(data)
    if image is None:
        return None, f"the stored background of camera {camera} does not decode"
    if (image.shape[1], image.shape[0]) != tuple(size):
        return None, (
            f"the stored background of camera {camera} is {image.shape[1]}x{image.shape[0]} but the session's "
            f"frames are {size[0]}x{size[1]}: estimated from the session instead"
        )
    return image, ""


def camera_plates(
    store: ObjectStore,
    session: str,
    data: TrainingSet,
    train: np.ndarray,
    masks: dict[int, np.ndarray],
    mask_source: str,
    warnings: list[str],
    sizes: dict[str, tuple[int, int]] | None = None,
) -> dict[str, CameraPlate]:
    """The plate of every camera (see the module docstring), stored with the dataset. masks: person
    masks of the training samples (index -> float [H, W]); warnings gets what a person should know;
    sizes: each camera's frame size, where the caller has them already (TrainingSet.camera_size)."""
    sizes = sizes or {c: data.camera_size(c) for c in data.camera_names()}
    out: dict[str, CameraPlate] = {}
    for camera in data.camera_names():
        size = sizes[camera]
        idx = [i for i in np.flatnonzero((data.cameras == camera) & train) if data.frame_size(i) == size]
        background, why = stored_background(store, camera, size)
        if why:
            warnings.append(why)
        if background is not None:
            plate = Plate(background, np.ones(background.shape[:2], np.float32), 0)
            cp = CameraPlate(camera, plate, "background", {"key": layout.background_key(camera)})
        else:
            plate = estimate_plate([data.frames[i] for i in idx], [masks[i] for i in idx])
            cp = CameraPlate(camera, plate, "session", {"mask_source": mask_source, "frames": plate.frames})
            if plate.filled > FILLED_WARNING:
                warnings.append(
                    f"camera {camera}: the person covered {plate.filled:.0%} of the frame in every training frame; "
                    "the plate there is filled in from around it (capture the empty booth with "
                    "`booth background capture` for a true one)"
                )
        cp.info.update(source=cp.source, width=size[0], height=size[1], filled=round(plate.filled, 4))
        store.put(layout.plate_key(session, camera), png(plate.image), "image/png")
        store.put(
            layout.plate_key(session, camera, "json"), json.dumps(cp.info, sort_keys=True).encode(), "application/json"
        )
        out[camera] = cp
    return out
