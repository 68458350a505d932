"""A session's dataset as the trainer uses it: every sample read from the store, and the split
into training and held-out frames."""

from __future__ import annotations

import logging
import tarfile
from collections import Counter
from dataclasses import dataclass

import numpy as np

from infra.objectstore import ObjectStore
from infra.settings import Settings
from vision.posemap import letterbox_image

log = logging.getLogger(__name__)


class DatasetError(ValueError):
    """The session's dataset cannot be trained on (missing, empty or corrupt); permanent."""


@dataclass
class TrainingSet:
    """frames letterboxed like their maps, the input maps, poses [N, 17, 3] in the captured frames'
    pixels, and that source size (the most common one if cameras differ)."""

    frames: np.ndarray
    maps: np.ndarray
    poses: np.ndarray
    src_size: tuple[int, int]

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def size(self) -> int:
        return int(self.maps.shape[1])


def load_training_set(
    settings: Settings, session: str, store: ObjectStore | None = None, expected: int | None = None
) -> TrainingSet:
    """Every sample of the session; `expected` (the manifest's count) must be met exactly: a shard
    that reads as fewer samples than were written is damaged, not a smaller dataset."""
    from trainer.assembler import iter_session_samples

    frames, maps, poses, sizes = [], [], [], Counter()
    try:
        for smp in iter_session_samples(settings, session, store=store):
            frames.append(letterbox_image(smp.frame, (smp.posemap.shape[1], smp.posemap.shape[0])))
            maps.append(smp.posemap)
            poses.append(smp.pose)
            sizes[smp.src_size] += 1
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
    if len(sizes) > 1:
        log.warning(
            "session %s: frames of several sizes %s; rendering for %s",
            session,
            sorted(sizes),
            sizes.most_common(1)[0][0],
        )
    return TrainingSet(np.stack(frames), np.stack(maps), np.stack(poses), sizes.most_common(1)[0][0])


def holdout_mask(n: int, every: int) -> np.ndarray:
    """Every `every`-th sample is held out for evaluation (none when that leaves nothing to train)."""
    held = np.arange(n) % every == every - 1
    if held.all() or n < 2:
        held[:] = False
    return held
