"""Training samples, tensors, a resumable order, augmentation.

A sample is a pair (pose map, frame) of uint8 [S, S, 3] images, or, for a generator with an alpha
matte (NetConfig.matte), four layers (pose map, frame, plate, mask): the background plate under
the frame (uint8 [S, S, 3]) and the person mask (float32 in 0..1 or uint8 in 0..255, [S, S])
that supervises the matte. Pose maps may have more than 3 channels (NetConfig.in_channels).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import torch
from torch.utils.data import Dataset


class PairSource(Protocol):
    """Anything indexable giving samples (see the module docstring): a list, a torch Dataset."""

    def __len__(self) -> int: ...

    def __getitem__(self, i: int) -> tuple[np.ndarray, ...]: ...


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
    posemap, frame = check_sample(pair, size, index, layered=False)
    return posemap, frame


def check_sample(sample, size: int, index: int, *, layered: bool, in_channels: int = 3) -> tuple[np.ndarray, ...]:
    """The sample's arrays (map, frame[, plate, mask as float32 0..1]), or a ValueError saying what
    is wrong; layered samples are the four-layer kind."""
    names = ("posemap", "frame", "plate", "mask") if layered else ("posemap", "frame")
    try:
        items = tuple(sample)
    except TypeError:
        items = ()
    if len(items) != len(names):
        what = "a (posemap, frame, plate, mask) sample" if layered else "a (posemap, frame) pair"
        raise ValueError(f"sample {index} is not {what}")
    out: list[np.ndarray] = []
    for name, img in zip(names, items):
        img = np.asarray(img)
        if name == "mask":
            if img.shape != (size, size) or img.dtype not in (np.uint8, np.float32):
                raise ValueError(
                    f"sample {index}: mask must be uint8 or float32 ({size}, {size}), got {img.dtype} {img.shape}"
                )
            out.append(img.astype(np.float32) / 255.0 if img.dtype == np.uint8 else img)
            continue
        channels = in_channels if name == "posemap" else 3
        if img.dtype != np.uint8 or img.shape != (size, size, channels):
            raise ValueError(
                f"sample {index}: {name} must be uint8 ({size}, {size}, {channels}) to match the network "
                f"size, got {img.dtype} {img.shape}"
            )
        out.append(img)
    return tuple(out)


def to_tensor(images: np.ndarray | Sequence[np.ndarray], device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 [B, H, W, C] (or one [H, W, C]) -> float [B, C, H, W] in [-1, 1]."""
    arr = np.asarray(images)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.dtype != np.uint8 or arr.ndim != 4:
        raise ValueError(f"images must be uint8 [B, H, W, C], got {arr.dtype} {arr.shape}")
    t = torch.from_numpy(np.ascontiguousarray(arr)).to(device)
    return t.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)


def mask_tensor(masks: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """float32 [B, H, W] in 0..1 -> float [B, 1, H, W]."""
    return torch.from_numpy(np.ascontiguousarray(masks, np.float32)).to(device)[:, None]


def to_uint8(tensor: torch.Tensor) -> np.ndarray:
    """float [B, C, H, W] in [-1, 1] -> uint8 [B, H, W, C]."""
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
    m, f = augment_layers((posemap, frame), (False, True), rng, jitter=jitter, flip=flip)
    return m, f


def augment_layers(
    layers: Sequence[np.ndarray],
    edges: Sequence[bool],
    rng: np.random.Generator,
    *,
    jitter: int = 0,
    flip: bool = False,
) -> tuple[np.ndarray, ...]:
    """`augment` for any number of aligned layers: photos continue their edge pixels when shifted
    (edge True), drawings and masks are 0 there."""
    dx = dy = 0
    if jitter > 0:
        dx, dy = (int(v) for v in rng.integers(-jitter, jitter + 1, size=2))
    mirror = bool(flip and rng.random() < 0.5)
    out = []
    for img, edge in zip(layers, edges):
        img = _shift(img, dx, dy, edge=edge)
        out.append(np.ascontiguousarray(img[:, ::-1] if mirror else img))
    return tuple(out)


def _shift(img: np.ndarray, dx: int, dy: int, *, edge: bool) -> np.ndarray:
    h, w = img.shape[:2]
    pad = max(abs(dx), abs(dy))
    if pad == 0:
        return img
    mode = "edge" if edge else "constant"  # the map's background is black; the photo's continues
    widths = ((pad, pad), (pad, pad)) + ((0, 0),) * (img.ndim - 2)
    padded = np.pad(img, widths, mode=mode)
    return padded[pad - dy : pad - dy + h, pad - dx : pad - dx + w]
