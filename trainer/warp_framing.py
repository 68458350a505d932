"""Warp-conditioned generation: the person-centred generator reads, besides the pose map, the
visitor's own pixels moved part by part to the pose (vision.warp) and their matte, so it corrects
and completes real appearance instead of painting it from a stick figure.

    framing = WarpConditioned.from_person(person_framing, data, train, masks)

Input, per sample, in the crop (trainer.framing.PersonCentred): 7 channels, uint8 -
the pose map (3), the warped source view (3, straight colour, black where it is absent) and its
matte (1, x255). The generator (NetConfig.residual = 3) predicts a correction of the warped view
and matte, so before any training it renders the one-shot frame (trainer.oneshot), and training
spends its steps on what the warp gets wrong: seams, folds, parts never seen.

Sources: a pool of the best views among each camera's TRAINING frames (vision.warp.select_views).
A training target is warped from the pool view nearest its pose that is at least GAP frames away
from it (never its own neighbours: the generator must learn to fix imperfect warps, not to copy);
other pool views fill the parts that one lacks. Held-out and dance poses use the whole pool, so
no held-out frame ever serves as a source.

Conditioning "warp-reliable" (ReliableWarp): 10 channels, the 7 above and three maps of where the
warp is unreliable (trainer.warp_reliability: parts no view showed, bones far from their source's,
a facing the source does not have), x255, so the network can learn to overrule the warp there and
follow the pose map. The generator's first guess is still the warped view (RESIDUAL).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from dataset.manifest import CONDITIONINGS  # noqa: F401 - the names, as the manifest records them
from trainer.framing import PersonCentred
from trainer.lazy_samples import Lazy as _Lazy
from trainer.lazy_samples import batched as _batched
from trainer.lazy_samples import unit_mask as _unit
from trainer.training_set import TrainingSet
from vision.crop import composite, crop_image, uncrop_rgba
from vision.posemap import render_pose_map
from vision.warp import PartWarper, SourceView, pose_distance, select_views

# Default: warp (docs/generation.md, "Warp-conditioned generation": ahead on every held-out figure, pose error
# about half). Not combined with the temporal option: a session asked for that reads the pose map.
DEFAULT_CONDITIONING = "warp"


def chosen_conditioning(asked: str | None, temporal: bool = False) -> str:
    """What a session's generator reads: what was asked (trainer option, else the manifest), else the
    default, unless the temporal option was asked, which only the pose map combines with."""
    return asked or ("pose" if temporal else DEFAULT_CONDITIONING)


CHANNELS = 7
RELIABLE_CHANNELS = 10  # + unseen, far, facing (trainer.warp_reliability)
RESIDUAL = 3  # the warped view and its matte: the generator's first guess (NetConfig.residual)
POOL = 6  # source views per camera
GAP = 8  # frames between a training target and its source


class WarpConditioned(PersonCentred):
    """PersonCentred whose generator input is the pose map + the warped source view + its matte."""

    conditioning = "warp"
    channels = CHANNELS
    residual = RESIDUAL
    reliability = False  # ReliableWarp: also the maps of where the warp is unreliable

    def __init__(
        self,
        crop_size: int,
        style: str,
        plates: dict[str, np.ndarray],
        sides: dict[str, float],
        views: dict[str, list[tuple[int, SourceView]]],
    ):
        super().__init__(crop_size, style, plates, sides)
        missing = [c for c in plates if not views.get(c)]
        if missing:
            raise ValueError(f"no source view of the person for camera(s) {', '.join(missing)}")
        self.views = views  # camera -> [(seq, view)], best first

    @classmethod
    def from_person(
        cls, base: PersonCentred, data: TrainingSet, train: np.ndarray, masks: dict, pool: int = POOL
    ) -> WarpConditioned:
        """The same crop, style and plates as `base`, with each camera's pool of source views
        chosen among its training frames (masks: index -> person mask, as the trainer has them)."""
        views: dict[str, list[tuple[int, SourceView]]] = {}
        for camera in base.plates:
            size = data.camera_size(camera)
            idx = [int(i) for i in np.flatnonzero(train & (data.cameras == camera)) if data.frame_size(int(i)) == size]
            areas = [float(_unit(masks[i]).sum()) for i in idx]
            chosen = [idx[j] for j in select_views(data.poses[idx], areas, size, k=pool, spacing=GAP)]
            views[camera] = [
                (int(data.seqs[i]), SourceView.build(data.frames[i], masks[i], data.poses[i])) for i in chosen
            ]
        return cls(base.size, base.style, base.plates, base.sides, views)

    def warper(self, pose: np.ndarray, camera: str, seq: int | None = None) -> PartWarper:
        """The pool's views, nearest the pose first, those within GAP frames of `seq` left out
        (unless nothing else is left)."""
        pool = self.views[camera]
        allowed = [(s, v) for s, v in pool if seq is None or abs(s - seq) >= GAP] or pool
        ranked = sorted(allowed, key=lambda sv: pose_distance(sv[1].pose, pose))
        return PartWarper([v for _s, v in ranked])

    def warp_input(self, pose: np.ndarray, a: np.ndarray, camera: str, seq: int | None = None) -> np.ndarray:
        """uint8 [S, S, channels]: pose map, warped source view, its matte (and with reliability,
        the unseen, far and facing maps)."""
        plate = self.plates[camera]
        size = (plate.shape[1], plate.shape[0])
        warper = self.warper(pose, camera, seq)
        rgb, alpha, _missing = warper.warp(pose, size)
        warped = crop_image(rgb, a, self.size, edge=False)
        matte = crop_image(alpha, a, self.size, edge=False)
        # Straight (not premultiplied) colour: with its matte over the plate it is the one-shot
        # frame, the first guess a residual generator (NetConfig.residual) starts from.
        warped = np.where(matte[..., None] > 1e-3, warped / np.maximum(matte, 1e-3)[..., None], 0.0)
        layers = [
            self.input_map(pose, a),
            np.clip(np.round(warped), 0, 255).astype(np.uint8),
            np.clip(np.round(matte * 255), 0, 255).astype(np.uint8),
        ]
        if self.reliability:
            from trainer.warp_reliability import reliability_maps

            maps = crop_image(reliability_maps(warper, pose, size), a, self.size, edge=False)
            layers.append(np.clip(np.round(maps * 255), 0, 255).astype(np.uint8))
        return np.dstack(layers)

    def training_samples(self, data: TrainingSet, idx: np.ndarray, masks: dict | None = None) -> Sequence:
        """(input, frame, plate, mask) crops as PersonCentred's, the input warped from a pool view
        at least GAP frames from the target."""
        base = super().training_samples(data, idx, masks)
        idx = np.asarray(idx)
        affine: dict[int, np.ndarray] = {}  # the crops PersonCentred takes: the same track per camera
        for camera in sorted(set(data.cameras[idx].tolist())):
            mine = idx[data.cameras[idx] == camera]
            mine = mine[np.argsort(data.seqs[mine], kind="stable")]
            track = self.track(data.poses[mine], camera)
            for t, i in enumerate(mine):
                affine[int(i)] = track.affine(t)

        # A target's input is always warped from the same view (the nearest allowed one), so it is
        # warped once: a warp at the camera's resolution costs about 12 ms (768x576), ten times the
        # rest of a sample, which on a GPU would outlast the step itself.
        warped_inputs: dict[int, np.ndarray] = {}

        def make(j: int) -> tuple[np.ndarray, ...]:
            i = int(idx[j])
            _map, frame, plate, mask = base[j]
            if j not in warped_inputs:
                warped_inputs[j] = self.warp_input(data.poses[i], affine[i], str(data.cameras[i]), int(data.seqs[i]))
            return warped_inputs[j], frame, plate, mask

        return _Lazy(len(idx), make)

    def frames(
        self, generator, poses: np.ndarray, camera: str, maps: Sequence[np.ndarray] | None = None, batch_size: int = 8
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """As PersonCentred.frames, the input warped from the whole pool (training frames only)."""
        from trainer.pix2pix.inference import generate_layer_batches

        plate = self.plates[camera]
        size = plate.shape[1], plate.shape[0]
        track = self.track(poses, camera)
        for batch in _batched(len(poses), batch_size):
            affines = [track.affine(t) for t in batch]
            inputs = np.stack([self.warp_input(poses[t], a, camera) for t, a in zip(batch, affines)])
            ((rgb, alpha),) = list(generate_layer_batches(generator, [inputs]))
            for t, a, layer, matte in zip(batch, affines, rgb, alpha):
                person, al = uncrop_rgba(layer, matte * self.window, a, size)
                yield composite(plate, person, al), render_pose_map(poses[t], size, size, style=self.style)


class ReliableWarp(WarpConditioned):
    """WarpConditioned whose input also says where the warp is unreliable (10 channels)."""

    conditioning = "warp-reliable"
    channels = RELIABLE_CHANNELS
    reliability = True


def warp_framing(conditioning: str) -> type[WarpConditioned]:
    """The framing class of a warp conditioning ("warp" or "warp-reliable")."""
    if conditioning == "warp":
        return WarpConditioned
    if conditioning == "warp-reliable":
        return ReliableWarp
    raise ValueError(f"{conditioning!r} is not a warp conditioning")
