"""Person-centred framing with Everybody Dance Now's two additions: temporal coherence and a face
residual (trainer.pix2pix.sequence trains them; trainer.pix2pix.face has the face box).

* temporal: the generator reads [map t, map t-1, frame t-1], all in frame t's crop (the previous
  frame cropped where the current crop is, so the two line up in the camera's space; the previous
  pose drawn there too). Training samples are pairs of consecutive frames of one camera (its first
  frame has no previous and is left out as the second of a pair; it is trained as the first of
  the next). Rendering is sequential: the previous frame is the last generated one, composited
  over the plate at the camera's size, and the first frame of a video has a blank previous.
* face: the face box's origin goes with each sample; when rendering, a generator that carries a
  face generator (trainer.pix2pix.face.FaceRefined) adds its residual to the person layer there
  before the layer is composited.

Without either option this is trainer.framing.PersonCentred.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from trainer.framing import PersonCentred
from trainer.lazy_samples import Lazy as _Lazy
from trainer.lazy_samples import unit_mask as _unit
from trainer.pix2pix import face as facemod
from trainer.pix2pix.data import to_tensor, to_uint8
from trainer.pix2pix.networks import split_matte
from trainer.pix2pix.sequence import in_channels
from trainer.training_set import TrainingSet
from vision.crop import composite, crop_image, pose_to_crop, uncrop_rgba
from vision.posemap import render_pose_map

NO_MASK = np.zeros((0, 0), np.float32)


class CoherentPersonCentred(PersonCentred):
    """PersonCentred with the temporal and face options (see the module docstring)."""

    def __init__(
        self,
        crop_size: int,
        style: str,
        plates: dict[str, np.ndarray],
        sides: dict[str, float],
        *,
        temporal: bool = False,
        face: bool = False,
    ):
        super().__init__(crop_size, style, plates, sides)
        self.temporal, self.face = temporal, face
        if face:
            facemod.face_side(crop_size)  # a clear error now for a crop too small for a face box
        self.in_channels = in_channels(temporal)
        self.sequential = True  # False: a temporal model run frame by frame, each from a blank previous

    def frame_by_frame(self) -> CoherentPersonCentred:
        """This framing rendering a temporal model without its previous frames (each frame as the
        first of a video): the same weights without temporal coherence, for comparisons."""
        other = copy.copy(self)
        other.sequential = False
        return other

    def face_side_px(self, camera: str) -> float:
        """The face box's side in the camera's pixels (where the face figures are measured)."""
        return self.sides[camera] * facemod.FACE_FRACTION

    def inputs(self, pose: np.ndarray, a: np.ndarray, prev_pose=None, prev_frame=None) -> np.ndarray:
        """The generator's input under the crop affine a: the map, and for temporal the previous
        pose's map and the previous frame (camera-sized) in the same crop, blank without them."""
        m = self.input_map(pose, a)
        if not self.temporal:
            return m
        if prev_pose is None or prev_frame is None:
            return np.concatenate([m, np.zeros((self.size, self.size, 6), np.uint8)], axis=2)
        return np.concatenate([m, self.input_map(prev_pose, a), crop_image(prev_frame, a, self.size)], axis=2)

    def training_samples(self, data: TrainingSet, idx: np.ndarray, masks: dict | None = None) -> Sequence:
        """(inputs, frame, plate, mask, previous mask, face origin) crops (trainer.pix2pix.sequence);
        for temporal, one per sample of idx that has a previous one in idx (its camera's seq order).
        Without either option, PersonCentred's samples (for trainer.pix2pix.train.Trainer)."""
        if not (self.temporal or self.face):
            return super().training_samples(data, idx, masks)  # the plain trainer's samples
        if masks is None:
            raise ValueError("person-centred samples need the person masks")
        idx = np.asarray(idx)
        affine: dict[int, np.ndarray] = {}
        previous: dict[int, int] = {}
        for camera in sorted(set(data.cameras[idx].tolist())):
            mine = idx[data.cameras[idx] == camera]
            mine = mine[np.argsort(data.seqs[mine], kind="stable")]
            track = self.track(data.poses[mine], camera)
            for t, i in enumerate(mine):
                affine[int(i)] = track.affine(t)
                if t > 0:
                    previous[int(i)] = int(mine[t - 1])
        chosen = [int(i) for i in idx if not self.temporal or int(i) in previous]
        if not chosen:
            raise ValueError("temporal training needs at least two consecutive frames of one camera")

        def make(j: int) -> tuple:
            i = chosen[j]
            a = affine[i]
            plate = self.plates[str(data.cameras[i])]
            prev = previous.get(i) if self.temporal else None
            pose_in_crop = pose_to_crop(data.poses[i], a)
            origin = facemod.crop_face_origin(pose_in_crop, self.size) if self.face else facemod.NO_BOX
            return (
                self.inputs(data.poses[i], a, *((data.poses[prev], data.frames[prev]) if prev is not None else ())),
                crop_image(data.frames[i], a, self.size),
                crop_image(plate, a, self.size),
                _unit(crop_image(masks[i], a, self.size, edge=False)),
                _unit(crop_image(masks[prev], a, self.size, edge=False)) if prev is not None else NO_MASK,
                np.array(origin, np.int32),
            )

        return _Lazy(len(chosen), make)

    def frames(
        self, generator, poses: np.ndarray, camera: str, maps: Sequence[np.ndarray] | None = None, batch_size: int = 8
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(frame, full-frame pose map) per pose, as PersonCentred; temporal models are run one
        frame after the other, each continuing the last generated frame."""
        if not self.temporal and getattr(generator, "face", None) is None:
            yield from super().frames(generator, poses, camera, maps, batch_size)
            return
        plate = self.plates[camera]
        size = plate.shape[1], plate.shape[0]
        track = self.track(poses, camera)
        face_g = getattr(generator, "face", None)
        device = next(generator.parameters()).device
        sequential = self.temporal and self.sequential
        step = 1 if sequential else batch_size
        was_training = generator.training
        generator.eval()
        prev_pose = prev_frame = None
        try:
            for start in range(0, len(poses), step):
                batch = range(start, min(len(poses), start + step))
                affines = [track.affine(t) for t in batch]
                inputs = np.stack([self.inputs(poses[t], a, prev_pose, prev_frame) for t, a in zip(batch, affines)])
                with torch.inference_mode():
                    x = to_tensor(inputs, device)
                    image, alpha = split_matte(generator(x))
                    if face_g is not None:
                        origins = [
                            facemod.crop_face_origin(pose_to_crop(poses[t], a), self.size)
                            for t, a in zip(batch, affines)
                        ]
                        image = facemod.refine(face_g, x[:, :3], image, origins)
                    layers, mattes = to_uint8(image), alpha[:, 0].float().clamp(0, 1).cpu().numpy()
                for t, a, layer, matte in zip(batch, affines, layers, mattes):
                    person, al = uncrop_rgba(layer, matte * self.window, a, size)
                    frame = composite(plate, person, al)
                    if sequential:
                        prev_pose, prev_frame = poses[t], frame
                    yield frame, render_pose_map(poses[t], size, size, style=self.style)
        finally:
            generator.train(was_training)
