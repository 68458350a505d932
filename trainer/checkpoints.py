"""The trainer's checkpoint store (trainer.pix2pix.checkpoint.CheckpointStore) in the object store:
one prefix per session (schemas.layout.checkpoints_prefix), the base model under models/base/."""

from __future__ import annotations

from infra.objectstore import ObjectStore


class StoreCheckpoints:
    """save / load / list / delete of checkpoint files under one prefix of the bucket."""

    def __init__(self, store: ObjectStore, prefix: str):
        self.store, self.prefix = store, prefix.rstrip("/") + "/"

    def save(self, name: str, data: bytes) -> None:
        self.store.put(self.prefix + name, data)

    def load(self, name: str) -> bytes | None:
        return self.store.get(self.prefix + name)

    def list(self) -> list[str]:
        return sorted(k[len(self.prefix) :] for k in self.store.list(self.prefix))

    def delete(self, name: str) -> None:
        self.store.delete(self.prefix + name)
