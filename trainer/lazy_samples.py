"""Training samples built when read: a framing's samples are made one at a time from the session's
frames (a crop, a pose map, a warp), so a whole session never sits in memory at once."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np


def unit_mask(mask: np.ndarray) -> np.ndarray:
    """A mask as float32 in 0..1 (uint8 masks hold 0..255)."""
    m = mask.astype(np.float32) / 255.0 if mask.dtype == np.uint8 else mask.astype(np.float32)
    return np.clip(m, 0.0, 1.0)


def batched(n: int, k: int) -> Iterator[range]:
    """0..n-1 in ranges of at most k."""
    for i in range(0, n, k):
        yield range(i, min(n, i + k))


class Lazy(Sequence):
    """A sequence whose items are built by a function when read."""

    def __init__(self, n: int, make) -> None:
        self.n, self.make = n, make

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):  # type: ignore[override]
        if not 0 <= i < self.n:
            raise IndexError(i)
        return self.make(i)
