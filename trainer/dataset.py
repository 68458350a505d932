"""A session's dataset as the trainer uses it: every sample read from the store, and the split into
training and held-out frames.

Held-out frames are a contiguous block at the end of each camera's sequence, separated from the
camera's training frames by a gap, so no held-out frame has a trained-on neighbour a thirtieth of
a second away: the figures measure poses the model never saw, which is what the reference dance
asks of it. (Every n-th frame, as before, let each held-out frame be nearly a copy of its
neighbours and reported a quality the video never had.)
"""

from __future__ import annotations

import logging
import tarfile
from collections import Counter
from dataclasses import dataclass

import numpy as np

from infra.objectstore import ObjectStore
from infra.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_HOLDOUT_FRACTION = 0.15
DEFAULT_HOLDOUT_GAP = 15  # frames: half a second at 30 fps
MIN_TRAIN = 8  # frames per camera that always stay for training
MIN_HELD_OUT = 2  # fewer are not worth holding out (flicker needs two)


class DatasetError(ValueError):
    """The session's dataset cannot be trained on (missing, empty or corrupt); permanent."""


@dataclass
class TrainingSet:
    """Every sample of a session, in camera then seq order.

    frames: uint8 RGB as captured (each camera's own size); maps: the stored input maps
    [N, R, R, 3] (the manifest's representation, letterboxed like vision.posemap); poses
    [N, 17, 3] in the captured frames' pixels; cameras and seqs [N]."""

    frames: list[np.ndarray]
    maps: np.ndarray
    poses: np.ndarray
    cameras: np.ndarray
    seqs: np.ndarray
    # Every drawn person per sample ([P, 17, 3]) and their slots ([P]): trainer.people.
    people: list[np.ndarray] | None = None
    slots: list[np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def size(self) -> int:
        """The stored maps' side (the assembler's resolution)."""
        return int(self.maps.shape[1])

    def frame_size(self, i: int) -> tuple[int, int]:
        h, w = self.frames[i].shape[:2]
        return int(w), int(h)

    def camera_names(self) -> list[str]:
        return sorted(set(self.cameras.tolist()))

    def camera_size(self, camera: str) -> tuple[int, int]:
        """The camera's frame size (the most common one, should it have changed mid-session)."""
        sizes = Counter(self.frame_size(i) for i in np.flatnonzero(self.cameras == camera))
        if not sizes:
            raise KeyError(f"no samples of camera {camera}")
        return sizes.most_common(1)[0][0]

    def main_camera(self) -> str:
        """The camera the rendition is rendered for: the one with the most samples (ties: by name)."""
        counts = Counter(self.cameras.tolist())
        return min(counts, key=lambda c: (-counts[c], c))

    @property
    def src_size(self) -> tuple[int, int]:
        return self.camera_size(self.main_camera())


def load_training_set(
    settings: Settings, session: str, store: ObjectStore | None = None, expected: int | None = None
) -> TrainingSet:
    """Every sample of the session; `expected` (the manifest's count) must be met exactly: a shard
    that reads as fewer samples than were written is damaged, not a smaller dataset."""
    from trainer.assembler import iter_session_samples

    frames, maps, poses, cameras, seqs, people, slots = [], [], [], [], [], [], []
    try:
        for smp in iter_session_samples(settings, session, store=store):
            people.append(smp.people)
            slots.append(smp.slots)
            frames.append(smp.frame)
            maps.append(smp.posemap)
            poses.append(smp.pose)
            cameras.append(smp.camera)
            seqs.append(smp.seq)
    except (FileNotFoundError, ValueError, KeyError, OSError, EOFError, tarfile.TarError) as exc:
        # A shard that does not decode, a listed shard that is gone, a sample missing a member:
        # training again will not change it.
        raise DatasetError(f"session {session}: the dataset cannot be read: {type(exc).__name__}: {exc}") from exc
    if not frames:
        raise DatasetError(f"session {session} has no samples")
    if expected is not None and len(frames) != expected:
        raise DatasetError(
            f"session {session}: the dataset cannot be read whole: its manifest lists {expected} "
            f"samples, its shards hold {len(frames)}"
        )
    order = sorted(range(len(frames)), key=lambda i: (cameras[i], seqs[i]))
    data = TrainingSet(
        [frames[i] for i in order],
        np.stack([maps[i] for i in order]),
        np.stack([poses[i] for i in order]),
        np.array([cameras[i] for i in order]),
        np.array([seqs[i] for i in order], np.int64),
        [people[i] for i in order],
        [slots[i] for i in order],
    )
    for camera in data.camera_names():
        sizes = {data.frame_size(i) for i in np.flatnonzero(data.cameras == camera)}
        if len(sizes) > 1:
            log.warning("session %s camera %s: frames of several sizes %s", session, camera, sorted(sizes))
    return data


@dataclass(frozen=True)
class Split:
    """train / test: bool masks over the samples; gap: frames left out between them (the smallest
    over the cameras); note: why the held-out block is smaller than asked, if it is."""

    train: np.ndarray
    test: np.ndarray
    gap: int
    note: str = ""


def holdout_split(
    cameras: np.ndarray,
    seqs: np.ndarray,
    fraction: float = DEFAULT_HOLDOUT_FRACTION,
    gap: int = DEFAULT_HOLDOUT_GAP,
    min_train: int = MIN_TRAIN,
) -> Split:
    """Per camera, in seq order: the last `fraction` of the frames held out (at least two), the
    `gap` frames before them used for neither, the rest for training. Small sessions keep
    `min_train` training frames per camera: the gap shrinks first, then the held-out block; a
    camera with fewer than min_train + 2 frames holds nothing out."""
    if not 0 < fraction < 1:
        raise ValueError(f"the held-out fraction must be between 0 and 1, got {fraction}")
    if gap < 0 or min_train < 1:
        raise ValueError(f"gap must be >= 0 and min_train >= 1, got {gap} and {min_train}")
    cameras, seqs = np.asarray(cameras), np.asarray(seqs)
    train = np.zeros(len(cameras), bool)
    test = np.zeros(len(cameras), bool)
    gaps, notes = [], []
    for camera in sorted(set(cameras.tolist())):
        idx = np.flatnonzero(cameras == camera)
        idx = idx[np.argsort(seqs[idx], kind="stable")]
        n = len(idx)
        if n < min_train + MIN_HELD_OUT:
            train[idx] = True
            notes.append(f"camera {camera} has {n} frames: none held out")
            continue
        n_test = int(min(max(round(fraction * n), MIN_HELD_OUT), n - min_train))
        n_gap = int(min(gap, n - n_test - min_train))
        if n_gap < gap:
            notes.append(f"camera {camera} has {n} frames: a gap of {n_gap} frames, not {gap}")
        train[idx[: n - n_test - n_gap]] = True
        test[idx[n - n_test :]] = True
        gaps.append(n_gap)
    return Split(train, test, min(gaps) if gaps else 0, "; ".join(notes))
