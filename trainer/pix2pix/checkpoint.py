"""Checkpoint storage and (de)serialization.

A store is anything with `save(name, data)`, `load(name) -> bytes | None` and `list() -> names`
(`LocalCheckpointStore` here; an object store can implement the same three methods). If it also
has `delete(name)`, old training checkpoints are pruned.

Names: training checkpoints are `ckpt-<step, 9 digits>.pt` (the newest is the highest step) and the
final generator-only export is `generator.pt`.
"""

from __future__ import annotations

import io
import os
import re
import tempfile
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch

from trainer.pix2pix.networks import NetConfig, UNetGenerator

FORMAT_VERSION = 1
GENERATOR_NAME = "generator.pt"
_CKPT_RE = re.compile(r"^ckpt-(\d{9})\.pt$")


@runtime_checkable
class CheckpointStore(Protocol):
    def save(self, name: str, data: bytes) -> None: ...

    def load(self, name: str) -> bytes | None: ...

    def list(self) -> list[str]: ...


class LocalCheckpointStore:
    """Checkpoints as files in one directory; writes are atomic (temp file + rename), so a crash
    mid-save leaves the previous checkpoint intact."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, name: str) -> Path:
        if not name or "/" in name or "\\" in name or name.startswith("."):
            raise ValueError(f"checkpoint name must be a plain file name, got {name!r}")
        return self.root / name

    def save(self, name: str, data: bytes) -> None:
        path = self._path(name)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def load(self, name: str) -> bytes | None:
        path = self._path(name)
        return path.read_bytes() if path.is_file() else None

    def list(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if p.is_file() and not p.name.startswith("."))

    def delete(self, name: str) -> None:
        self._path(name).unlink(missing_ok=True)


def checkpoint_name(step: int) -> str:
    return f"ckpt-{step:09d}.pt"


def checkpoint_steps(store: CheckpointStore) -> list[tuple[int, str]]:
    """(step, name) of the training checkpoints in the store, oldest first."""
    found = [(int(m.group(1)), n) for n in store.list() if (m := _CKPT_RE.match(n))]
    return sorted(found)


def latest_checkpoint(store: CheckpointStore) -> str | None:
    steps = checkpoint_steps(store)
    return steps[-1][1] if steps else None


def to_bytes(obj: dict) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def from_bytes(data: bytes | str | os.PathLike) -> dict:
    """A checkpoint dict from bytes or a file path. Only tensors and plain Python values are
    unpickled (weights_only), so a checkpoint cannot run code."""
    if isinstance(data, (str, os.PathLike)):
        data = Path(data).read_bytes()
    obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    if not isinstance(obj, dict) or "net" not in obj or "generator" not in obj:
        raise ValueError("not a pix2pix checkpoint (no 'net' config or 'generator' weights)")
    if obj.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(f"checkpoint format {obj['format_version']} is newer than this code ({FORMAT_VERSION})")
    return obj


def export_generator(generator: UNetGenerator) -> bytes:
    """The generator alone (config + weights): what rendition needs, a fraction of a checkpoint."""
    return to_bytes(
        {"format_version": FORMAT_VERSION, "net": generator.cfg.to_dict(), "generator": generator.state_dict()}
    )


def load_generator(data: bytes | str | os.PathLike, device: torch.device | str = "cpu") -> UNetGenerator:
    """Rebuild the generator from a training checkpoint or an export; returned in eval mode."""
    obj = from_bytes(data)
    gen = UNetGenerator(NetConfig.from_dict(obj["net"]))
    gen.load_state_dict(obj["generator"])
    return gen.to(device).eval()
