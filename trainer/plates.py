"""Background plates per camera per session, and the person masks they are estimated with.

A camera's plate comes from, in order:
1. the booth's empty background for that camera (`booth background capture`, stored at
   schemas.layout.background_key), when one is stored at the size of the session's frames;
2. the session's own training frames: the per-pixel median where the person is absent
   (vision.plate), with person masks from BlazePose run where the pose is, or drawn from the pose
   when BlazePose is unavailable (vision.personmask).
Held-out frames never contribute, so evaluation stays on pixels the model never saw. The plate
used is stored with the session's dataset (layout.plate_key), with a description beside it.

One `SessionPlates` per session (the trainer's load phase makes it, beside the session's
`PersonMasks`) looks at each source once: the one-shot video's quick plate (`quick`: the plate
an earlier attempt stored, else the booth's background, else `session_plate` from a spread of
frames) and the framing's plates (`estimated`, from every training frame) read the booth's
background of a camera once between them.

Bad input never stops a session here: a person who never leaves a spot leaves a hole in the plate
(filled by inpainting), a person cut off by the frame's edge still yields a plate; each such case
is reported in `warnings`, which the trainer shows in its progress and keeps in metrics.json.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

from infra.objectstore import ObjectStore
from schemas import layout
from trainer.training_set import TrainingSet
from vision.personmask import PersonMasker
from vision.plate import DEFAULT_MAX_FRAMES, Plate, estimate_plate, spread

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


def session_plate(
    data: TrainingSet, camera: str, train: np.ndarray, mask_of: Callable[[int], np.ndarray]
) -> np.ndarray:
    """The camera's background estimated at once from a spread of its training frames (vision.plate):
    the one-shot video's plate where none is stored."""
    size = data.camera_size(camera)
    idx = [int(i) for i in np.flatnonzero((data.cameras == camera) & train) if data.frame_size(int(i)) == size]
    if not idx:
        idx = [int(i) for i in np.flatnonzero(data.cameras == camera) if data.frame_size(int(i)) == size]
    picks = [idx[j] for j in spread(len(idx), DEFAULT_MAX_FRAMES // 2)]
    return estimate_plate([data.frames[i] for i in picks], [mask_of(i) for i in picks]).image


class SessionPlates:
    """The background plates of one session's cameras (the module doc), each source looked at once:
    the booth's background of a camera is read once for the one-shot video and the framing both.
    masks: the session's PersonMasks, which the plates are estimated with."""

    def __init__(self, store: ObjectStore, session: str, data: TrainingSet, masks: PersonMasks):
        self.store, self.session, self.data, self.masks = store, session, data, masks
        self._backgrounds: dict[tuple[str, tuple[int, int]], tuple[np.ndarray | None, str]] = {}

    def background(self, camera: str, size: tuple[int, int]) -> tuple[np.ndarray | None, str]:
        """stored_background of the camera, read from the store the first time only."""
        key = camera, tuple(size)
        if key not in self._backgrounds:
            self._backgrounds[key] = stored_background(self.store, camera, size)
        return self._backgrounds[key]

    def quick(self, camera: str, train: np.ndarray) -> np.ndarray:
        """The one-shot video's plate, without waiting for every mask: the plate stored with the
        session (an earlier attempt's), else the booth's background, when either is at the camera's
        size; else session_plate (a spread of the training frames `train`)."""
        size = self.data.camera_size(camera)
        data = self.store.get(layout.plate_key(self.session, camera))
        image = decode_png(data) if data is not None else None
        if image is not None and (image.shape[1], image.shape[0]) == tuple(size):
            return image
        background, _why = self.background(camera, size)
        if background is not None:
            return background
        return session_plate(self.data, camera, train, self.masks.of)

    def estimated(
        self, train: np.ndarray, warnings: list[str], sizes: dict[str, tuple[int, int]] | None = None
    ) -> dict[str, CameraPlate]:
        """The plate of every camera (the module doc), each stored with the dataset: the booth's
        background, else estimated from the training samples `train` with their person masks (made
        already: the framing makes them first). warnings gets what a person should know; sizes:
        each camera's frame size, where the caller has them already (TrainingSet.camera_size)."""
        data, masks = self.data, self.masks.made
        sizes = sizes or {c: data.camera_size(c) for c in data.camera_names()}
        out: dict[str, CameraPlate] = {}
        for camera in data.camera_names():
            size = sizes[camera]
            background, why = self.background(camera, size)
            if why:
                warnings.append(why)
            if background is not None:
                plate = Plate(background, np.ones(background.shape[:2], np.float32), 0)
                cp = CameraPlate(camera, plate, "background", {"key": layout.background_key(camera)})
            else:
                idx = [i for i in np.flatnonzero((data.cameras == camera) & train) if data.frame_size(i) == size]
                plate = estimate_plate([data.frames[i] for i in idx], [masks[i] for i in idx])
                info = {"mask_source": self.masks.masker.name, "frames": plate.frames}
                cp = CameraPlate(camera, plate, "session", info)
                if plate.filled > FILLED_WARNING:
                    warnings.append(
                        f"camera {camera}: the person covered {plate.filled:.0%} of the frame in every training "
                        "frame; the plate there is filled in from around it (capture the empty booth with "
                        "`booth background capture` for a true one)"
                    )
            cp.info.update(source=cp.source, width=size[0], height=size[1], filled=round(plate.filled, 4))
            self._store(camera, plate.image, cp.info)
            out[camera] = cp
        return out

    def _store(self, camera: str, image: np.ndarray, info: dict) -> None:
        self.store.put(layout.plate_key(self.session, camera), png(image), "image/png")
        info_json = json.dumps(info, sort_keys=True).encode()
        self.store.put(layout.plate_key(self.session, camera, "json"), info_json, "application/json")
