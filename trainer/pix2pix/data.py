"""Training pairs: (pose map, frame) uint8 RGB images, tensors, a resumable order, augmentation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import torch
from torch.utils.data import Dataset


class PairSource(Protocol):
    """Anything indexable giving (posemap uint8 HxWx3, frame uint8 HxWx3): a list, a torch Dataset."""

    def __len__(self) -> int: ...

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]: ...


class PairDataset(Dataset):
    """Pairs over two in-memory uint8 arrays [N, H, W, 3]."""

    def __init__(self, posemaps: np.ndarray, frames: np.ndarray) -> None:
        posemaps, frames = np.asarray(posemaps), np.asarray(frames)
        if posemaps.shape != frames.shape:
            raise ValueError(f"posemaps {posemaps.shape} and frames {frames.shape} differ in shape")
        if posemaps.ndim != 4 or posemaps.shape[3] != 3:
            raise ValueError(f"expected arrays [N, H, W, 3], got {posemaps.shape}")
        self.posemaps, self.frames = posemaps, frames

    def __len__(self) -> int:
        return len(self.posemaps)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        return self.posemaps[i], self.frames[i]


def check_pair(pair, size: int, index: int) -> tuple[np.ndarray, np.ndarray]:
    """The pair as two uint8 [size, size, 3] arrays, or a ValueError saying what is wrong."""
    try:
        posemap, frame = pair
    except (TypeError, ValueError):
        raise ValueError(f"sample {index} is not a (posemap, frame) pair") from None
    out = []
    for name, img in (("posemap", posemap), ("frame", frame)):
        img = np.asarray(img)
        if img.dtype != np.uint8 or img.shape != (size, size, 3):
            raise ValueError(
                f"sample {index}: {name} must be uint8 ({size}, {size}, 3) to match the network "
                f"size, got {img.dtype} {img.shape}"
            )
        out.append(img)
    return out[0], out[1]


def to_tensor(images: np.ndarray | Sequence[np.ndarray], device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 [B, H, W, 3] (or one [H, W, 3]) -> float [B, 3, H, W] in [-1, 1]."""
    arr = np.asarray(images)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[3] != 3:
        raise ValueError(f"images must be uint8 [B, H, W, 3], got {arr.dtype} {arr.shape}")
    t = torch.from_numpy(np.ascontiguousarray(arr)).to(device)
    return t.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)


def to_uint8(tensor: torch.Tensor) -> np.ndarray:
    """float [B, 3, H, W] in [-1, 1] -> uint8 [B, H, W, 3]."""
    t = tensor.detach().float().clamp(-1, 1).add(1).mul(127.5).round()
    return t.to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


class SampleOrder:
    """Shuffled epochs whose permutation depends only on (seed, epoch), so the position in the
    data order is two integers and a resumed run continues with exactly the same samples."""

    def __init__(self, n: int, seed: int, epoch: int = 0, position: int = 0) -> None:
        if n <= 0:
            raise ValueError("the dataset is empty")
        self.n, self.seed, self.epoch, self.position = n, seed, epoch, position
        self._perm = self._permutation(epoch)

    def _permutation(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.n)

    def take(self, k: int) -> list[int]:
        out = []
        for _ in range(k):
            if self.position >= self.n:
                self.epoch, self.position = self.epoch + 1, 0
                self._perm = self._permutation(self.epoch)
            out.append(int(self._perm[self.position]))
            self.position += 1
        return out


def augment(
    posemap: np.ndarray, frame: np.ndarray, rng: np.random.Generator, *, jitter: int = 0, flip: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """The same random shift (up to `jitter` px, edges replicated) and optional mirror for both.

    Mirroring is off by default: it keeps map and frame aligned, but teaches the model a mirrored
    person, which blurs anything asymmetric (a logo, a parting).
    """
    if jitter > 0:
        dx, dy = (int(v) for v in rng.integers(-jitter, jitter + 1, size=2))
        posemap, frame = (_shift(posemap, dx, dy, edge=False), _shift(frame, dx, dy, edge=True))
    if flip and rng.random() < 0.5:
        posemap, frame = posemap[:, ::-1], frame[:, ::-1]
    return np.ascontiguousarray(posemap), np.ascontiguousarray(frame)


def _shift(img: np.ndarray, dx: int, dy: int, *, edge: bool) -> np.ndarray:
    h, w = img.shape[:2]
    pad = max(abs(dx), abs(dy))
    if pad == 0:
        return img
    mode = "edge" if edge else "constant"  # the map's background is black; the photo's continues
    padded = np.pad(img, ((pad, pad), (pad, pad), (0, 0)), mode=mode)
    return padded[pad - dy : pad - dy + h, pad - dx : pad - dx + w]
