"""`booth train base`: a base model trained from scratch on several sessions of the booth scene,
which fine-tuning warm-starts from (schemas.layout.BASE_PREFIX)."""

from __future__ import annotations

from infra.objectstore import ObjectStore
from infra.settings import Settings
from schemas import layout
from trainer.checkpoints import StoreCheckpoints


def train_base(
    settings: Settings,
    sessions: list[str],
    budget_s: float,
    max_steps: int | None = None,
    size: int | None = None,
    progress: bool = True,
):
    from trainer.assembler import load_session_samples, read_manifest
    from trainer.pix2pix.networks import NetConfig
    from trainer.pix2pix.train import TrainConfig
    from trainer.pix2pix.train import train_base as run

    manifests = {session: read_manifest(settings, session) or {} for session in sessions}
    # A base model learns from the visitors' frames: only from those who agreed to their keeping.
    unconsented = [session for session, m in manifests.items() if m.get("consent") is not True]
    if unconsented:
        raise ValueError(
            f"sessions {unconsented} have no recorded consent: a base model learns only from those that do"
        )
    kinds = {session: m.get("representation", "pose") for session, m in manifests.items()}
    if len(set(kinds.values())) > 1:
        raise ValueError(f"sessions assembled in different representations {kinds}: a model learns one")
    pairs = []
    for session in sessions:
        pairs += [(m, f) for f, m, _ in load_session_samples(settings, session)]
    if not pairs:
        raise RuntimeError(f"no samples in sessions {sessions}")
    cfg = TrainConfig(net=NetConfig.fast(size or pairs[0][0].shape[0]), progress_bar=progress)
    store = StoreCheckpoints(ObjectStore(settings), layout.BASE_PREFIX)
    return run(pairs, cfg, store, budget_s=budget_s, max_steps=max_steps)
