"""Running a trained generator on pose maps."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import torch

from trainer.pix2pix.data import to_tensor, to_uint8


def _device(module: torch.nn.Module) -> torch.device:
    return next(module.parameters()).device


def generate(generator: torch.nn.Module, posemaps: np.ndarray, batch_size: int = 8) -> np.ndarray:
    """Pose maps uint8 [N, S, S, 3] (or one [S, S, 3]) -> frames uint8 [N, S, S, 3].

    Runs in eval mode (dropout off, so a pose always gives the same frame) on the generator's
    device, in float16 autocast on CUDA; the generator's train/eval mode is restored afterwards.
    """
    maps = np.asarray(posemaps)
    single = maps.ndim == 3
    if single:
        maps = maps[None]
    size = getattr(generator, "size", None)
    if size is not None and maps.shape[1:3] != (size, size):
        raise ValueError(f"pose maps must be {size}x{size} for this generator, got {maps.shape[1:3]}")
    out = np.concatenate(
        list(generate_batches(generator, (maps[i : i + batch_size] for i in range(0, len(maps), batch_size))))
    )
    return out[0] if single else out


def generate_batches(generator: torch.nn.Module, batches: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    """Streaming form of `generate`: one uint8 output batch per input batch."""
    device = _device(generator)
    was_training = generator.training
    generator.eval()
    try:
        with torch.inference_mode():
            for batch in batches:
                with torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
                    fake = generator(to_tensor(batch, device))
                yield to_uint8(fake)
    finally:
        generator.train(was_training)
