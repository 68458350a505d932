"""How the generator sees a session: the whole frame, or a crop that follows the person.

* "whole": the camera frame letterboxed into the generator's square, pose map -> frame (pix2pix
  as the paper has it). The person covers a small share of the pixels; the rest, and most of the
  training, goes to a backdrop that never changes. Every representation works this way (part
  maps included); its output is un-letterboxed back to the camera's frame.
* "person": a square crop of one size per session and camera, following the smoothed body
  (vision.crop); the pose map is drawn in crop coordinates; the generator predicts the person
  and an alpha matte, supervised by the person mask, and is trained on the crop composited over
  the crop of the camera's background plate (trainer.plates). Frames are rebuilt by compositing
  the uncropped person onto the plate at the camera's own resolution and aspect. Pose maps only:
  part maps are drawn at the assembler's letterbox, not in crop coordinates.

Both yield camera-sized frames (uint8 [H, W, 3]) for a sequence of poses, so evaluation and the
rendition treat them alike; each also yields the input as a full-frame picture, for strips.
Training samples are built on demand (a crop costs a few milliseconds next to a training step,
and the whole session stays in memory once, as captured).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import cv2
import numpy as np

from trainer.lazy_samples import Lazy as _Lazy
from trainer.lazy_samples import batched as _batched
from trainer.lazy_samples import unit_mask as _unit
from trainer.training_set import TrainingSet
from vision.crop import CropTrack, composite, crop_image, pose_to_crop, uncrop_rgba
from vision.posemap import Letterbox, letterbox_image, render_pose_map, unletterbox  # noqa: F401

FRAMINGS = ("whole", "person")
DEFAULT_STYLES = {"whole": "stick", "person": "facing"}


class WholeFrame:
    """The whole frame, letterboxed into a `size` square."""

    name = "whole"

    def __init__(self, size: int, style: str, representation: str, sizes: dict[str, tuple[int, int]]):
        self.size, self.style, self.representation, self.sizes = size, style, representation, sizes

    def input_map(self, pose: np.ndarray, src_size: tuple[int, int], stored: np.ndarray | None = None) -> np.ndarray:
        """The generator's input: the pose drawn in this style, or the stored map of another
        representation (resized when it was stored at another size)."""
        if self.representation == "pose":
            return render_pose_map(pose, src_size, self.size, style=self.style)
        if stored is None:
            raise ValueError(f"the {self.representation!r} representation needs its stored maps")
        if stored.shape[:2] != (self.size, self.size):
            stored = cv2.resize(stored, (self.size, self.size), interpolation=cv2.INTER_NEAREST)
        return stored

    def training_samples(self, data: TrainingSet, idx: np.ndarray, masks: dict | None = None) -> Sequence:
        idx = np.asarray(idx)

        def make(j: int) -> tuple[np.ndarray, np.ndarray]:
            i = int(idx[j])
            return (
                self.input_map(data.poses[i], data.frame_size(i), data.maps[i]),
                letterbox_image(data.frames[i], self.size),
            )

        return _Lazy(len(idx), make)

    def frames(
        self, generator, poses: np.ndarray, camera: str, maps: Sequence[np.ndarray] | None = None, batch_size: int = 8
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(frame at the camera's size, the input map un-letterboxed) per pose."""
        from trainer.pix2pix.inference import generate_batches

        src = self.sizes[camera]
        for batch in _batched(len(poses), batch_size):
            inputs = np.stack([self.input_map(poses[i], src, None if maps is None else maps[i]) for i in batch])
            (fakes,) = list(generate_batches(generator, [inputs]))
            for m, f in zip(inputs, fakes):
                yield unletterbox(f, src), unletterbox(m, src)


def edge_window(size: int, feather: float = 0.04) -> np.ndarray:
    """float32 [size, size]: 1 inside, falling to 0 over the outer `feather` of each side."""
    ramp = np.clip((np.minimum(np.arange(size), size - 1 - np.arange(size)) + 0.5) / max(1.0, feather * size), 0, 1)
    return np.outer(ramp, ramp).astype(np.float32)


class PersonCentred:
    """A `crop_size` crop following the person, composited back onto each camera's plate."""

    name = "person"

    def __init__(self, crop_size: int, style: str, plates: dict[str, np.ndarray], sides: dict[str, float]):
        self.size, self.style, self.plates, self.sides = crop_size, style, plates, sides
        # The matte is faded out at the crop's edges, so a matte that has not learnt to be 0 there
        # never draws the crop's square onto the frame (the person stays inside: see vision.crop).
        self.window = edge_window(crop_size)

    def track(self, poses: np.ndarray, camera: str) -> CropTrack:
        return CropTrack.fit(poses, self.size, side=self.sides[camera])

    def input_map(self, pose: np.ndarray, a: np.ndarray) -> np.ndarray:
        return render_pose_map(pose_to_crop(pose, a), (self.size, self.size), self.size, style=self.style)

    def training_samples(self, data: TrainingSet, idx: np.ndarray, masks: dict | None = None) -> Sequence:
        """(map, frame, plate, mask) crops of the samples idx (each camera's in seq order: the
        crop's centre is smoothed along them); masks: index -> [H, W] float in 0..1 or uint8."""
        if masks is None:
            raise ValueError("person-centred samples need the person masks")
        idx = np.asarray(idx)
        affine: dict[int, np.ndarray] = {}
        for camera in sorted(set(data.cameras[idx].tolist())):
            mine = idx[data.cameras[idx] == camera]
            mine = mine[np.argsort(data.seqs[mine], kind="stable")]
            track = self.track(data.poses[mine], camera)
            for t, i in enumerate(mine):
                affine[int(i)] = track.affine(t)

        def make(j: int) -> tuple[np.ndarray, ...]:
            i = int(idx[j])
            a = affine[i]
            plate = self.plates[str(data.cameras[i])]
            return (
                self.input_map(data.poses[i], a),
                crop_image(data.frames[i], a, self.size),
                crop_image(plate, a, self.size),
                _unit(crop_image(masks[i], a, self.size, edge=False)),
            )

        return _Lazy(len(idx), make)

    def frames(
        self, generator, poses: np.ndarray, camera: str, maps: Sequence[np.ndarray] | None = None, batch_size: int = 8
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(the generated person composited onto the camera's plate, the full-frame pose map) per
        pose; the crop follows the poses (smoothed), at the session's crop size for that camera."""
        from trainer.pix2pix.inference import generate_layer_batches

        plate = self.plates[camera]
        size = plate.shape[1], plate.shape[0]
        track = self.track(poses, camera)
        for batch in _batched(len(poses), batch_size):
            affines = [track.affine(t) for t in batch]
            inputs = np.stack([self.input_map(poses[t], a) for t, a in zip(batch, affines)])
            ((rgb, alpha),) = list(generate_layer_batches(generator, [inputs]))
            for t, a, layer, matte in zip(batch, affines, rgb, alpha):
                person, al = uncrop_rgba(layer, matte * self.window, a, size)
                yield composite(plate, person, al), render_pose_map(poses[t], size, size, style=self.style)
