"""Running a trained generator on pose maps: frames, or (person layer, alpha matte) for a generator
with a matte."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import torch

from trainer.pix2pix.data import to_tensor, to_uint8
from trainer.pix2pix.networks import split_matte


def _device(module: torch.nn.Module) -> torch.device:
    return next(module.parameters()).device


def generate(generator: torch.nn.Module, posemaps: np.ndarray, batch_size: int = 8) -> np.ndarray:
    """Pose maps uint8 [N, S, S, 3] (or one [S, S, 3]) -> frames uint8 [N, S, S, 3].

    Runs in eval mode (dropout off, so a pose always gives the same frame) on the generator's
    device, in float16 autocast on CUDA; the generator's train/eval mode is restored afterwards.
    """
    if _has_matte(generator):
        raise ValueError("this generator predicts a person layer and a matte: use generate_layers")
    maps, single = _maps(generator, posemaps)
    out = np.concatenate(
        list(generate_batches(generator, (maps[i : i + batch_size] for i in range(0, len(maps), batch_size))))
    )
    return out[0] if single else out


def _has_matte(generator: torch.nn.Module) -> bool:
    cfg = getattr(generator, "cfg", None)
    return bool(getattr(cfg, "matte", False))


def _maps(generator: torch.nn.Module, posemaps: np.ndarray) -> tuple[np.ndarray, bool]:
    maps = np.asarray(posemaps)
    single = maps.ndim == 3
    if single:
        maps = maps[None]
    size = getattr(generator, "size", None)
    if size is not None and maps.shape[1:3] != (size, size):
        raise ValueError(f"pose maps must be {size}x{size} for this generator, got {maps.shape[1:3]}")
    return maps, single


def generate_layers(
    generator: torch.nn.Module, posemaps: np.ndarray, batch_size: int = 8
) -> tuple[np.ndarray, np.ndarray]:
    """A matte generator on pose maps uint8 [N, S, S, C] -> (person layer uint8 [N, S, S, 3],
    alpha float32 [N, S, S] in 0..1); eval mode as `generate`."""
    maps, single = _maps(generator, posemaps)
    rgbs, alphas = zip(
        *generate_layer_batches(generator, (maps[i : i + batch_size] for i in range(0, len(maps), batch_size)))
    )
    rgb, alpha = np.concatenate(rgbs), np.concatenate(alphas)
    return (rgb[0], alpha[0]) if single else (rgb, alpha)


def generate_layer_batches(
    generator: torch.nn.Module, batches: Iterable[np.ndarray]
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Streaming form of `generate_layers`: one (layer, alpha) pair of batches per input batch."""
    if not _has_matte(generator):
        raise ValueError("this generator has no matte: use generate")
    for out in _run(generator, batches):
        image, alpha = split_matte(out)
        yield to_uint8(image), alpha[:, 0].float().clamp(0, 1).cpu().numpy()


def generate_batches(generator: torch.nn.Module, batches: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    """Streaming form of `generate`: one uint8 output batch per input batch."""
    for out in _run(generator, batches):
        yield to_uint8(out)


def _run(generator: torch.nn.Module, batches: Iterable[np.ndarray]) -> Iterator[torch.Tensor]:
    device = _device(generator)
    was_training = generator.training
    generator.eval()
    try:
        with torch.inference_mode():
            for batch in batches:
                with torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
                    out = generator(to_tensor(batch, device))
                yield out
    finally:
        generator.train(was_training)
