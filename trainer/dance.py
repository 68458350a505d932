"""The reference dance in the visitor's frame: the reference's poses normalized to the visitor's
(trainer.normalize), its part maps moved along with them for part representations, and the
reference dancer's own frames for the side-by-side video."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from infra.objectstore import ObjectStore
from infra.settings import Settings

log = logging.getLogger(__name__)


class ReferenceUnavailable(LookupError):
    """The session's reference dance is missing or unusable; permanent for that session."""


@dataclass
class Dance:
    name: str
    ref: object  # trainer.references.Reference
    poses: np.ndarray  # [T, 17, 3] normalized into the visitor's frame
    maps: object | None  # ReferenceMaps for part representations, else None (stick figures)
    note: str = ""  # how the placement fell short, when it did


def reference_name(settings: Settings, session: str, named: str | None, fallback: str | None = None) -> str:
    """The session's reference, else the configured default; ReferenceUnavailable when neither exists."""
    name = named or fallback or settings.default_reference
    if name is None:
        raise ReferenceUnavailable(
            f"session {session} names no reference dance and no default is configured (BOOTH_DEFAULT_REFERENCE)"
        )
    return name


def load_reference(store: ObjectStore, session: str, name: str, representation: str = "pose"):
    """The latest version of reference `name`, read through `store`, checked for what this session needs."""
    from dataset.representation import needs_parts
    from trainer.references import read_reference
    from trainer.references.store import PARTS_FILE

    try:
        ref = read_reference(store, name)
    except (FileNotFoundError, ValueError, KeyError) as exc:
        raise ReferenceUnavailable(f"session {session}: reference dance {name!r} cannot be loaded: {exc}") from exc
    if needs_parts(representation) and PARTS_FILE not in ref.meta.get("files", {}):
        raise ReferenceUnavailable(
            f"session {session} is in the {representation} representation but reference {name} "
            f"v{ref.version} has no part maps: add it with `booth reference add --representation parts`"
        )
    return ref


def build_dance(
    store: ObjectStore,
    ref,
    name: str,
    target_poses: np.ndarray,
    src_size: tuple[int, int],
    size: int,
    representation: str = "pose",
    max_frames: int | None = None,
) -> Dance:
    """The reference dance `ref` placed on the visitor (target_poses, in frames of src_size), with
    its part maps where the representation needs them (read through `store`); a visitor whose feet
    are never seen gets it placed by the body, said in its note."""
    from dataset.representation import needs_parts
    from trainer.normalize import fit_body_normalizer, fit_normalizer
    from trainer.references import read_reference_parts

    ref_poses = ref.poses[:max_frames] if max_frames else ref.poses
    note = ""
    try:
        normalizer = fit_normalizer(ref_poses, target_poses)
    except ValueError as exc:
        # A visitor whose feet (or head) are never seen: place the dance by the body alone.
        note = f"{exc}: the dance is placed and sized by the visitor's body, not by where they stand"
        log.warning("%s", note)
        normalizer = fit_body_normalizer(ref_poses, target_poses)  # type: ignore[assignment]
    poses = np.stack([normalizer.apply(p) for p in ref_poses])
    maps = None
    if needs_parts(representation):
        parts = read_reference_parts(store, ref)[: len(ref_poses)]
        maps = ReferenceMaps(representation, parts, ref_poses, ref.src_size, poses, src_size, size)
    return Dance(name, ref, poses, maps, note)


def reference_frames(store: ObjectStore, ref, n: int, tmp: Path) -> list | None:
    """The reference dancer's own frames (reference | pose map | result), if its video is stored."""
    from trainer.references.video import read_frames

    key = (ref.meta.get("source") or {}).get("key")
    data = store.get(key) if key else None
    if data is None:
        log.warning("reference %s has no stored source video: no side-by-side video", ref.name)
        return None
    path = tmp / ("source." + key.rsplit(".", 1)[-1])
    path.write_bytes(data)
    frames = [frame for frame, _t in read_frames(path)][:n]
    if len(frames) != n:
        log.warning("reference video has %d frames for %d poses: no side-by-side video", len(frames), n)
        return None
    return frames


class ReferenceMaps:
    """The reference's part maps, each moved along with its pose's normalization and drawn in the
    representation at the generator's size; built one at a time when indexed (a Sequence, for
    trainer.rendition.render_video's maps=).

    parts [T, h, w]: stored part ids (trainer.references; h, w may be smaller than the video);
    ref_poses [T, 17, 3] in the reference video's pixels (ref_size); poses: the same poses
    normalized into the visitor's frame of src_size.
    """

    def __init__(
        self,
        representation: str,
        parts: np.ndarray,
        ref_poses: np.ndarray,
        ref_size: tuple[int, int],
        poses: np.ndarray,
        src_size: tuple[int, int],
        out_size: int,
    ):
        if not len(parts) == len(ref_poses) == len(poses):
            raise ValueError(
                f"{len(parts)} part maps, {len(ref_poses)} reference poses, {len(poses)} poses: one of each per frame"
            )
        self.representation, self.parts, self.ref_poses, self.poses = representation, parts, ref_poses, poses
        self.src_size, self.out_size = (int(src_size[0]), int(src_size[1])), out_size
        h, w = parts.shape[1:]
        # Stored map pixels -> reference video pixels (continuous coordinates scale as they are).
        self._unscale = np.diag([ref_size[0] / w, ref_size[1] / h, 1.0])

    def __len__(self) -> int:
        return len(self.poses)

    def part_ids(self, i: int) -> np.ndarray:
        """Frame i's part ids in the visitor's frame (uint8 [H, W] of src_size)."""
        from vision.partsmap import pose_transform, warp_ids

        try:
            # normalize moves every keypoint by one scale and shift, confident or not: all of them
            # pin the transform down, even in frames where few are confident.
            m = pose_transform(self.ref_poses[i], self.poses[i], score_threshold=-np.inf)
        except ValueError:  # no two distinct keypoints: nobody in this reference frame
            return np.zeros((self.src_size[1], self.src_size[0]), np.uint8)
        return warp_ids(self.parts[i], m @ self._unscale, self.src_size)

    def __getitem__(self, i: int) -> np.ndarray:
        from vision.partsmap import render_representation

        return render_representation(
            self.representation,
            poses=self.poses[i],
            src_size=self.src_size,
            out_size=self.out_size,
            part_ids=self.part_ids(i),
        )
