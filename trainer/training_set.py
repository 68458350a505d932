"""The trainer's training set: a session's dataset (the dataset package) with every sample read
from the store, and the split into training and held-out frames.

Held-out frames are the ones whose poses are farthest from the rest of the session ("novel", the
default where the poses are given: `novel_split`): a few stretches of each camera's sequence,
each separated from the training frames by a gap, so no held-out frame has a trained-on
neighbour a thirtieth of a second away, and its pose is one the model saw least like, which is
what the reference dance asks of it. The block at the end of the sequence ("tail", as before)
held out poses the generator had trained beside (the last seconds of a similar motion) and
reported a quality the dance never had. (Every n-th frame, earlier still, let each held-out
frame be nearly a copy of its neighbours.)
"""

from __future__ import annotations

import logging
import tarfile
import warnings
from collections import Counter
from dataclasses import dataclass

import numpy as np

from infra.objectstore import ObjectStore
from infra.settings import Settings
from trainer.coverage import nearest_covers

log = logging.getLogger(__name__)

DEFAULT_HOLDOUT_FRACTION = 0.15
DEFAULT_HOLDOUT_GAP = 15  # frames: half a second at 30 fps
SPLITS = ("novel", "tail")
DEFAULT_SPLIT = "novel"
NOVEL_STRETCHES = 3  # the pose-novel held-out frames come in this many stretches (each with its gaps)
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
    # Every drawn person per sample ([P, 17, 3]) and their slots ([P]): dataset.people.
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
    from dataset import iter_session_samples

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
    poses: np.ndarray | None = None,
    dance: np.ndarray | None = None,
) -> Split:
    """Per camera, in seq order: the last `fraction` of the frames held out (at least two), the
    `gap` frames before them used for neither, the rest for training. Small sessions keep
    `min_train` training frames per camera: the gap shrinks first, then the held-out block; a
    camera with fewer than min_train + 2 frames holds nothing out.

    poses ([N, 17, 3], the samples'): hold out the pose-novel stretches instead (novel_split), sparing
    the frames that show the reference `dance`'s poses."""
    if poses is not None:
        return novel_split(cameras, seqs, poses, fraction, gap, min_train, dance=dance)
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


def _mask(n: int, span: slice) -> np.ndarray:
    out = np.zeros(n, bool)
    out[span] = True
    return out


def pose_distances(poses: np.ndarray) -> np.ndarray:
    """[N, N] mean distance of the limb keypoints two poses share, each in its own hip-shoulder
    frame (trainer.fidelity.torso_aligned, torso lengths); NaN for a pose without a torso."""
    from trainer.fidelity import LIMBS, torso_aligned

    aligned = [torso_aligned(p) for p in poses]
    a = np.stack([x if x is not None else np.full((len(LIMBS), 2), np.nan) for x in aligned]).astype(np.float32)
    d = np.linalg.norm(a[:, None] - a[None], axis=-1)  # [N, N, 12]
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # pairs that share no keypoint: NaN
        return np.nanmean(d, axis=-1)


def novelty(poses: np.ndarray, gap: int) -> np.ndarray:
    """Per pose of one camera's sequence (in order): the distance to the nearest pose more than
    `gap` frames away, i.e. how unlike the rest of the session it is; NaN without a torso."""
    d = pose_distances(poses)
    n = len(poses)
    t = np.arange(n)
    d[np.abs(t[:, None] - t[None]) <= gap] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a pose with nothing to compare: NaN
        return np.nanmin(d, axis=1)


def novel_split(
    cameras: np.ndarray,
    seqs: np.ndarray,
    poses: np.ndarray,
    fraction: float = DEFAULT_HOLDOUT_FRACTION,
    gap: int = DEFAULT_HOLDOUT_GAP,
    min_train: int = MIN_TRAIN,
    stretches: int = NOVEL_STRETCHES,
    dance: np.ndarray | None = None,
) -> Split:
    """Per camera, in seq order: `fraction` of the frames held out in up to `stretches` stretches
    where the poses are most unlike the rest of the session (`novelty`: mean over a stretch), each
    with `gap` frames on either side used for neither; the rest for training. A camera whose
    poses have no readable torso, or too few frames for stretches and gaps, falls back to the
    block at the end (holdout_split), said in the note.

    dance ([T, 17, 3], the reference's poses): the frames nearest to the dance poses they cover
    (trainer.coverage.nearest_covers) stay in training, with no stretch or gap on them. A session
    that follows the dance shows its rarer poses (the back, raised arms) briefly: the most novel
    stretches are those, and holding them out would train on less of the dance than the visitor
    showed. Where the spared frames leave no room for the asked stretches, shorter ones fill the
    share for at most the training frames the asked ones would have cost, and the note says how
    many fewer were held out."""
    if not 0 < fraction < 1:
        raise ValueError(f"the held-out fraction must be between 0 and 1, got {fraction}")
    if gap < 0 or min_train < 1:
        raise ValueError(f"gap must be >= 0 and min_train >= 1, got {gap} and {min_train}")
    cameras, seqs, poses = np.asarray(cameras), np.asarray(seqs), np.asarray(poses)
    if len(poses) != len(cameras):
        raise ValueError(f"{len(poses)} poses for {len(cameras)} samples")
    train = np.zeros(len(cameras), bool)
    test = np.zeros(len(cameras), bool)
    gaps, notes = [], []
    for camera in sorted(set(cameras.tolist())):
        idx = np.flatnonzero(cameras == camera)
        idx = idx[np.argsort(seqs[idx], kind="stable")]
        n = len(idx)
        n_test = int(round(fraction * n))
        k = max(1, min(stretches, n_test // MIN_HELD_OUT))
        length = -(-n_test // k) if n_test else 0
        # Each stretch costs its frames and up to two gaps; what is left must still train.
        fits = n_test >= MIN_HELD_OUT and n - k * (length + 2 * gap) >= min_train
        score = novelty(poses[idx], gap) if fits else np.full(n, np.nan)
        if not np.isfinite(score).any():
            why = "too few frames for stretches and gaps" if not fits else "no readable torso"
            tail = holdout_split(cameras[idx], seqs[idx], fraction, gap, min_train)
            train[idx] = tail.train
            test[idx] = tail.test
            gaps.append(tail.gap)
            notes.append(f"camera {camera}: the last frames held out ({why} for pose-novel ones)")
            if tail.note:
                notes.append(tail.note)
            continue
        score = np.nan_to_num(score, nan=-1.0)  # a frame without a torso is never chosen for its pose
        keep = np.zeros(n, bool) if dance is None else nearest_covers(dance, poses[idx])
        free = np.ones(n, bool)  # frames a stretch may still take: not within a gap of a kept one
        for i in np.flatnonzero(keep):
            free[max(0, i - gap) : i + gap + 1] = False
        held = np.zeros(n, bool)
        near = np.zeros(n, bool)  # held out or in a gap: not trained on
        cost = k * (length + 2 * gap)  # what the asked stretches cost training, at most
        while held.sum() < n_test and length >= MIN_HELD_OUT:  # shorter stretches only where spared frames block
            window = np.convolve(score, np.ones(length) / length, mode="valid")  # mean novelty per stretch start
            for start in np.argsort(-window, kind="stable"):
                if held.sum() >= n_test:
                    break
                stop = start + length
                span = slice(max(0, start - gap), stop + gap)
                if not free[start:stop].all() or (near | _mask(n, span)).sum() > cost:
                    continue
                held[start:stop] = True
                free[span] = False
                near[span] = True
            length = length // 2 if keep.any() else 0
        if held.sum() < n_test and keep.any():
            notes.append(
                f"camera {camera}: {int(held.sum())} frames held out, not {n_test}: the others show the dance's poses"
            )
        train[idx[~near]] = True
        test[idx[held]] = True
        gaps.append(gap)
    return Split(train, test, min(gaps) if gaps else 0, "; ".join(notes))
